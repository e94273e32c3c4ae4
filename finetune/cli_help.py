"""``python -m finetune.sft --help``: the pack's own options on one screen (``--help-all``: every option).

Formats the option lists ``finetune.config`` gathers from the dataclasses' help texts: each option with the first
sentence of its help, wrapped beside it, never cut. Nothing here imports torch, so it prints at once.
"""

from __future__ import annotations

import re
import textwrap

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


# no line may end on one of these: the word after belongs with them
_ABBREVIATIONS = ("e.g.", "i.e.", "cf.", "etc.", "vs.")
_NBSP = "\u00a0"  # textwrap breaks at ASCII whitespace only


def _first_sentence(text: str) -> str:
    text = " ".join(text.split())
    for abbreviation in _ABBREVIATIONS:
        text = text.replace(f"{abbreviation} ", f"{abbreviation}{_NBSP}")
    return re.split(r"(?<=\.) ", text, maxsplit=1)[0]


def _option(name: str, text: str, width: int) -> list[str]:
    """``--name`` and its help's first sentence, wrapped (never cut) in the column beside it."""
    head = f"  --{name:<28} "
    lines = textwrap.wrap(_first_sentence(text), width - len(head), break_long_words=False,
                          break_on_hyphens=False) or [""]
    if len(head) > _HEAD:  # a long option name: its help starts on the next line
        return [head.rstrip(), *(" " * _HEAD + line.replace(_NBSP, " ") for line in lines)]
    return [(head if i == 0 else " " * len(head)) + line.replace(_NBSP, " ") for i, line in enumerate(lines)]


_HEAD = 33  # "  --" + 28 + " ": the column the help texts start in


def short_help(prog: str, description: str, sections, options: dict[str, str] | None = None,
               config: str = "TRL SFTConfig", width: int = 110) -> str:
    """``sections``: (title, [(option, help)]) pairs, then the curated ``options`` of the TRL ``config``
    (default: SFT's)."""
    options = SFT_OPTIONS if options is None else options
    lines = [f"usage: {prog} --config FILE.yaml [--option value ...] [--resume]", "", description,
             "Every option is also a key of the --config YAML file; flags win over the file.", "",
             *_option("config FILE", "YAML file of option: value pairs (any option below or in --help-all).", width),
             *_option("help-all", f"List every option, {config}, TRL ModelConfig and transformers "
                                  "TrainingArguments included.", width)]
    for title, entries in sections:
        lines += ["", f"{title}:"]
        for name, text in entries:
            lines += _option(name, text, width)
    lines += ["", f"training ({config}, the most used; every other one: --help-all):"]
    for name, text in options.items():
        lines += _option(name, text, width)
    return "\n".join(lines)
