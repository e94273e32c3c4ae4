"""Checks of a run's training config and output folder, before any model loads.

``RUN_FILE`` (run_config.json) is written into the output folder when a run starts: it marks the folder as
holding that run, which only ``--resume`` may continue.
"""

from __future__ import annotations

from pathlib import Path

from qa_tasks.errors import QAPackError

__all__ = ["RUN_FILE", "check_output_dir", "check_training_options"]

RUN_FILE = "run_config.json"  # written when a run starts; identifies the run an output dir holds


def check_training_options(sft) -> None:
    """What TrainingArguments accepts but fails (or silently does nothing) once the model is loaded."""
    if not sft.learning_rate > 0:
        raise QAPackError(f"learning_rate={sft.learning_rate} must be > 0 (LoRA runs use 1e-5..2e-4, e.g. 1e-4)")
    if sft.max_steps <= 0 and not sft.num_train_epochs > 0:
        raise QAPackError(f"max_steps={sft.max_steps} and num_train_epochs={sft.num_train_epochs} train 0 steps; "
                          "set max_steps > 0 or num_train_epochs > 0")
    for name in ("per_device_train_batch_size", "gradient_accumulation_steps"):
        if getattr(sft, name) <= 0:
            raise QAPackError(f"{name}={getattr(sft, name)} must be > 0")
    if sft.save_steps is not None and sft.save_steps <= 0:
        raise QAPackError(f"save_steps={sft.save_steps} must be > 0")
    if getattr(sft, "max_length", None) is not None and sft.max_length <= 0:  # GRPOConfig has none
        raise QAPackError(f"max_length={sft.max_length} must be > 0 (or null for no truncation)")


def check_output_dir(resume: bool, output_dir: str) -> None:
    """A new run gets an empty (or new) folder; ``resume`` needs the unfinished run it continues."""
    out = Path(output_dir)
    if out.exists() and not out.is_dir():
        raise QAPackError(f"output_dir={out} is a file; choose a folder")
    has_run = out.is_dir() and (out / RUN_FILE).is_file()
    if resume:
        if not has_run:
            raise QAPackError(f"--resume: output_dir={out} holds no run to continue ({RUN_FILE} missing); "
                              "drop --resume to start a new run")
        from finetune.manifest import run_finished

        if run_finished(out):
            raise QAPackError(f"--resume: the run in {out} already finished (manifest.json present); "
                              "choose a new output_dir")
    elif out.is_dir() and any(out.iterdir()):
        what = "another run" if has_run else "other files"
        raise QAPackError(f"output_dir={out} already holds {what}; pass --resume to continue it or choose an "
                          "empty/new output_dir")
