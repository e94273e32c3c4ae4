"""Overhead of one in-training evaluation: wall time of ``finetune.eval_callback.evaluate_lm`` minus the
time spent inside the model's generate_until / loglikelihood calls (results: bench/RESULTS.md).

    QA_PACK_DATA_DIR=../shared/data python -m bench.bench_eval_overhead --repeats 5

before: lm-eval's full task index per evaluation (``TaskManager()``, what simple_evaluate builds when it
        is given none) and its environment report per evaluation; after: the pack-only index of
        ``qa_tasks.harness.task_index`` and the environment report, both built once per process. Each measurement
        is a fresh process running two evaluations: "first" (a training run's first evaluation, paying the
        once-per-process costs) and "next" (every later one). Tiny model + LoRA adapter,
        recipe_mpr_gen_fold0, --eval_limit 5; before and after interleaved by bench.harness; median and range.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.harness import SMOKE_REPEATS, add_arguments, compare, spread

ROOT = Path(__file__).resolve().parent.parent
TASK = "recipe_mpr_gen_fold0"


def child(mode: str, model: str, out: str, smoke: bool = False) -> None:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from finetune import eval_callback
    from finetune.eval_callback import evaluate_lm, make_lm
    from qa_tasks.harness import task_index

    if mode == "before":
        from lm_eval.tasks import TaskManager

        from qa_tasks.harness.task_index import tasks_dir

        # --smoke: the same per-evaluation rebuild, of the pack's 25 entries instead of lm-eval's ~14,700
        full = {} if not smoke else {"include_defaults": False, "include_path": str(tasks_dir())}
        task_index.task_manager = lambda tasks: TaskManager(**full)
        eval_callback._env_info_once = contextlib.nullcontext
    base = AutoModelForCausalLM.from_pretrained(model)
    peft = get_peft_model(base, LoraConfig(r=16, lora_alpha=32, target_modules="all-linear")).eval()
    lm = make_lm(peft, AutoTokenizer.from_pretrained(model), batch_size=8)
    inside = [0.0]
    for name in ("generate_until", "loglikelihood", "loglikelihood_rolling"):
        original = getattr(lm, name)

        def timed(*a, _original=original, **k):
            started = time.perf_counter()
            try:
                return _original(*a, **k)
            finally:
                inside[0] += time.perf_counter() - started

        setattr(lm, name, timed)
    result = {}
    for which in ("first", "next"):  # a training run's first evaluation, and each one after it
        inside[0], started = 0.0, time.perf_counter()
        with torch.no_grad():
            evaluate_lm(lm, [TASK], Path(out) / which, f"pretrained={model},peft=none", limit=5,
                        gen_kwargs="max_gen_toks=16")
        wall = time.perf_counter() - started
        result.update({f"{which}_wall_s": wall, f"{which}_model_s": inside[0], f"{which}_overhead_s": wall - inside[0]})
    print("RESULT", json.dumps(result))


def _measure(mode: str, model: Path, work: Path, smoke: bool):
    """One arm: a fresh process running two evaluations; returns its RESULT figures."""
    runs = [0]

    def run() -> dict:
        runs[0] += 1
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
               "PYTHONPATH": str(ROOT)}
        proc = subprocess.run([sys.executable, "-m", "bench.bench_eval_overhead", "--child", mode, "--model",
                               str(model), "--out", str(work / f"{mode}{runs[0]}" / "step-1"), *(["--smoke"] if smoke else [])],
                              capture_output=True,
                              text=True, env=env, cwd=ROOT, timeout=900, check=False)
        if proc.returncode != 0:
            raise SystemExit(proc.stderr[-3000:])
        return json.loads(proc.stdout.rsplit("RESULT", 1)[1])
    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(ap, repeats=5)
    ap.add_argument("--child", choices=["before", "after"])
    ap.add_argument("--model")
    ap.add_argument("--out")
    args = ap.parse_args()
    if args.child:
        return child(args.child, args.model, args.out, args.smoke)
    from qa_tasks.testing import build_tiny_model

    repeats = SMOKE_REPEATS if args.smoke else args.repeats
    data = Path(os.environ.get("QA_PACK_DATA_DIR") or ROOT.parent / "shared" / "data")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model = build_tiny_model(work / "model", data_dir=data)
        report = compare({"before": _measure("before", model, work, args.smoke),
                          "after": _measure("after", model, work, args.smoke)},
                         repeats=repeats)
    print(report.markdown(ratio=("before", "after")))
    print("\nPer evaluation, seconds, median (min–max) over the repeats:\n")
    print("| evaluation | figure | before | after |\n|---|---|---:|---:|")
    for which in ("first", "next"):
        for key in ("overhead_s", "model_s", "wall_s"):
            cells = [spread(report.values(mode, f"{which}_{key}")) for mode in ("before", "after")]
            print(f"| {which} | {key} | {cells[0]} | {cells[1]} |")


if __name__ == "__main__":
    main()
