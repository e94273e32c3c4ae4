"""The run manifest and atomic file writes.

``OUT/manifest.json`` (written last; ``"status"`` is ``complete``, or ``interrupted`` when a signal stopped
the run, which ``--resume`` then continues) records the base model,
the training data (source, split, fold, n_examples, sha256), the method, hyper-parameters, package
versions, final training metrics and the evaluations run during training.
"""

from __future__ import annotations

import json
import os
import platform
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

__all__ = ["PACKAGES", "build_manifest", "hyperparameters", "package_versions", "run_finished"]

PACKAGES = ("torch", "transformers", "trl", "peft", "accelerate", "bitsandbytes", "datasets", "lm_eval",
            "lm-eval-qa-pack")


def run_finished(output_dir: str | os.PathLike) -> bool:
    """True when OUT/manifest.json says the run is done (not when a signal stopped it)."""
    path = Path(output_dir) / "manifest.json"
    if not path.is_file():
        return False
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("status") != "interrupted"
    except (OSError, ValueError):
        return True


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


_SFT_FIELDS = ("learning_rate", "num_train_epochs", "max_steps", "per_device_train_batch_size",
               "gradient_accumulation_steps", "max_length", "lr_scheduler_type", "warmup_steps",
               "weight_decay", "optim", "seed", "packing", "gradient_checkpointing", "bf16", "fp16",
               "completion_only_loss", "assistant_only_loss", "save_steps", "eval_steps")
_LORA_FIELDS = ("lora_r", "lora_alpha", "lora_dropout", "lora_target_modules", "lora_modules_to_save")
_QLORA_FIELDS = ("bnb_4bit_quant_type", "bnb_4bit_use_double_quant", "bnb_4bit_compute_dtype")
_GRPO_FIELDS = ("num_generations", "generation_batch_size", "max_completion_length", "temperature", "top_p",
                "beta", "loss_type", "scale_rewards", "reward_weights", "mask_truncated_completions", "use_vllm")


def hyperparameters(task, lora, sft, world_size: int = 1) -> dict:
    out = {k: getattr(lora, k) for k in _LORA_FIELDS}
    if lora.method == "qlora":
        out.update({k: getattr(lora, k) for k in _QLORA_FIELDS})
    out.update({k: getattr(sft, k, None) for k in _SFT_FIELDS})
    out["world_size"] = world_size
    out["effective_batch_size"] = sft.per_device_train_batch_size * sft.gradient_accumulation_steps * world_size
    out["dtype"] = task.dtype
    if hasattr(sft, "num_generations"):  # a GRPO run: what shapes its rollouts and its objective
        out.update({k: getattr(sft, k, None) for k in _GRPO_FIELDS})
    return out


def build_manifest(task, lora, sft, data, metrics: dict, evals: list[dict], world_size: int = 1,
                   status: str = "complete", extra: dict | None = None) -> dict:
    """``extra``: keys a trainer other than SFT adds (``trainer``, ``rewards``)."""
    return {
        "status": status,
        "base_model": task.model_name_or_path,
        "task": task.task,
        "data": data.manifest(),
        "method": lora.method,
        "hyperparameters": hyperparameters(task, lora, sft, world_size),
        "versions": package_versions(),
        "metrics": metrics,
        "eval_during_training": evals,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **(extra or {}),
    }
