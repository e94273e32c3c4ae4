"""Evaluate each new checkpoint of a training run as it appears (for a second device).

    python -m finetune.watch runs/gsm8k_lora --tasks gsm8k_think --limit 200
    python -m finetune.watch runs/x --tasks recipe_mpr_gen_fold0 --model BASE --device cuda:1 --once

For every complete ``checkpoint-<step>`` (its trainer_state.json exists) without results yet, the
adapter is evaluated with lm-eval and written to ``RUN/eval/step-<step>/`` in lm-eval's output layout,
the same place evaluation during training writes, and the scores are logged as ``eval/<task>/<metric>``
at the checkpoint's step through the run's own loggers (its ``report_to``: TensorBoard folder, W&B run).
Without ``--once`` it polls until the run's
manifest.json says it finished (not ``interrupted``) and every checkpoint is evaluated.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from qa_tasks.errors import QAPackError
from qa_tasks.files import checkpoint_step

__all__ = ["main", "pending_checkpoints", "watch"]


def pending_checkpoints(run: Path) -> list[Path]:
    """Complete checkpoints with no evaluation results yet, oldest first."""
    from finetune.eval_callback import step_dir

    done = [p for p in run.glob("checkpoint-*")
            if checkpoint_step(p) is not None and (p / "trainer_state.json").is_file()]
    return sorted((p for p in done if not step_dir(run, checkpoint_step(p)).is_dir()), key=checkpoint_step)


def _base(run: Path, model: str | None) -> str:
    if model:
        return model
    path = run / "run_config.json"
    if path.is_file():
        return json.loads(path.read_text(encoding="utf-8"))["identity"]["base_model"]
    raise QAPackError(f"{run}: no run_config.json naming the base model; pass --model BASE")


def watch(run: Path, tasks: list[str], model: str | None = None, limit: float | None = None,
          batch_size: int = 8, gen_kwargs: str | None = None, load_in_4bit: bool = False, once: bool = False,
          poll: float = 30.0, timeout: float | None = None, log=print) -> list[Path]:
    from finetune.eval_callback import evaluate_lm, load_adapter_model, logged_metrics, make_lm, step_dir
    from finetune.loggers import log_to_run
    from finetune.manifest import run_finished

    if not run.is_dir():
        raise QAPackError(f"{run} is not a folder; give the output_dir of python -m finetune.sft")
    base = _base(run, model)
    written, started = [], time.time()
    while True:
        for ckpt in pending_checkpoints(run):
            if not ckpt.is_dir():  # rotated away by save_total_limit meanwhile
                continue
            peft_model, tokenizer = load_adapter_model(base, str(ckpt), load_in_4bit)
            out = step_dir(run, checkpoint_step(ckpt))
            results = evaluate_lm(make_lm(peft_model, tokenizer, batch_size), tasks, out,
                                  f"pretrained={base},peft={ckpt}", limit, gen_kwargs)
            loggers = log_to_run(run, ckpt, checkpoint_step(ckpt), logged_metrics(results))
            log(f"[watch] {ckpt.name} -> {out}" + (f" (logged to {', '.join(loggers)})" if loggers else ""))
            written.append(out)
        finished = run_finished(run)  # an interrupted run may be resumed: keep watching
        if once or (finished and not pending_checkpoints(run)):
            return written
        if timeout is not None and time.time() - started > timeout:
            return written
        time.sleep(poll)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m finetune.watch", description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="output_dir of python -m finetune.sft")
    parser.add_argument("--tasks", required=True, help="comma-separated lm-eval tasks")
    parser.add_argument("--model", help="base model (default: the run's base model)")
    parser.add_argument("--limit", type=float, help="lm-eval --limit")
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--gen_kwargs", help="lm-eval --gen_kwargs, e.g. max_gen_toks=512")
    parser.add_argument("--device", help="CUDA device for evaluation, e.g. cuda:1 (sets CUDA_VISIBLE_DEVICES)")
    parser.add_argument("--load_in_4bit", action="store_true", help="evaluate on a 4-bit NF4 base (QLoRA runs)")
    parser.add_argument("--once", action="store_true", help="evaluate what is there now, then exit")
    parser.add_argument("--poll", type=float, default=30.0, help="seconds between looks for new checkpoints")
    parser.add_argument("--timeout", type=float, help="give up waiting after this many seconds")
    args = parser.parse_args(argv)
    if args.device and args.device.startswith("cuda:"):
        import os

        os.environ["CUDA_VISIBLE_DEVICES"] = args.device.split(":", 1)[1]
    try:
        from finetune.eval_callback import check_tasks

        tasks = check_tasks(args.tasks)
        watch(args.run, tasks, args.model, args.limit, args.batch_size, args.gen_kwargs, args.load_in_4bit,
              args.once, args.poll, args.timeout)
    except QAPackError as e:
        return e.report()
    return 0


if __name__ == "__main__":
    sys.exit(main())
