"""``python -m finetune.sft --help``: the pack's own options on one screen (``--help-all``: every option).

Built from the dataclasses' field metadata without importing TRL, so it prints at once.
"""

from __future__ import annotations

import dataclasses
import re

__all__ = ["SFT_OPTIONS", "short_help"]

# The TRL SFTConfig / TrainingArguments options most runs set (all of them: --help-all)
SFT_OPTIONS = {
    "output_dir": "Run folder: checkpoints, eval/step-N results, adapter, manifest.json.",
    "learning_rate": "Peak learning rate (> 0).",
    "num_train_epochs": "Epochs over the training data (ignored when max_steps > 0).",
    "max_steps": "Total optimizer steps (> 0 overrides num_train_epochs).",
    "per_device_train_batch_size": "Examples per device per step.",
    "gradient_accumulation_steps": "Micro-batches per optimizer step.",
    "max_length": "Truncate examples to this many tokens.",
    "save_steps": "Checkpoint every N steps (what --resume continues from).",
    "eval_steps": "Run eval_tasks every N steps (default: save_steps).",
    "logging_steps": "Log train/loss every N steps.",
    "report_to": "Loggers for train and eval metrics: tensorboard, wandb, mlflow, trackio, none, all.",
    "seed": "Random seed.",
}


def _first_sentence(text: str) -> str:
    return re.split(r"(?<!e\.g)(?<=\.)\s", " ".join(text.split()), maxsplit=1)[0]


def _line(name: str, text: str, width: int) -> str:
    head = f"  --{name:<28} "
    text = _first_sentence(text)
    room = width - len(head)
    return head + (text if len(text) <= room else text[:room - 3].rstrip() + "...")


def short_help(prog: str, description: str, groups, options: dict[str, str] | None = None,
               config: str = "TRL SFTConfig") -> str:
    """``groups``: (title, dataclass) pairs, then the curated ``options`` of the TRL ``config`` (default: SFT's)."""
    options = SFT_OPTIONS if options is None else options
    width = 110
    lines = [f"usage: {prog} --config FILE.yaml [--option value ...] [--resume]", "", description,
             "Every option is also a key of the --config YAML file; flags win over the file.", "",
             _line("config FILE", "YAML file of option: value pairs (any option below or in --help-all).", width),
             _line("help-all", f"List every option, {config} and transformers TrainingArguments included.",
                   width)]
    for title, cls in groups:
        lines += ["", f"{title}:"]
        lines += [_line(f.name, f.metadata.get("help", ""), width) for f in dataclasses.fields(cls)]
    lines += ["", f"training ({config}, the most used; every other one: --help-all):"]
    lines += [_line(name, text, width) for name, text in options.items()]
    return "\n".join(lines)
