"""Wall time of a ``python -m finetune.sweep`` study (results: bench/RESULTS.md): 1 worker vs 2 concurrent
workers on one SQLite study, and the median pruner vs none (trials pruned, time saved); with ``--overhead``,
a 4-trial sweep vs one fresh ``python -m finetune.sft`` run of the same trial configuration.

    HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 QA_PACK_DATA_DIR=../shared/data python -m bench.bench_sweep --repeats 5
    HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 QA_PACK_DATA_DIR=../shared/data python -m bench.bench_sweep --overhead

Tiny model, Recipe-MPR fold 0 (validation split: 20% of the train queries), 12 TPE trials (seed 0) of 60
steps of 8 queries each (1.5 epochs), recipe_mpr_gen/acc evaluated every 6 steps on 24 validation queries,
so training, not the trial's start, is most of a trial, as in a real sweep. The median pruner prunes a trial
whose best value so far is below the median of the finished trials' values at the same step, once
``--startup_trials`` trials (Optuna's default 5; here 2, the sweep file's ``pruner: {median:
{n_startup_trials: 2}}``) have finished. Each arm runs a fresh sweep folder; arms interleaved ABAB by
bench.harness; median and range. The tiny model is built with init scale 0.1 (``--init_std``), as the GSM8K
demonstration's, so trials score differently and the pruner has something to prune. At 0.02, or with the
multiple-choice recipe_mpr/acc (its choices did not change with any adapter tried), every trial ties and
nothing is pruned.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from bench.harness import SMOKE_REPEATS, add_arguments, compare

ROOT = Path(__file__).resolve().parent.parent
OBJECTIVE = "recipe_mpr_gen/acc"
SPACE = {"learning_rate": {"log_uniform": [1.0e-4, 5.0e-2]}, "lora_r": [4, 8, 16], "lora_dropout": [0.0, 0.1]}


def _config(steps: int, pruner, every: int, batch: int) -> dict:
    return {"objective": OBJECTIVE, "pruner": pruner, "search_space": SPACE, "task": "recipe_mpr",
            "fold": 0, "validation_size": 0.2, "per_device_train_batch_size": batch, "warmup_steps": 0,
            "logging_steps": 1, "disable_tqdm": True, "max_length": 256, "gradient_checkpointing": False,
            "max_steps": steps, "save_steps": every, "eval_steps": every, "save_total_limit": 1, "eval_limit": 24,
            "report_to": "none"}


def _arm(work: Path, model: Path, name: str, workers: int, pruner, args):
    trials, doc = args.trials, _config(args.steps, pruner, args.eval_every, args.batch)

    def run() -> dict:
        out = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=work))
        config = out.with_suffix(".yaml")
        config.write_text(yaml.safe_dump(doc), encoding="utf-8")
        cmd = [sys.executable, "-m", "finetune.sweep", "--config", str(config), "--model_name_or_path", str(model),
               "--output_dir", str(out / "D"), "--n_trials", str(trials), "--seed", "0"]
        procs = [subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                 for _ in range(workers)]
        for p in procs:
            _, err = p.communicate()
            if p.returncode != 0:
                raise SystemExit(f"{name}: sweep failed ({p.returncode}): {err[-2000:]}")
        done = json.loads((out / "D" / "sweep.json").read_text())["trials"]
        states = [t["state"] for t in done]
        # steps trained: a pruned trial stops at the last evaluation it reported
        steps_run = sum(max(map(int, t["intermediate"]), default=0) for t in done)
        return {"complete": states.count("COMPLETE"), "pruned": states.count("PRUNED"), "trials": len(states),
                "steps": steps_run}

    return run


def _overhead_arms(work: Path, model: Path, trials: int, steps: int) -> dict:
    """One fresh finetune.sft run of a trial's configuration vs a random-sampler sweep whose every trial has
    that configuration (one value per field)."""
    from finetune.sweep_check import trial_config
    from finetune.sweep_space import load_spec

    config = {**_config(steps, "none", every=2, batch=2), "search_space": {"learning_rate": [1.0e-3], "lora_r": [8]}}
    path = work / "overhead.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    spec = load_spec(path, "random")
    sft_config = work / "trial.yaml"
    run_dir = work / "sft-run"
    sft_config.write_text(yaml.safe_dump(trial_config(spec, {"learning_rate": 1.0e-3, "lora_r": 8}, run_dir)),
                          encoding="utf-8")

    def sft() -> dict:
        out = Path(tempfile.mkdtemp(prefix="sft-", dir=work)) / "run"
        cmd = [sys.executable, "-m", "finetune.sft", "--config", str(sft_config), "--model_name_or_path",
               str(model), "--output_dir", str(out)]
        done = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=False)
        if done.returncode != 0:
            raise SystemExit(f"finetune.sft failed ({done.returncode}): {done.stderr[-2000:]}")
        return {"trials": 1}

    def sweep() -> dict:
        out = Path(tempfile.mkdtemp(prefix="sweep-", dir=work))
        cmd = [sys.executable, "-m", "finetune.sweep", "--config", str(path), "--model_name_or_path", str(model),
               "--output_dir", str(out / "D"), "--n_trials", str(trials), "--sampler", "random", "--seed", "0"]
        done = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=False)
        if done.returncode != 0:
            raise SystemExit(f"sweep failed ({done.returncode}): {done.stderr[-2000:]}")
        rows = json.loads((out / "D" / "sweep.json").read_text())["trials"]
        return {"trials": sum(t["state"] == "COMPLETE" for t in rows)}

    return {"1 fresh finetune.sft run": sft, f"sweep of {trials} trials": sweep}


def _overhead(args, work: Path, model: Path) -> None:
    trials = 1 if args.smoke else 4
    arms = _overhead_arms(work, model, trials, args.steps)
    report = compare(arms, repeats=args.repeats)
    names = list(arms)
    assert all(s.value["trials"] == trials for s in report.arms[names[1]]), [s.value for s in report.arms[names[1]]]
    print(f"{trials} trials x {args.steps} steps vs one finetune.sft run of the same configuration, tiny model\n")
    print(report.markdown(ratio=(names[1], names[0])))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_arguments(p)
    p.add_argument("--trials", type=int, default=12)
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--eval_every", type=int, default=6, help="eval_steps (and save_steps) of every trial")
    p.add_argument("--batch", type=int, default=8, help="per_device_train_batch_size of every trial")
    p.add_argument("--startup_trials", type=int, default=2,
                   help="the median pruner's n_startup_trials (Optuna's default: 5)")
    p.add_argument("--init_std", type=float, default=0.1, help="the tiny model's init scale (0.02: trials tie)")
    p.add_argument("--overhead", action="store_true",
                   help="a 4-trial sweep vs one fresh finetune.sft run of the same trial (--steps default 3)")
    args = p.parse_args(argv)
    if args.overhead and "--steps" not in (argv if argv is not None else sys.argv[1:]):
        args.steps = 3
    if args.smoke:
        args.trials, args.steps, args.eval_every, args.batch, args.repeats = 1, 2, 2, 2, SMOKE_REPEATS
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from qa_tasks.testing import build_tiny_model

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model = build_tiny_model(work / "tiny", data_dir=os.environ.get("QA_PACK_DATA_DIR"),
                                 init_std=args.init_std)
        if args.overhead:
            _overhead(args, work, model)
            return 0
        median = {"median": {"n_startup_trials": args.startup_trials}}
        arms = {"1 worker, median pruner": _arm(work, model, "w1", 1, median, args),
                "2 workers, median pruner": _arm(work, model, "w2", 2, median, args),
                "1 worker, no pruner": _arm(work, model, "np", 1, "none", args)}
        report = compare(arms, repeats=args.repeats)
    for arm, samples in report.arms.items():
        pruned, steps_run = [s.value["pruned"] for s in samples], [s.value["steps"] for s in samples]
        assert all(s.value["trials"] == args.trials for s in samples), (arm, [s.value for s in samples])
        report.notes.append(f"{arm}: {args.trials} trials each repeat, pruned median {statistics.median(pruned)} "
                            f"(range {min(pruned)}–{max(pruned)}), steps trained median "
                            f"{statistics.median(steps_run)} of {args.trials * args.steps} "
                            f"(range {min(steps_run)}–{max(steps_run)})")
    print(f"{args.trials} trials x {args.steps} steps of {args.batch} queries, evaluated every {args.eval_every} "
          f"steps, median pruner n_startup_trials={args.startup_trials}, tiny model (init scale {args.init_std}), "
          "recipe_mpr fold 0\n")
    print(report.markdown(ratio=("1 worker, median pruner", "2 workers, median pruner")))
    ratios = report.ratios("1 worker, no pruner", "1 worker, median pruner")
    print(f"\nno pruner / median pruner (wall, per repeat): median {statistics.median(ratios):.2f}x, "
          f"range {min(ratios):.2f}–{max(ratios):.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
