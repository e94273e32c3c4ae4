"""Every checkpoint of a run: one ``python -m finetune.evaluate`` process vs one ``lm_eval`` run per
checkpoint (results: bench/RESULTS.md, "Evaluating every checkpoint").

    QA_PACK_DATA_DIR=../shared/data python -m bench.bench_checkpoints --checkpoints 6 --limit 10 --repeats 5

A LoRA run of the tiny model is trained once (``finetune.sft``, a checkpoint every 2 steps); then, interleaved
by bench.harness, each arm evaluates the same checkpoints on Recipe-MPR (log-likelihood) and SQuAD
(generation): "one process" is ``python -m finetune.evaluate CK1 ... CKn``; "separate" is n plain
``lm_eval --model hf --model_args pretrained=BASE,peft=CKi`` processes. Both write the same results (checked).
Loading (base + adapters) is measured inside each arm: finetune.evaluate prints its one load of the base
and every adapter; each lm_eval process runs with a timer around lm-eval's ``HFLM._create_model`` (base +
adapter load; peft imported beforehand).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.harness import SMOKE_REPEATS, add_arguments, compare, spread

ROOT = Path(__file__).resolve().parent.parent
TASKS = "recipe_mpr_fold0,squad_batch"
_TIMED_LM_EVAL = """
import sys, time
import peft  # imported by lm-eval inside _create_model: outside the timer, so it measures loading only
from lm_eval.models.huggingface import HFLM
original = HFLM._create_model
def timed(self, *a, **k):
    started = time.perf_counter()
    try:
        return original(self, *a, **k)
    finally:
        print(f"BASE_LOAD_S {time.perf_counter() - started}", file=sys.stderr)
HFLM._create_model = timed
from lm_eval.__main__ import cli_evaluate
sys.argv = ["lm_eval", *sys.argv[1:]]
cli_evaluate()
"""


def _env() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
            "PYTHONPATH": str(ROOT)}


def _run(cmd: list) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=_env(), cwd=ROOT, timeout=3600,
                          check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, cmd[:4]))} ... failed:\n{proc.stderr[-3000:]}")
    return proc


def train(model: Path, out: Path, checkpoints: int) -> list[Path]:
    _run([sys.executable, "-m", "finetune.sft", "--config", "finetune/configs/recipe_mpr_lora.yaml",
          "--model_name_or_path", model, "--output_dir", out, "--max_steps", 2 * checkpoints, "--save_steps", 2,
          "--save_total_limit", checkpoints + 1, "--per_device_train_batch_size", 4, "--learning_rate", "1e-2",
          "--warmup_steps", 0, "--max_length", 384, "--gradient_checkpointing", "false", "--eval_tasks", "",
          "--disable_tqdm", "true"])
    return sorted(out.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))


def _eval_args(limit: int) -> list:
    return ["--tasks", TASKS, "--limit", limit, "--gen_kwargs", "max_gen_toks=16", "--batch_size", 4]


def _results(folder: Path) -> dict:
    """The scores, without wall-clock metrics (latency), which no two runs share."""
    [path] = folder.rglob("results_*.json")
    results = json.loads(path.read_text(encoding="utf-8"))["results"]
    return {task: {k: v for k, v in m.items() if not k.startswith("latency")} for task, m in results.items()}


def arms(model: Path, checkpoints: list[Path], work: Path, limit: int) -> dict:
    count = {"one": 0, "separate": 0}

    def one_process() -> dict:
        count["one"] += 1
        out = work / f"one{count['one']}"
        proc = _run([sys.executable, "-m", "finetune.evaluate", *checkpoints, *_eval_args(limit), "--output_path", out])
        load = float(re.search(r"loaded once in ([\d.]+) s", proc.stdout).group(1))
        return {"base_load_s": load, "results": [_results(out / c.parent.name / c.name) for c in checkpoints]}

    def separate() -> dict:
        count["separate"] += 1
        load, results = 0.0, []
        for ck in checkpoints:
            out = work / f"sep{count['separate']}" / ck.name
            proc = _run([sys.executable, "-c", _TIMED_LM_EVAL, "--model", "hf", "--model_args",
                         f"pretrained={model},peft={ck}", *_eval_args(limit), "--output_path", out])
            load += sum(float(x) for x in re.findall(r"BASE_LOAD_S ([\d.]+)", proc.stderr))
            results.append(_results(out))
        return {"base_load_s": load, "results": results}

    return {"one process": one_process, "separate lm_eval": separate}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(ap, repeats=5)
    ap.add_argument("--checkpoints", type=int, default=6)
    ap.add_argument("--limit", type=int, default=10, help="documents per task")
    args = ap.parse_args(argv)
    from qa_tasks.testing import build_tiny_model

    repeats, n, limit = (SMOKE_REPEATS, 2, 1) if args.smoke else (args.repeats, args.checkpoints, args.limit)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model = build_tiny_model(work / "model", data_dir=os.environ.get("QA_PACK_DATA_DIR"))
        checkpoints = train(model, work / "run", n)[:n]
        report = compare(arms(model, checkpoints, work, limit), repeats=repeats)
    same = all(a["results"] == b["results"] for a, b in zip(report.values("one process"),
                                                             report.values("separate lm_eval")))
    print(report.markdown(ratio=("separate lm_eval", "one process")))
    print(f"\n{n} checkpoints, tasks {TASKS}, --limit {limit}; same results in both arms: {same}\n")
    print("| arm | loading s (base + adapters) | share of wall |\n|---|---:|---:|")
    for arm in report.arms:
        loads = report.values(arm, "base_load_s")
        shares = [x / w for x, w in zip(loads, report.wall(arm))]
        print(f"| {arm} | {spread(loads, '{:.2f}')} | {spread(shares, '{:.1%}')} |")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
