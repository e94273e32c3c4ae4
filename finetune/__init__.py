"""LoRA / QLoRA fine-tuning with TRL on the pack's own prompts, producing adapters lm-eval evaluates.

``python -m finetune.sft`` trains, ``python -m finetune.watch`` evaluates checkpoints as they appear,
``python -m finetune.merge`` exports a merged model, ``python -m finetune.grpo`` runs GRPO, ``python -m
finetune.sweep`` runs Optuna sweeps. See ``finetune.sft`` for the commands.

May import: ``qa_tasks`` (families, prompts, the harness's task index); never ``leaderboards`` or the demo.
"""

__all__: list[str] = []

import logging as _logging

# On a CPU with AVX512-BF16, importing bitsandbytes asks the `kernels` package (a dependency of
# transformers >= 5.25) for a Hub kernel; offline or untrusted, that logs two warnings, and bitsandbytes'
# own CPU kernel runs instead. Nothing for a user to do, so the lines only alarm (sft, watch and merge all
# start here). Only those records are dropped: other kernels warnings still show.
_logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(_logging.ERROR)
_logging.getLogger("kernels._internals.hf_hub").addFilter(
    lambda record: "kernels-community/quantization-bitsandbytes" not in record.getMessage())
