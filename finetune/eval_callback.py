"""Evaluation of an adapter with lm-eval, in-process, written in lm-eval's own output layout.

``OUT/eval/step-<step>/results_<date>.json`` + ``samples_<task>_<date>.jsonl`` are exactly what
``lm_eval --output_path .../results.json --log_samples`` writes; the results' ``config.model_args`` names
the adapter (``pretrained=BASE,peft=CHECKPOINT``). A step folder appears only when complete (written
under a temporary name, then renamed).

The model is handed to lm-eval as a ready ``HFLM(pretrained=<PeftModel>)`` (wrapped with the pack's
rollout layer), which is also how a 4-bit base + adapter is evaluated: lm-eval's
``--model_args load_in_4bit=True`` is broken with transformers 5.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import time
from pathlib import Path

from qa_tasks.errors import QAPackError
from qa_tasks.files import atomic_dir

__all__ = [
    "EvalDuringTraining",
    "check_tasks",
    "evaluate_lm",
    "logged_metrics",
    "make_lm",
    "split_tasks",
    "step_dir",
]


def split_tasks(tasks: str | list[str]) -> list[str]:
    return [t.strip() for t in (tasks.split(",") if isinstance(tasks, str) else tasks) if t.strip()]


def check_tasks(tasks: str | list[str]) -> list[str]:
    """The task names, after checking each exists (pack tasks cheaply, others through lm-eval's index)."""
    from qa_tasks.harness.task_index import pack_tasks

    names = split_tasks(tasks)
    if not names:
        raise QAPackError("eval_tasks is empty; give comma-separated lm-eval task names")
    unknown = [n for n in names if n not in pack_tasks()]
    if unknown:
        from qa_tasks.harness.task_index import task_manager

        known = set(task_manager(unknown).all_tasks)
        missing = [n for n in unknown if n not in known]
        if missing:
            raise QAPackError(f"eval task(s) {', '.join(missing)} are unknown to lm-eval; list them with "
                              "`lm_eval ls tasks`")
    return names


def step_dir(output_dir: str | os.PathLike, step: int) -> Path:
    return Path(output_dir) / "eval" / f"step-{step}"


def make_lm(model, tokenizer, batch_size: int | str = 8, **hflm_args):
    """A ready lm-eval model around an in-memory (Peft)model, with the pack's rollout layer
    (``hflm_args``: further ``HFLM`` options, e.g. ``max_length``)."""
    from lm_eval.models.huggingface import HFLM

    from qa_tasks.rollout import with_rollout

    tokenizer.padding_side = "left"  # generation pads left; right padding corrupts batched greedy outputs
    return with_rollout(HFLM)(pretrained=model, tokenizer=tokenizer, batch_size=batch_size, **hflm_args)


@functools.lru_cache(maxsize=1)
def _env_info() -> dict:
    from lm_eval.loggers.utils import add_env_info

    info: dict = {}
    add_env_info(info)
    return info


@contextlib.contextmanager
def _env_info_once():
    """lm-eval gathers the same environment report (torch's collect_env: `pip list` and other
    subprocesses, ~0.6 s) for every evaluation; a training process gathers it once and reuses it."""
    from lm_eval import evaluator

    original = evaluator.add_env_info
    evaluator.add_env_info = lambda storage: storage.update(_env_info())
    try:
        yield
    finally:
        evaluator.add_env_info = original


def evaluate_lm(lm, tasks: list[str], out: Path, model_args: str, limit: float | None = None,
                gen_kwargs: str | None = None, samples: dict[str, list[int]] | None = None,
                log_samples: bool = True, extra_files: dict[str, str] | None = None, cli: dict | None = None,
                **options) -> dict:
    """Run ``tasks`` on ``lm`` and write lm-eval's output files into ``out`` (atomically); returns results.
    ``samples`` (lm-eval's ``--samples``: task -> document indices) scores only those documents;
    ``options`` go to ``simple_evaluate`` (num_fewshot, apply_chat_template, seeds, ...); ``extra_files``
    (name -> text) are written into ``out`` with the results, in the same rename; ``cli`` (e.g. ``{"model":
    "hf", "batch_size": 1}``) records the run's ``config`` as ``lm_eval --model hf`` would, not as a ready
    model object."""
    from lm_eval import simple_evaluate
    from lm_eval.loggers import EvaluationTracker

    from qa_tasks.harness.task_index import task_manager

    # an interrupted or failed evaluation leaves no partial folder behind
    with atomic_dir(out) as tmp:
        tracker = EvaluationTracker(output_path=str(tmp / "results.json"))
        with _env_info_once():
            results = simple_evaluate(model=lm, model_args=model_args, tasks=tasks, limit=limit,
                                      samples=samples, log_samples=log_samples, evaluation_tracker=tracker,
                                      gen_kwargs=gen_kwargs, task_manager=task_manager(tasks), **options)
        if results is None:  # non-zero rank: nothing to write
            shutil.rmtree(tmp)
            return {}
        samples = results.pop("samples", None)
        if cli:
            results["config"].update(cli)
            tracker.general_config_tracker.model_source = cli.get("model", "")
        tracker.save_results_aggregated(results=results, samples=samples)
        if log_samples:
            for name in results["configs"]:
                tracker.save_results_samples(task_name=name, samples=samples[name])
        for name, text in (extra_files or {}).items():
            (tmp / name).write_text(text, encoding="utf-8")
        if not list(tmp.glob("results_*.json")):
            raise QAPackError(f"lm-eval could not write its results into {tmp}; check free disk space and permissions")
    return results


def _summary(results: dict) -> str:
    parts = []
    for task, metrics in results.get("results", {}).items():
        shown = [f"{k.split(',')[0]}={v:.4g}" for k, v in metrics.items()
                 if isinstance(v, float) and "stderr" not in k][:4]
        parts.append(f"{task}: {' '.join(shown)}")
    return "; ".join(parts)


def _callback_base():
    from transformers import TrainerCallback

    return TrainerCallback


def logged_metrics(results: dict) -> dict[str, float]:
    """lm-eval results as ``eval_<task>/<metric>`` numbers: the trainer's loggers (TensorBoard, W&B, ...)
    turn the ``eval_`` prefix into ``eval/``, so they land as ``eval/<task>/<metric>`` beside ``train/loss``."""
    out = {}
    for task, metrics in results.get("results", {}).items():
        for key, value in metrics.items():
            name = key.split(",")[0]
            if isinstance(value, (int, float)) and not isinstance(value, bool) and "stderr" not in name \
                    and name != "alias":
                out[f"eval_{task}/{name}"] = float(value)
    return out


class EvalDuringTraining(_callback_base()):
    """Every ``eval_steps`` steps (and at the end) a checkpoint is saved and evaluated with lm-eval; the
    scores are logged through the trainer (set ``trainer``) at that step."""

    def __init__(self, tasks: list[str], base_model: str, tokenizer, eval_steps: int | None,
                 limit: float | None = None, batch_size: int = 8, gen_kwargs: str | None = None, interrupt=None,
                 samples: dict[str, list[int]] | None = None):
        self.samples = samples  # the held-out validation documents (finetune.validation), else None
        self.tasks, self.base_model, self.tokenizer = tasks, base_model, tokenizer
        self.eval_steps, self.limit, self.batch_size, self.gen_kwargs = eval_steps, limit, batch_size, gen_kwargs
        self.interrupt, self.trainer = interrupt, None
        self.history: list[dict] = []
        self._caught_up = False

    def _due(self, step: int, max_steps: int) -> bool:
        every = self.eval_steps
        if every and every < 1:  # a fraction of the run, as TrainingArguments reads eval_steps < 1
            every = max(1, round(every * max_steps))
        return (bool(every) and step % int(every) == 0) or step >= max_steps

    def on_step_end(self, args, state, control, **kwargs):
        if self._due(state.global_step, state.max_steps):
            control.should_save = True  # evaluate a checkpoint that exists on disk
        return control

    def on_save(self, args, state, control, model=None, **kwargs):
        self._evaluate_checkpoint(args, state, model)
        return control

    def _catch_up(self, args, state, model) -> None:
        """A resumed run first evaluates the checkpoint it starts from, if a signal stopped that evaluation."""
        first, self._caught_up = not self._caught_up, True
        if first and state.global_step > 0 and (Path(args.output_dir) / f"checkpoint-{state.global_step}").is_dir():
            self._evaluate_checkpoint(args, state, model)

    def on_step_begin(self, args, state, control, model=None, **kwargs):
        self._catch_up(args, state, model)

    def on_train_end(self, args, state, control, model=None, **kwargs):
        self._catch_up(args, state, model)

    def _evaluate_checkpoint(self, args, state, model) -> None:
        step = state.global_step
        if not self._due(step, state.max_steps) or not state.is_world_process_zero:
            return
        if self.interrupt is not None and self.interrupt.signum is not None:
            return  # stopping: the resumed run evaluates this checkpoint
        out = step_dir(args.output_dir, step)
        if out.is_dir():  # already evaluated (a resumed run passes the same step again)
            return
        self.evaluate(model, step, Path(args.output_dir) / f"checkpoint-{step}", out)

    def evaluate(self, model, step: int, checkpoint: Path, out: Path) -> dict:
        import copy

        import torch

        was_training = model.training
        model.eval()
        started = time.time()
        previous = self.interrupt.phase if self.interrupt is not None else None
        try:
            if self.interrupt is not None:
                self.interrupt.enter("eval")  # a signal now abandons the evaluation
            with torch.no_grad():
                lm = make_lm(model, copy.deepcopy(self.tokenizer), self.batch_size)
                results = evaluate_lm(lm, self.tasks, out, f"pretrained={self.base_model},peft={checkpoint}",
                                      self.limit, self.gen_kwargs, self.samples)
        finally:
            if self.interrupt is not None:
                self.interrupt.enter(previous)
            model.train(was_training)
        self.history.append({"step": step, "path": str(out), "seconds": round(time.time() - started, 2),
                             "results": {t: {k: v for k, v in m.items() if isinstance(v, (int, float))}
                                         for t, m in results.get("results", {}).items()}})
        if self.trainer is not None and results:
            from transformers import Trainer

            # Trainer.log, not SFTTrainer.log: the latter would fold its pending train metrics into this entry
            Trainer.log(self.trainer, logged_metrics(results))
        print(f"[finetune] step {step} eval -> {out}: {_summary(results)}", flush=True)
        return results
