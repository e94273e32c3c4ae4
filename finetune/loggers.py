"""Evaluation scores through the training run's own loggers (``report_to``), also from another process.

During training the scores go through ``Trainer.log`` (``finetune.eval_callback``). ``finetune.watch``
evaluates in a separate process, so the training run records where its loggers write
(``OUT/loggers.json``: the TensorBoard folder, the W&B run id) and the watcher logs into the same places at
the checkpoint's step, with transformers' own integration callbacks.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from qa_tasks.extras import missing, require
from qa_tasks.files import write_json

__all__ = ["LOGGERS_FILE", "log_to_run", "record_callback", "record_loggers", "require_loggers", "run_loggers"]

LOGGERS_FILE = "loggers.json"


def require_loggers(report_to, where: str) -> None:
    """The loggers ``report_to`` names are installed: transformers finds out only when the trainer starts,
    after the model has loaded ("all" names the installed ones only)."""
    names = [report_to] if isinstance(report_to, str) else list(report_to or [])
    if "wandb" in names:
        require("logging", "wandb", what=f"{where} wandb")
    if "tensorboard" in names and missing("tensorboardX"):  # transformers writes through either package
        require("logging", "tensorboard", what=f"{where} tensorboard")


def run_loggers(run: Path) -> list[str]:
    """The loggers a training run writes to (its report_to, as recorded in RUN/loggers.json)."""
    path = run / LOGGERS_FILE
    if not path.is_file():
        return []
    return json.loads(path.read_text(encoding="utf-8")).get("report_to") or []


def record_loggers(trainer, out: Path) -> None:
    """Write OUT/loggers.json once the trainer's loggers are set up (at train begin)."""
    # the trainer's arguments as JSON, for log_to_run: never its pickled training_args.bin, which would run
    # whatever code a run folder from elsewhere put there
    info: dict = {"report_to": list(trainer.args.report_to or []),
                  "training_args": json.loads(trainer.args.to_json_string())}
    for cb in trainer.callback_handler.callbacks:
        name = type(cb).__name__
        if name == "TensorBoardCallback" and getattr(cb, "logging_dir", None):
            info["tensorboard_logging_dir"] = str(Path(cb.logging_dir).resolve())
        elif name == "WandbCallback":
            import wandb

            if wandb.run is not None:
                info.update(wandb_run_id=wandb.run.id, wandb_project=wandb.run.project)
    write_json(out / LOGGERS_FILE, info)


def record_callback(out: Path):
    from transformers import TrainerCallback

    class RecordLoggers(TrainerCallback):
        trainer = None

        def on_train_begin(self, args, state, control, **kwargs):
            if state.is_world_process_zero and self.trainer is not None and args.report_to:
                record_loggers(self.trainer, out)

    return RecordLoggers()


def _training_args(run: Path, info: dict):
    """The run's ``TrainingArguments`` rebuilt from the JSON it recorded (the loggers read its run name and,
    for W&B, its hyper-parameters); runs that recorded none, or values this machine rejects, get defaults."""
    import dataclasses
    import warnings

    from transformers import TrainingArguments

    names = {f.name for f in dataclasses.fields(TrainingArguments) if f.init}
    base = {"output_dir": str(run), "report_to": info["report_to"]}
    saved = {k: v for k, v in (info.get("training_args") or {}).items() if k in names}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecated fields round-trip with their default values
        try:
            return TrainingArguments(**{**saved, **base})
        except (TypeError, ValueError):
            return TrainingArguments(**base, run_name=saved.get("run_name"))


def log_to_run(run: Path, step: int, metrics: dict[str, float]) -> list[str]:
    """Log ``metrics`` (``eval_<task>/<metric>``) at ``step`` through the loggers the run recorded;
    returns their names (none when the run used no logger)."""
    path = run / LOGGERS_FILE
    if not path.is_file() or not metrics:
        return []
    info = json.loads(path.read_text(encoding="utf-8"))
    if not info.get("report_to"):
        return []
    from transformers import TrainerControl, TrainerState
    from transformers.integrations import get_reporting_integration_callbacks

    if info.get("tensorboard_logging_dir"):
        os.environ["TENSORBOARD_LOGGING_DIR"] = info["tensorboard_logging_dir"]
    if info.get("wandb_run_id"):  # the same W&B run, resumed
        os.environ.update(WANDB_RUN_ID=info["wandb_run_id"], WANDB_RESUME="allow",
                          WANDB_PROJECT=info.get("wandb_project") or "huggingface")
    args = _training_args(run, info)
    state = TrainerState(global_step=step)
    names = []
    for cls in get_reporting_integration_callbacks(info["report_to"]):
        callback = cls()
        callback.on_log(args, state, TrainerControl(), logs=dict(metrics))
        callback.on_train_end(args, state, TrainerControl())
        names.append(cls.__name__)
    if info.get("wandb_run_id"):
        import wandb

        if wandb.run is not None:
            wandb.finish()
    return names
