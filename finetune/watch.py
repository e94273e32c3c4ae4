"""Evaluate each new checkpoint of a training run as it appears (for a second device).

    python -m finetune.watch runs/gsm8k_lora --tasks gsm8k_think --limit 200
    python -m finetune.watch runs/x --tasks recipe_mpr_gen_fold0 --model BASE --device cuda:1 --once

For every complete ``checkpoint-<step>`` (its trainer_state.json exists) without results yet, the
adapter is evaluated with lm-eval on one resident base (loaded at the first checkpoint, 4-bit as a QLoRA
run recorded it; each later checkpoint only swaps the adapter, see ``finetune.resident``) and written to ``RUN/eval/step-<step>/`` in lm-eval's output layout,
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
from qa_tasks.extras import require
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


def _quantization(run: Path, load_in_4bit: bool) -> dict | None:
    """The run's recorded 4-bit settings; ``--load_in_4bit`` on a run that recorded none: the QLoRA defaults."""
    from finetune.adapters import Adapter, quantization

    quant = quantization([Adapter(run, run, run.name)])
    if quant is None and load_in_4bit:
        from dataclasses import fields

        from finetune.config import LoraArguments

        defaults = {f.name: f.default for f in fields(LoraArguments)}
        quant = {k: defaults[k] for k in ("bnb_4bit_quant_type", "bnb_4bit_use_double_quant",
                                          "bnb_4bit_compute_dtype")}
    return quant


def watch(run: Path, tasks: list[str], model: str | None = None, limit: float | None = None,
          batch_size: int = 8, gen_kwargs: str | None = None, load_in_4bit: bool = False, once: bool = False,
          poll: float = 30.0, timeout: float | None = None, log=print) -> list[Path]:
    import torch

    from finetune.eval_callback import evaluate_lm, logged_metrics, step_dir
    from finetune.loggers import log_to_run, require_loggers, run_loggers
    from finetune.manifest import run_finished
    from finetune.resident import ResidentHF

    if not run.is_dir():
        raise QAPackError(f"{run} is not a folder; give the output_dir of python -m finetune.sft")
    require_loggers(run_loggers(run), "the run's report_to")  # before the first evaluation, not after it
    base = _base(run, model)
    quant = _quantization(run, load_in_4bit)
    if quant:
        require("train", "bitsandbytes", what="a QLoRA run's 4-bit base")
    resident = None  # loaded at the first checkpoint, kept for every later one
    written, started = [], time.time()
    while True:
        for ckpt in pending_checkpoints(run):
            if not ckpt.is_dir():  # rotated away by save_total_limit meanwhile
                continue
            if resident is None or not resident.can_take(ckpt):  # a 4-bit base: loaded per batch of checkpoints
                resident = ResidentHF(base, quant, batch_size, adapters=[c for c in pending_checkpoints(run)
                                                                         if c.is_dir()])
            out = step_dir(run, checkpoint_step(ckpt))
            with torch.no_grad():
                # model_args as the in-training evaluation writes them, for the same progression table
                results = evaluate_lm(resident.activate(ckpt), tasks, out, f"pretrained={base},peft={ckpt}",
                                      limit, gen_kwargs)
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
    parser.add_argument("--load_in_4bit", action="store_true",
                        help="4-bit base for a run that recorded no quantization (a QLoRA run's own is used anyway)")
    parser.add_argument("--once", action="store_true", help="evaluate what is there now, then exit")
    parser.add_argument("--poll", type=float, default=30.0, help="seconds between looks for new checkpoints")
    parser.add_argument("--timeout", type=float, help="give up waiting after this many seconds")
    args = parser.parse_args(argv)
    if args.device and args.device.startswith("cuda:"):
        import os

        os.environ["CUDA_VISIBLE_DEVICES"] = args.device.split(":", 1)[1]
    try:
        if args.load_in_4bit:
            require("train", "bitsandbytes", what="--load_in_4bit")
        from finetune.eval_callback import check_tasks

        tasks = check_tasks(args.tasks)
        watch(args.run, tasks, args.model, args.limit, args.batch_size, args.gen_kwargs, args.load_in_4bit,
              args.once, args.poll, args.timeout)
    except QAPackError as e:
        return e.report()
    return 0


if __name__ == "__main__":
    sys.exit(main())
