"""Benchmark of python -m finetune.grpo (results: bench/RESULTS.md, section "finetune.grpo").

    QA_PACK_DATA_DIR=../shared/data python -m bench.bench_grpo --steps 10 --repeats 5

finetune.grpo vs bench/plain_trl_grpo.py (a plain TRL GRPOTrainer script): the same tiny model, GSM8K train
prompts, rewards (finetune.rewards format + answer, weights 0.1 / 1), LoRA and GRPO settings, interleaved by
bench.harness. Reported: wall and CPU time of each whole training process, and steps/s = optimizer steps / the
trainer's train_runtime; the ratio finetune.grpo / plain TRL per repeat (goal >= 0.95).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from bench.bench_sft import PY, _pin_threads, _run
from bench.harness import SMOKE_REPEATS, add_arguments, compare, spread


def grpo_argv(model: Path | str, out: Path | str, steps: int, batch: int, generations: int, tokens: int,
              prompts: int) -> list[str]:
    """``python -m finetune.grpo`` with plain_trl_grpo.py's settings."""
    return ["--config", "finetune/configs/grpo/gsm8k_grpo_lora.yaml", "--model_name_or_path", str(model),
            "--output_dir", str(out), "--eval_tasks", "", "--max_steps", str(steps),
            "--per_device_train_batch_size", str(batch), "--gradient_accumulation_steps", "1",
            "--num_generations", str(generations), "--max_completion_length", str(tokens),
            "--max_examples", str(prompts), "--warmup_steps", "0", "--logging_steps", "1",
            "--save_steps", "100000", "--disable_tqdm", "true", "--gradient_checkpointing", "false"]


def speed(model: Path, work: Path, args: argparse.Namespace) -> str:
    _pin_threads(args.threads)
    runs = {"finetune.grpo": 0, "plain TRL": 0}
    shape = (args.steps, args.batch, args.generations, args.tokens, args.prompts)

    def ours() -> dict:
        runs["finetune.grpo"] += 1
        out = work / f"grpo{runs['finetune.grpo']}"
        _run([PY, "-m", "finetune.grpo", *grpo_argv(model, out, *shape)])
        return json.loads((out / "manifest.json").read_text())["metrics"]

    def plain() -> dict:
        runs["plain TRL"] += 1
        proc, _ = _run([PY, "bench/plain_trl_grpo.py", str(model), str(work / f"plain{runs['plain TRL']}"),
                        *(str(x) for x in shape)])
        return json.loads(next(line for line in proc.stdout.splitlines() if line.startswith("BENCH "))[6:])

    report = compare({"finetune.grpo": ours, "plain TRL": plain}, repeats=args.repeats)
    steps_s = {arm: [v["global_step"] / v["train_runtime"] for v in report.values(arm)] for arm in report.arms}
    ratio = [a / b for a, b in zip(steps_s["finetune.grpo"], steps_s["plain TRL"])]
    return "\n".join([
        report.markdown(ratio=("plain TRL", "finetune.grpo")), "",
        (f"{args.steps} steps of {args.batch} completions ({args.batch // args.generations} prompts x "
         f"{args.generations}), max_completion_length {args.tokens}, {args.prompts} prompts; torch threads: "
         f"{args.threads or 'default'}"),
        *(f"- {arm} steps/s (trainer's train_runtime): {spread(v, '{:.3f}')}" for arm, v in steps_s.items()),
        f"- **finetune.grpo / plain TRL steps/s, per repeat: {spread(ratio, '{:.3f}')}**"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--batch", type=int, default=8, help="completions per step")
    ap.add_argument("--generations", type=int, default=4, help="completions per prompt")
    ap.add_argument("--tokens", type=int, default=64, help="max_completion_length")
    ap.add_argument("--prompts", type=int, default=256, help="GSM8K train prompts")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads of each process; 0 = torch's default")
    add_arguments(ap, repeats=5)
    ap.add_argument("--work", type=Path, default=None)
    args = ap.parse_args()
    if args.smoke:
        args.steps, args.batch, args.generations, args.tokens, args.repeats = 2, 4, 2, 8, SMOKE_REPEATS
    work = args.work or Path(tempfile.mkdtemp(prefix="bench_grpo_"))
    work.mkdir(parents=True, exist_ok=True)
    import os

    from qa_tasks.testing import build_tiny_model

    tiny = build_tiny_model(work / "tiny", data_dir=os.environ.get("QA_PACK_DATA_DIR"))
    print(speed(tiny, work, args), flush=True)


if __name__ == "__main__":
    main()
