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
        from qa_tasks.harness.checks import check_model_args

        check_model_args("hf", {"pretrained": model})  # a local path that does not exist: one line
        return model
    path = run / "run_config.json"
    if not path.is_file():
        raise QAPackError(f"{run}: no run_config.json naming the base model; pass --model BASE")
    try:
        base = json.loads(path.read_text(encoding="utf-8"))["identity"]["base_model"]
    except (OSError, ValueError, KeyError, TypeError):
        base = None
    if not isinstance(base, str) or not base:
        raise QAPackError(f"{path} is not the run_config.json python -m finetune.sft writes (no identity."
                          "base_model); restore it, or pass --model BASE")
    return base


def _check_adapter(ckpt: Path) -> None:
    """The checkpoint's adapter files are whole: a missing or truncated one is one line, not peft's traceback."""
    from safetensors import safe_open

    config, weights = ckpt / "adapter_config.json", ckpt / "adapter_model.safetensors"
    for path in (config, weights):
        if not path.is_file():
            raise QAPackError(f"{ckpt}: {path.name} is missing; the checkpoint is incomplete: delete it (the "
                              "run's later checkpoints are still evaluated) or restore the file")
    try:
        json.loads(config.read_text(encoding="utf-8"))
        with safe_open(str(weights), framework="pt"):  # checks the header and that the file holds every tensor
            pass
    except Exception as e:  # noqa: BLE001 (invalid JSON, a safetensors header or size error)
        raise QAPackError(f"{ckpt}: its adapter files are damaged ({str(e).splitlines()[0][:120]}); delete the "
                          "checkpoint or restore its files") from None


def _saved_steps(run: Path) -> set[int]:
    """The steps the trainer saved a checkpoint at, per the newest checkpoint's trainer_state.json."""
    states = sorted(run.glob("checkpoint-*/trainer_state.json"), key=lambda p: checkpoint_step(p.parent) or 0)
    try:
        state = json.loads(states[-1].read_text(encoding="utf-8")) if states else {}
        every, last = int(state.get("save_steps") or 0), int(state.get("global_step") or 0)
    except (OSError, ValueError, TypeError):
        return set()
    return set(range(every, last + 1, every)) | {last} if every > 0 and last > 0 else set()


def missed_steps(run: Path) -> list[int]:
    """Saved steps with neither a checkpoint left to evaluate nor results: removed before they were
    evaluated (the trainer's ``save_total_limit``)."""
    from finetune.eval_callback import step_dir

    present = {checkpoint_step(p) for p in run.glob("checkpoint-*")}
    return sorted(s for s in _saved_steps(run) if s not in present and not step_dir(run, s).is_dir())


def _gone(ckpt: Path) -> bool:
    """Removed under us (rotation deletes the folder, possibly file by file)."""
    return not (ckpt / "trainer_state.json").is_file()


def _quantization(run: Path, load_in_4bit: bool) -> dict | None:
    """The run's recorded 4-bit settings; ``--load_in_4bit`` on a run that recorded none: the QLoRA defaults."""
    from finetune.adapters import Adapter, quantization

    quant = quantization([Adapter(run, run, run.name)])
    if quant is None and load_in_4bit:
        from dataclasses import fields

        from finetune.config import ModelArguments

        defaults = {f.name: f.default for f in fields(ModelArguments)}
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
    if (run / "eval").exists() and not (run / "eval").is_dir():
        raise QAPackError(f"{run / 'eval'} is a file, where the evaluations go (eval/step-N/); move it away")
    require_loggers(run_loggers(run), "the run's report_to")  # before the first evaluation, not after it
    base = _base(run, model)
    quant = _quantization(run, load_in_4bit)
    if quant:
        require("train", "bitsandbytes", what="a QLoRA run's 4-bit base")
    resident = None  # loaded at the first checkpoint, kept for every later one
    written, started = [], time.time()
    while True:
        for ckpt in pending_checkpoints(run):
            try:
                _check_adapter(ckpt)
                if resident is None or not resident.can_take(ckpt):  # a 4-bit base: loaded per batch
                    batch = [c for c in pending_checkpoints(run) if not _gone(c)]
                    for c in batch:
                        _check_adapter(c)
                    resident = ResidentHF(base, quant, batch_size, adapters=batch)
                lm = resident.activate(ckpt)
            except Exception:  # peft or safetensors failing on files deleted under it, or a damaged checkpoint
                time.sleep(1)  # the trainer may be removing the folder file by file
                if _gone(ckpt) or any(_gone(Path(c)) for c in (resident.names if resident else ())):
                    resident = None  # rotated away by save_total_limit: reported below as missed
                    continue
                raise
            out = step_dir(run, checkpoint_step(ckpt))
            with torch.no_grad():
                # model_args as the in-training evaluation writes them, for the same progression table
                results = evaluate_lm(lm, tasks, out, f"pretrained={base},peft={ckpt}", limit, gen_kwargs)
            loggers = log_to_run(run, checkpoint_step(ckpt), logged_metrics(results))
            log(f"[watch] {ckpt.name} -> {out}" + (f" (logged to {', '.join(loggers)})" if loggers else ""))
            written.append(out)
        finished = run_finished(run)  # an interrupted run may be resumed: keep watching
        if once or (finished and not pending_checkpoints(run)) or (
                timeout is not None and time.time() - started > timeout):
            missed = missed_steps(run)
            if missed:
                log(f"[watch] not evaluated: step(s) {', '.join(map(str, missed))}, whose checkpoints were removed "
                    "before they could be (the run's save_total_limit); raise it to evaluate every checkpoint")
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
    for name, value, low in (("--limit", args.limit, 0), ("--poll", args.poll, 0), ("--timeout", args.timeout, 0),
                             ("--batch_size", args.batch_size, 0)):
        if value is not None and not value > low:
            parser.exit(2, f"error: {name} {value:g} must be > {low}\n")
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
