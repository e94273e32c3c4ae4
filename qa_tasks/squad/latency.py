"""Single-query latency of ``squad_v1``: p50/p95 wall time per question at batch size 1, and peak memory.

QLoRA SQuAD studies report p95 latency and peak VRAM for single-query inference; this runs the exact
``squad_v1`` requests (same prompts, same greedy decoding) one at a time through any lm-eval model::

    python -m qa_tasks.squad.latency --model hf --model_args pretrained=Qwen/Qwen2.5-0.5B-Instruct \\
        --limit 200 --output_path results/ [--device cuda:0] [--apply_chat_template] [--warmup 2]

It writes ``OUTPUT_PATH/<model name>/latency_<timestamp>.json`` (the folder lm_eval uses for the same
``--model_args``), read by the leaderboards::

    {"kind": "latency", "task": "squad_v1", "model": "<model args>", "n": 200, "p50_s": .., "p95_s": ..,
     "mean_s": .., "peak_mem_bytes": .., "peak_mem_kind": "cuda_max_allocated" | "cpu_peak_rss",
     "device": "cuda:0"}

Peak memory is ``torch.cuda.max_memory_allocated`` when the model ran on a GPU (weights included),
else the process's peak resident set size. Warm-up queries are run first and not timed.
"""

from __future__ import annotations

import argparse
import math
import time
from datetime import datetime
from pathlib import Path

from qa_tasks.errors import QAPackError
from qa_tasks.files import write_json
from qa_tasks.hardware import peak_memory

__all__ = ["main", "measure", "percentile", "write_result"]

TASK = "squad_v1"


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default), q in 0..100."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def _default_device() -> str:
    try:
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    except ImportError:
        return "cpu"


def _device(lm, requested: str | None) -> str:
    device = getattr(lm, "device", None) or requested
    return str(device) if device is not None else "remote"


def measure(lm, instances, warmup: int = 1) -> list[float]:
    """Seconds per request, each sent alone (batch size 1); the first ``warmup`` are not timed."""
    for inst in instances[:warmup]:
        lm.generate_until([inst], disable_tqdm=True)
    times = []
    for inst in instances[warmup:]:
        start = time.perf_counter()
        lm.generate_until([inst], disable_tqdm=True)
        times.append(time.perf_counter() - start)
    return times


def write_result(output_path: Path, model_args: str, record: dict) -> Path:
    """Atomically write the record where lm_eval writes results for the same model args."""
    from lm_eval.loggers.evaluation_tracker import GeneralConfigTracker
    from lm_eval.utils import sanitize_model_name

    name = GeneralConfigTracker._get_model_name(model_args) or "model"
    folder = output_path / sanitize_model_name(name)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"latency_{datetime.now().isoformat().replace(':', '-')}.json"
    return write_json(path, record)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m qa_tasks.squad.latency", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="hf", help="lm-eval model type (hf, vllm, local-completions, ...)")
    p.add_argument("--model_args", default="", help="lm-eval model args, e.g. pretrained=NAME,dtype=float16")
    p.add_argument("--limit", type=int, default=100, help="questions to time (after warm-up)")
    p.add_argument("--warmup", type=int, default=1, help="untimed queries run first")
    p.add_argument("--device", default=None, help="device for local models (default: cuda when available, else cpu)")
    p.add_argument("--apply_chat_template", action="store_true", help="render prompts with the chat template")
    p.add_argument("--output_path", required=True, type=Path, help="lm-eval output folder")
    return p


def main(argv: list[str] | None = None) -> Path:
    args = _parser().parse_args(argv)
    if args.limit < 1 or args.warmup < 0:
        raise QAPackError(f"--limit {args.limit} --warmup {args.warmup}: need limit >= 1 and warmup >= 0")
    if args.output_path.exists() and not args.output_path.is_dir():
        raise QAPackError(f"--output_path {args.output_path} is a file; give a folder")
    from qa_tasks import squad

    squad.preflight(TASK)  # data problems show before the model loads
    from lm_eval.api.registry import get_model

    from qa_tasks.harness.task_index import task_manager

    extra = {"batch_size": 1, "device": args.device or _default_device()}
    lm = get_model(args.model).create_from_arg_string(args.model_args, extra)
    task = task_manager([TASK]).load([TASK])["tasks"][TASK]
    task.build_all_requests(
        limit=args.limit + args.warmup, rank=0, world_size=1, apply_chat_template=args.apply_chat_template,
        chat_template=lm.apply_chat_template if args.apply_chat_template else None,
        tokenizer_name=getattr(lm, "tokenizer_name", "") if args.apply_chat_template else "")
    instances = sorted(task.instances, key=lambda i: i.doc_id)
    times = measure(lm, instances, args.warmup)
    if not times:
        raise QAPackError(f"{TASK} has only {len(instances)} questions, all used for warm-up; lower --warmup")
    device = _device(lm, args.device)
    peak, kind = peak_memory(device)
    record = {"kind": "latency", "task": TASK, "model": args.model_args or args.model, "n": len(times),
              "p50_s": percentile(times, 50), "p95_s": percentile(times, 95), "mean_s": sum(times) / len(times),
              "peak_mem_bytes": peak, "peak_mem_kind": kind, "device": device}
    path = write_result(args.output_path, args.model_args, record)
    print(f"{TASK} single-query latency over {len(times)} questions: p50 {record['p50_s']:.3f}s, "
          f"p95 {record['p95_s']:.3f}s, peak memory {peak / 2**20:.0f} MiB ({kind}) -> {path}")
    return path


if __name__ == "__main__":
    try:
        main()
    except QAPackError as e:
        raise SystemExit(e.report()) from None
