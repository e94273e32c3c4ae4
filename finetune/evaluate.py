"""Evaluate every checkpoint of a run (or any adapters of one base) with lm-eval, the base loaded once.

    python -m finetune.evaluate runs/recipe_lora --tasks recipe_mpr_gen_fold0 --output_path results/ckpts
    python -m finetune.evaluate runs/a runs/b/checkpoint-40 --tasks squad_batch,recipe_mpr --include_base \\
        --limit 100 --log_samples --apply_chat_template --output_path results/ckpts
    python -m finetune.evaluate runs/x --model vllm --model_args max_model_len=4096 --tasks gsm8k_think \\
        --output_path results/ckpts
    python -m leaderboards build results/ckpts -o CKPTS.md        # the progression over training steps

A ``finetune.sft`` run folder stands for its ``checkpoint-<step>`` adapters in step order and its final
adapter; an adapter folder for itself. The base (``base_model_name_or_path`` of the adapters, which must
agree, or ``--model_args pretrained=``) is loaded once: ``hf`` keeps one ``PeftModel`` and swaps adapters
in it, ``vllm`` starts one engine with LoRA enabled and gives each adapter its own ``LoRARequest``. A
QLoRA run's base is quantized once, as its manifest records. Each adapter's results land in
``OUTPUT/<run>/checkpoint-<step>/`` (``<run>/final``, ``<adapter>``, ``base``) exactly as ``lm_eval
--output_path --log_samples`` writes them, with ``model_args`` naming ``pretrained=BASE,peft=ADAPTER``.
A rerun skips adapters whose results exist for the same adapter files and evaluation settings
(``evaluate.json`` beside the results); SIGTERM/Ctrl-C stop within seconds, leaving only complete folders.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from pathlib import Path

from qa_tasks.errors import QAPackError, exit_code_of

__all__ = ["FINGERPRINT_FILE", "main", "run"]

FINGERPRINT_FILE = "evaluate.json"
_DEFAULT_SEED = "0,1234,1234,1234"  # lm_eval's --seed default
_ADAPTER_KEYS = ("peft", "lora_local_path", "enable_lora")


class Stopped(BaseException):
    """A signal ends the evaluation (a BaseException, so no library's ``except Exception`` swallows it)."""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m finetune.evaluate", description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("adapters", nargs="+", metavar="RUN_OR_ADAPTER",
                   help="finetune.sft run folder (its checkpoints and final adapter) or peft adapter folder")
    p.add_argument("--tasks", required=True, help="comma-separated lm-eval tasks")
    p.add_argument("--output_path", required=True, type=Path, help="folder for one result folder per adapter")
    p.add_argument("--model", choices=("hf", "vllm"), default="hf", help="lm-eval backend (default hf)")
    p.add_argument("--model_args", default="", help="lm-eval model args, e.g. pretrained=BASE,dtype=bfloat16")
    p.add_argument("--include_base", action="store_true", help="also evaluate the base without adapter")
    p.add_argument("--final_only", action="store_true",
                   help="a run folder stands for its final adapter only, not its checkpoints")
    p.add_argument("--limit", type=float, help="lm-eval --limit")
    p.add_argument("--log_samples", action="store_true", help="write samples_<task>_<date>.jsonl too")
    p.add_argument("--batch_size", default="1", help="lm-eval --batch_size (an int or auto)")
    p.add_argument("--num_fewshot", type=int)
    p.add_argument("--gen_kwargs", help="lm-eval --gen_kwargs, e.g. max_gen_toks=512")
    p.add_argument("--apply_chat_template", nargs="?", const=True, default=False,
                   help="render prompts with the chat template (optionally a template name)")
    p.add_argument("--fewshot_as_multiturn", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--system_instruction")
    p.add_argument("--seed", default=_DEFAULT_SEED, help=f"lm-eval --seed (default {_DEFAULT_SEED})")
    return p


def _seeds(text: str) -> list[int | None]:
    parts = [s.strip() for s in str(text).split(",")]
    try:
        seeds = [None if s == "None" else int(s) for s in parts]
    except ValueError:
        raise QAPackError(f"--seed {text}: give one integer or four comma-separated ones (lm-eval's order: "
                          "python, numpy, torch, fewshot)") from None
    if len(seeds) == 1:
        return seeds * 4
    if len(seeds) != 4:
        raise QAPackError(f"--seed {text}: give one integer or four comma-separated ones")
    return seeds


def _model_args(text: str) -> dict:
    from lm_eval.utils import simple_parse_args_string

    try:
        args = simple_parse_args_string(text) if text else {}
    except ValueError:
        raise QAPackError(f"--model_args {text}: give comma-separated key=value pairs") from None
    named = [k for k in _ADAPTER_KEYS if k in args]
    if named:
        raise QAPackError(f"--model_args {', '.join(named)}=: the adapters are the positional arguments; "
                          "drop it from --model_args")
    return args


def _options(args) -> dict:
    """simple_evaluate's options, as ``lm_eval run`` passes them for the same flags."""
    seeds = _seeds(args.seed)
    multiturn = args.fewshot_as_multiturn
    if multiturn is None and args.apply_chat_template:
        multiturn = True
    if multiturn and not args.apply_chat_template:
        raise QAPackError("--fewshot_as_multiturn needs --apply_chat_template")
    return {"num_fewshot": args.num_fewshot, "apply_chat_template": args.apply_chat_template,
            "fewshot_as_multiturn": multiturn, "system_instruction": args.system_instruction,
            "random_seed": seeds[0], "numpy_random_seed": seeds[1], "torch_random_seed": seeds[2],
            "fewshot_random_seed": seeds[3]}


def _batch_size(text: str):
    if text.startswith("auto"):
        return text
    try:
        return int(text)
    except ValueError:
        raise QAPackError(f"--batch_size {text}: give an integer or auto") from None


def _check_vllm(adapters, model_args: dict) -> int:
    """The engine's max_lora_rank; every adapter vLLM would refuse is reported before the engine starts."""
    from finetune.adapters import adapter_rank
    from finetune.resident import vllm_max_lora_rank
    from finetune.vllm_compat import serving_problems
    from qa_tasks.extras import require

    rank = int(model_args.get("max_lora_rank") or vllm_max_lora_rank([adapter_rank(a) for a in adapters]))
    for adapter in adapters:
        problems = serving_problems(adapter.path, rank)
        if problems:
            raise QAPackError(f"{adapter.path}: vLLM cannot serve it: {problems[0]}")
    require("vllm", "vllm", what="--model vllm")
    return rank


class _Plan:
    """What to evaluate (label -> adapter path, None for the base) and what is already done."""

    def __init__(self, out: Path, setup: dict):
        self.out, self.setup, self.items = out, setup, []

    def add(self, label: str, adapter: Path | None) -> None:
        from finetune.adapters import fingerprint

        self.items.append((label, adapter, fingerprint(adapter, {**self.setup, "adapter": str(adapter)})))

    @staticmethod
    def done(folder: Path, digest: str) -> bool:
        record = folder / FINGERPRINT_FILE
        if not record.is_file() or not list(folder.glob("results_*.json")):
            return False
        try:
            return json.loads(record.read_text(encoding="utf-8")).get("fingerprint") == digest
        except (OSError, ValueError):
            return False

    def pending(self) -> list[tuple[str, Path | None, str]]:
        return [item for item in self.items if not self.done(self.out / item[0], item[2])]


def _install_stop():
    def stop(signum, frame):
        raise Stopped(signum)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, stop)


