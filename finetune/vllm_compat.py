"""Can vLLM serve this adapter? The checks vLLM makes when it loads a LoRA adapter, made at training time.

vLLM (0.6 to 0.33 at least) refuses, when ``lora_local_path``/``--lora-modules`` loads an adapter:

- ``modules_to_save`` ("vLLM only supports modules_to_save being None.") and DoRA ("vLLM does not yet
  support DoRA."), in ``vllm/lora/peft_helper.py``;
- a rank above the engine's ``max_lora_rank`` ("LoRA rank 32 is greater than max_lora_rank 16."),
  which must itself be one of ``VLLM_MAX_LORA_RANKS``; lm-eval's ``--model vllm`` passes 16 unless
  ``max_lora_rank=`` is in ``--model_args``.

``serving_problems`` lists what stops an adapter; ``warn_unservable`` prints them as
``[finetune] warning:`` lines (training goes on: the merged model, ``python -m finetune.merge``,
serves anywhere).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path

from qa_tasks.harness.checks import VLLM_MAX_LORA_RANKS

__all__ = ["LM_EVAL_MAX_LORA_RANK", "VLLM_MAX_LORA_RANKS", "serving_problems", "warn_unservable"]

LM_EVAL_MAX_LORA_RANK = 16  # lm-eval 0.4.13 VLLM(max_lora_rank=16)
_MERGE = "serve the merged model instead (python -m finetune.merge)"


def _field(config, name: str, default=None):
    return config.get(name, default) if isinstance(config, Mapping) else getattr(config, name, default)


def serving_problems(config, max_lora_rank: int = LM_EVAL_MAX_LORA_RANK) -> list[str]:
    """Why vLLM would refuse an adapter with this peft ``LoraConfig`` (or adapter_config.json dict, or
    adapter folder), served with ``max_lora_rank``; empty when it would load it."""
    if isinstance(config, (str, Path)):
        config = json.loads((Path(config) / "adapter_config.json").read_text(encoding="utf-8"))
    problems = []
    saved = _field(config, "modules_to_save")
    if saved:
        problems.append(f"modules_to_save ({', '.join(sorted(saved))}): vLLM refuses adapters that carry fully "
                        f"trained modules; {_MERGE}")
    if _field(config, "use_dora", False):
        problems.append(f"DoRA: vLLM does not load DoRA adapters; {_MERGE}")
    rank = int(_field(config, "r", 8))
    if rank > VLLM_MAX_LORA_RANKS[-1]:
        problems.append(f"rank {rank} is above vLLM's largest max_lora_rank ({VLLM_MAX_LORA_RANKS[-1]}); "
                        f"train with lora_r <= {VLLM_MAX_LORA_RANKS[-1]} or {_MERGE}")
    elif rank > max_lora_rank:
        needed = next(r for r in VLLM_MAX_LORA_RANKS if r >= rank)
        problems.append(f"rank {rank} is above max_lora_rank {max_lora_rank} (lm-eval's default for --model vllm); "
                        f"add max_lora_rank={needed} to --model_args (vllm serve: --max-lora-rank {needed})")
    return problems


def warn_unservable(config, max_lora_rank: int = LM_EVAL_MAX_LORA_RANK, file=None) -> list[str]:
    """Print one ``[finetune] warning:`` line per serving problem; returns the problems."""
    problems = serving_problems(config, max_lora_rank)
    for problem in problems:
        print(f"[finetune] warning: vLLM cannot serve this adapter as trained: {problem}",
              file=file or sys.stderr, flush=True)
    return problems
