"""End-to-end demo: tiny model -> LoRA fine-tune -> lm-eval of the base and the adapter on every task
family -> leaderboard with the base vs adapter comparison. Runs offline on CPU (2 cores: under a minute,
``--quick`` less)::

    QA_PACK_DATA_DIR=../shared/data python -m qa_pack_demo --out demo_out
    QA_PACK_DATA_DIR=../shared/data python -m qa_pack_demo --out demo_out --quick   # fewer documents and steps

The adapter is trained by ``python -m finetune.sft`` and evaluated with the base by ``python -m
finetune.evaluate`` (one loaded base, output in lm-eval's own layout), exactly as a user would run them; the
commands are printed as they run and their full output is kept under ``OUT/logs``.

The tiny model is built by ``qa_tasks.testing`` (``--model DIR`` uses an existing Hugging Face model folder
instead). The demo is the top layer: it drives ``qa_tasks``, ``finetune`` (as subprocesses) and
``leaderboards``; nothing imports it.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from qa_tasks.errors import QAPackError
from qa_tasks.extras import require
from qa_tasks.family import families
from qa_tasks.testing import build_tiny_model

__all__ = ["FAMILY_TASKS", "MARKER", "DemoPlan", "main", "plan", "run_demo"]

MARKER = ".leaderboards-demo"  # marks an output folder as the demo's own, so a re-run may clear it
# the tasks the demo evaluates, by family (each family's ``demo_tasks``); recipe uses fold 0's held-out
# test split, the fold the adapter is trained on
FAMILY_TASKS = {f.name: f.demo_tasks for f in families() if f.demo_tasks}


@dataclass(frozen=True)
class DemoPlan:
    """Sizes of one demo run; ``--quick`` shrinks everything for the test suite."""

    limit: int  # documents per task (one question / query / problem)
    passage_limit: int  # documents of the multi-question SQuAD strategies (one passage = 5-10 questions)
    max_gen_toks: int
    train_steps: int
    eval_every: int
    train_examples: int
    train_eval_limit: int

    def eval_groups(self, tasks: list[str]) -> list[tuple[list[str], int]]:
        """(tasks, --limit) per lm_eval call: passages get a smaller limit than single questions."""
        from qa_tasks.harness.task_index import rollout_tasks

        per_passage = [t for t in tasks if t in rollout_tasks()]  # the multi-call strategies: one doc = a passage
        per_item = [t for t in tasks if t not in per_passage]
        if self.limit == self.passage_limit:
            return [(tasks, self.limit)]
        return [(group, limit) for group, limit in ((per_item, self.limit), (per_passage, self.passage_limit)) if group]


def plan(quick: bool) -> DemoPlan:
    if quick:
        return DemoPlan(limit=2, passage_limit=2, max_gen_toks=8, train_steps=2, eval_every=2, train_examples=8,
                        train_eval_limit=2)
    return DemoPlan(limit=20, passage_limit=3, max_gen_toks=16, train_steps=30, eval_every=10, train_examples=120,
                    train_eval_limit=20)


class _Progress:
    def __init__(self, total: int) -> None:
        self.total, self.step, self.start = total, 0, time.monotonic()

    def begin(self, what: str) -> float:
        self.step += 1
        print(f"[{self.step}/{self.total}] {what} ...", flush=True)
        return time.monotonic()

    def done(self, started: float, summary: str = "") -> None:
        print(f"      done in {time.monotonic() - started:.0f} s" + (f": {summary}" if summary else ""), flush=True)


def _check_tasks() -> list[str]:
    """Every family the demo shows must be installed: a missing one is an error, never a silent skip."""
    from qa_tasks.harness.task_index import pack_tasks

    known = pack_tasks()
    missing = {fam: [t for t in tasks if t not in known] for fam, tasks in FAMILY_TASKS.items()}
    missing = {fam: ts for fam, ts in missing.items() if ts}
    if missing:
        what = "; ".join(f"{fam}: {', '.join(ts)}" for fam, ts in sorted(missing.items()))
        raise QAPackError(f"the demo needs task(s) that this installation does not have ({what}); "
                          "reinstall lm-eval-qa-pack from a complete checkout")
    if importlib.util.find_spec("finetune") is None or importlib.util.find_spec("finetune.sft") is None:
        raise QAPackError("the demo needs the finetune module (python -m finetune.sft), which is not installed; "
                          "install lm-eval-qa-pack[train] from a complete checkout")
    # checked before the first step, so a plain `pip install .` fails at once instead of after the training
    require("train,math", what="python -m qa_pack_demo")
    return [t for tasks in FAMILY_TASKS.values() for t in tasks]


def _prepare_out(out: Path) -> None:
    """Create ``out``; a previous demo output there is cleared (anything else is refused, not deleted)."""
    if out.exists() and any(out.iterdir()):
        if not (out / MARKER).is_file():
            raise QAPackError(f"{out} exists and is not a demo output folder; choose an empty or new --out folder")
        for name in ("eval", "recipe-mpr-lora", "logs"):
            shutil.rmtree(out / name, ignore_errors=True)
        for path in out.glob("LEADERBOARD*"):
            path.unlink()
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("written by python -m qa_pack_demo\n", encoding="utf-8")
    (out / "logs").mkdir(exist_ok=True)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    for key, value in (("HF_HUB_OFFLINE", "1"), ("HF_DATASETS_OFFLINE", "1"), ("TOKENIZERS_PARALLELISM", "false")):
        env.setdefault(key, value)
    return env


def _run(cmd: list[str], log: Path) -> None:
    """Run one step's command, its output kept in ``log``; a failure is one line pointing at the log."""
    print(f"      $ {shlex.join(cmd)}", flush=True)
    with log.open("w", encoding="utf-8") as f:
        proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=_env(), text=True, check=False)
    if proc.returncode != 0:
        tail = [line for line in log.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
        last = tail[-1] if tail else "(no output)"
        raise QAPackError(f"step failed with exit code {proc.returncode}: {last.strip()[:300]} (full output: {log})")


def _evaluate(adapter: Path, tasks: list[str], limit: int, gen_toks: int, out: Path, log: Path) -> None:
    """The base and the final adapter on one loaded base: ``out/base`` and ``out/<adapter>/final``."""
    _run([sys.executable, "-m", "finetune.evaluate", str(adapter), "--final_only", "--include_base",
          "--tasks", ",".join(tasks), "--limit", str(limit), "--gen_kwargs", f"max_gen_toks={gen_toks}",
          "--batch_size", "4", "--output_path", str(out), "--log_samples"], log)


def _summary(folders: list[Path]) -> str:
    """Main metric per task of the results just written, for the progress line."""
    from leaderboards.reader import read_paths
    from leaderboards.tables import main_metric

    col = read_paths(folders)
    parts = []
    for run in col.runs:
        for task, result in sorted(run.tasks.items()):
            metric = main_metric(task, result.metrics, result)
            parts.append(f"{task} {metric}={result.metrics[metric]:.3f}")
    return ", ".join(parts)


def run_demo(out: Path, quick: bool = False, model: Path | None = None) -> dict[str, Path]:
    """The whole pipeline; returns the paths it wrote (leaderboard, results folders, adapter, logs)."""
    sizes = plan(quick)
    tasks = _check_tasks()
    if not os.environ.get("QA_PACK_DATA_DIR"):
        print("note: QA_PACK_DATA_DIR is not set: data comes from the canonical sources (needs network access)")
    out = out.resolve()
    _prepare_out(out)
    logs = out / "logs"
    progress = _Progress(4)

    started = progress.begin("building the tiny model" if model is None else f"using the model in {model}")
    if model is None:
        data_dir = os.environ.get("QA_PACK_DATA_DIR") or None
        model = build_tiny_model(out / "tiny-qwen2", data_dir=data_dir)
    model = Path(model).resolve()
    if not (model / "config.json").is_file():
        raise QAPackError(f"{model} is not a Hugging Face model folder (no config.json); pass --model DIR of one")
    progress.done(started, str(model))

    adapter = out / "recipe-mpr-lora"
    train_tasks = ",".join(FAMILY_TASKS["recipe_mpr"])
    started = progress.begin(f"fine-tuning a LoRA adapter ({sizes.train_steps} steps on Recipe-MPR fold 0)")
    _run([sys.executable, "-m", "finetune.sft", "--model_name_or_path", str(model), "--task", "recipe_mpr",
          "--fold", "0", "--output_dir", str(adapter), "--max_examples", str(sizes.train_examples),
          "--max_steps", str(sizes.train_steps), "--per_device_train_batch_size", "4",
          "--gradient_accumulation_steps", "1", "--learning_rate", "5e-3", "--lora_r", "8", "--lora_alpha", "16",
          "--logging_steps", "1", "--save_steps", str(sizes.eval_every), "--eval_steps", str(sizes.eval_every),
          "--eval_tasks", train_tasks, "--eval_limit", str(sizes.train_eval_limit),
          "--eval_gen_kwargs", f"max_gen_toks={sizes.max_gen_toks}", "--report_to", "none", "--seed", "0"],
         logs / "finetune.log")
    if not (adapter / "adapter_config.json").is_file():
        raise QAPackError(f"finetune.sft finished but wrote no adapter into {adapter}; see {logs / 'finetune.log'}")
    progress.done(started, str(adapter))

    groups = sizes.eval_groups(tasks)
    started = progress.begin(f"evaluating the base model and the adapter on {len(tasks)} tasks, one base loaded")
    evals = [out / "eval" if len(groups) == 1 else out / "eval" / f"limit-{limit}" for _, limit in groups]
    for dest, (group, limit) in zip(evals, groups):
        _evaluate(adapter, group, limit, sizes.max_gen_toks, dest, logs / f"evaluate_limit-{limit}.log")
    progress.done(started, "; ".join(f"{who}: {_summary([d / sub for d in evals])}"
                                     for who, sub in (("base", "base"), ("adapter", f"{adapter.name}/final"))))

    started = progress.begin("building the leaderboard")
    from leaderboards.build import build

    report = build([*evals, adapter], out / "LEADERBOARD.md")
    for warning in report.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    progress.done(started, f"{len(report.tables)} tables, {len(report.plots)} plots")
    paths = {"leaderboard": report.output}
    for dest, (_, limit) in zip(evals, groups):
        more = f" (--limit {limit})" if len(groups) > 1 else ""
        paths[f"base results{more}"] = dest / "base"
        paths[f"adapter results{more}"] = dest / adapter.name / "final"
    paths.update({"adapter": adapter, "training evaluations": adapter / "eval", "logs": logs})
    for i, plot in enumerate(report.plots):
        paths[f"plot {i + 1}"] = plot
    return paths


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m qa_pack_demo", description=__doc__.split("::")[0].strip(),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, type=Path, help="folder for everything the demo writes")
    p.add_argument("--quick", action="store_true", help="fewer documents and training steps (for tests and a first look)")
    p.add_argument("--model", type=Path, default=None,
                   help="evaluate and fine-tune this Hugging Face model folder instead of building the tiny model")
    args = p.parse_args(argv)
    started = time.monotonic()
    try:
        paths = run_demo(args.out, args.quick, args.model)
    except QAPackError as e:
        return e.report()
    print(f"\nDemo finished in {time.monotonic() - started:.0f} s. Outputs:")
    width = max(len(k) for k in paths)
    for key, path in paths.items():
        print(f"  {key:<{width}}  {path}")
    return 0