def _resident(args, base: str, quant, model_args: dict, rank: int | None, adapters: list):
    extra = "".join(f",{k}={v}" for k, v in model_args.items() if k != "pretrained")
    if args.model == "vllm":
        from finetune.resident import ResidentVLLM

        kwargs = {k: v for k, v in model_args.items() if k not in ("pretrained", "max_lora_rank")}
        return ResidentVLLM(base, {"batch_size": _batch_size(args.batch_size), **kwargs}, rank, extra)
    from finetune.resident import ResidentHF

    dtype = model_args.get("dtype", "auto")
    return ResidentHF(base, quant, _batch_size(args.batch_size), str(dtype), extra, adapters)


def evaluate(args, log=print) -> list[Path]:
    from finetune.adapters import check_tokenizers, common_base, expand, quantization
    from finetune.eval_callback import check_tasks

    tasks = check_tasks(args.tasks)
    model_args = _model_args(args.model_args)
    options = _options(args)
    _batch_size(args.batch_size)
    adapters = expand(args.adapters)
    if args.final_only:
        named = {Path(a).expanduser().resolve() for a in args.adapters}
        adapters = [a for a in adapters if a.step is None or a.path in named]
    base = common_base(adapters, model_args.get("pretrained"))
    quant = quantization(adapters)
    rank = None
    if args.model == "vllm":
        rank = _check_vllm(adapters, model_args)
        if quant:
            log(f"[evaluate] note: vLLM serves the base as --model_args says ({base}), not the QLoRA run's "
                "bitsandbytes 4-bit base; add quantization=bitsandbytes to --model_args for a 4-bit engine")
            quant = None
    elif quant:
        from qa_tasks.extras import require

        require("train", "bitsandbytes", what="a QLoRA run's 4-bit base")
    check_tokenizers(adapters, base)

    setup = {"backend": args.model, "base": base, "quantization": quant, "model_args": model_args,
             "tasks": tasks, "limit": args.limit, "gen_kwargs": args.gen_kwargs, "log_samples": args.log_samples,
             "batch_size": args.batch_size, **options}
    plan = _Plan(args.output_path, setup)
    if args.include_base:
        plan.add("base", None)
    for adapter in adapters:
        plan.add(adapter.label, adapter.path)
    pending = plan.pending()
    for label, _, _ in plan.items:
        if all(label != p[0] for p in pending):
            log(f"[evaluate] {label}: results for these adapter files and settings exist; skipped")
    if not pending:
        return []
    return _run_plan(args, plan, pending, base, quant, model_args, rank, tasks, options, log)


def _run_plan(args, plan: _Plan, pending, base, quant, model_args, rank, tasks, options, log) -> list[Path]:
    import torch

    from finetune.eval_callback import evaluate_lm

    started = time.perf_counter()
    resident = _resident(args, base, quant, model_args, rank, [a for _, a, _ in pending if a is not None])
    n = sum(a is not None for _, a, _ in pending)
    log(f"[evaluate] base {base}" + (f" (4-bit {quant['bnb_4bit_quant_type']})" if quant else "")
        + f" and {n} adapter(s) loaded once in {time.perf_counter() - started:.1f} s")
    written, cli = [], {"model": args.model, "batch_size": _batch_size(args.batch_size)}
    for label, adapter, digest in pending:
        out, began = plan.out / label, time.perf_counter()
        record = json.dumps({"fingerprint": digest, "adapter": str(adapter) if adapter else None, "base": base,
                             "setup": plan.setup}, indent=2, default=str) + "\n"
        with torch.no_grad():
            if adapter is None:
                with resident.base_only() as lm:
                    evaluate_lm(lm, tasks, out, resident.model_args(None), args.limit, args.gen_kwargs,
                                log_samples=args.log_samples, extra_files={FINGERPRINT_FILE: record}, cli=cli, **options)
            else:
                evaluate_lm(resident.activate(adapter), tasks, out, resident.model_args(adapter), args.limit,
                            args.gen_kwargs, log_samples=args.log_samples,
                            extra_files={FINGERPRINT_FILE: record}, cli=cli, **options)
        log(f"[evaluate] {label} -> {out} ({time.perf_counter() - began:.1f} s)")
        written.append(out)
    return written


def run(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    _install_stop()
    try:
        evaluate(args)
    except Stopped as stop:
        code = 128 + int(stop.args[0])
        print(f"[evaluate] stopped by signal {stop.args[0]}; finished results are kept, the one in progress is "
              "discarded; rerun the same command to continue", file=sys.stderr, flush=True)
        return code
    return 0


def main(argv: list[str] | None = None) -> int:
    return exit_code_of(run, argv)


if __name__ == "__main__":
    sys.exit(main())
