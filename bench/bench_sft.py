"""Benchmarks of python -m finetune.sft (results: bench/RESULTS.md, section "finetune").

    QA_PACK_DATA_DIR=../shared/data python -m bench.bench_sft --part speed --steps 20 --repeats 5
    QA_PACK_DATA_DIR=../shared/data python -m bench.bench_sft --part phases --steps 20 --repeats 3
    QA_PACK_DATA_DIR=../shared/data python -m bench.bench_sft --part memory
    QA_PACK_DATA_DIR=../shared/data python -m bench.bench_sft --part gsm8k

speed:  finetune.sft vs bench/plain_trl_sft.py (plain TRL SFTTrainer), same tiny model, data (Recipe-MPR
        fold 0 train), LoRA and trainer settings, interleaved by bench.harness: wall and CPU time of each
        whole training process, and tokens/s = trained tokens / the trainer's train_runtime; ratios per repeat.
phases: CPU seconds of each arm per phase (imports, config, guard, model load, trainer setup, train, save,
        manifest), from bench/sft_phases.py, the arms alternated.
memory: peak memory of LoRA vs QLoRA training on the same (larger, random) model: peak RSS of the
        training process on CPU, torch.cuda.max_memory_allocated on CUDA.
gsm8k:  format_accuracy on gsm8k_think of the tiny base model vs the same model after a few minutes of
        finetune.sft on r1_zero-formatted GSM8K train, both through the real lm_eval CLI.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.harness import SMOKE_REPEATS, add_arguments, compare, load_average, spread

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
       "PYTHONPATH": str(ROOT)}


_PEAK = ("import resource, subprocess, sys; p = subprocess.run(sys.argv[1:]); "
         "print('PEAK_RSS_KIB', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); "
         "sys.exit(p.returncode)")


def _run(cmd: list[str], timeout: int = 3600) -> tuple[subprocess.CompletedProcess, float]:
    """Run a child under a fresh wrapper whose only child it is; returns it and its peak RSS in MiB."""
    proc = subprocess.run([PY, "-c", _PEAK, *cmd], check=False, capture_output=True, text=True, env=ENV, cwd=ROOT,
                          timeout=timeout)
    if proc.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{proc.stderr[-3000:]}")
    peak = int(proc.stderr.rsplit("PEAK_RSS_KIB", 1)[1].split()[0])
    return proc, peak / 1024


def sft_argv(model: Path | str, out: Path | str, *extra: str) -> list[str]:
    """The arguments of ``python -m finetune.sft`` in this bench: plain_trl_sft.py's settings."""
    return ["--config", "finetune/configs/recipe_mpr_lora.yaml", "--model_name_or_path", str(model),
            "--output_dir", str(out), "--eval_tasks", "", "--gradient_accumulation_steps", "1",
            "--learning_rate", "2e-4", "--warmup_steps", "0", "--logging_steps", "1", "--save_steps", "100000",
            "--disable_tqdm", "true", *extra]


def _sft(model: Path, out: Path, *extra: str):
    return _run([PY, "-m", "finetune.sft", *sft_argv(model, out, *extra)])


def _pin_threads(threads: int) -> None:
    if threads > 0:
        ENV.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))


def phases(model: Path, work: Path, steps: int, batch: int, repeats: int, threads: int = 1) -> str:
    """CPU seconds per phase of each arm (bench/sft_phases.py), interleaved; median (range) per phase."""
    _pin_threads(threads)
    runs: dict[str, list[dict]] = {"ours": [], "plain": []}
    for rep in range(repeats):
        for arm in ("ours", "plain") if rep % 2 == 0 else ("plain", "ours"):
            proc, _ = _run([PY, "-m", "bench.sft_phases", arm, str(model), str(work / f"phases_{arm}{rep}"),
                            str(steps), str(batch)])
            runs[arm].append(json.loads(next(ln for ln in proc.stdout.splitlines() if ln.startswith("PHASES "))[7:]))
    names = list(dict.fromkeys(k for arm in ("ours", "plain") for r in runs[arm] for k in r["phases"]))
    lines = ["| phase | finetune.sft CPU s | plain TRL CPU s |", "|---|---:|---:|"]
    for name in [*names, "total"]:
        cells = []
        for arm in ("ours", "plain"):
            xs = [(r["total"] if name == "total" else r["phases"].get(name, {})).get("cpu_s") for r in runs[arm]]
            cells.append(spread([x for x in xs if x is not None], "{:.2f}") if any(x is not None for x in xs) else "—")
        lines.append(f"| {name} | {cells[0]} | {cells[1]} |")
    load = load_average()
    lines.append(f"\n{repeats} interleaved runs per arm, median (min–max); {steps} steps of batch {batch}; "
                 f"torch threads: {threads or 'default'}; load average after {load[0] if load else 'n/a':.4}.")
    return "\n".join(lines)


def speed(model: Path, work: Path, steps: int, batch: int, repeats: int, threads: int = 1) -> str:
    """finetune.sft vs plain TRL, interleaved by bench.harness; each arm is a whole training process.

    ``threads`` (> 0) sets both arms' torch CPU threads: on a shared 2-core machine two intra-op threads
    make a tiny model's step 3-5x slower whenever the cores are busy, in either arm alike, and that swamps
    what is compared (bench/RESULTS.md); 0 leaves torch's default (one per core)."""
    _pin_threads(threads)
    runs = {"finetune.sft": 0, "plain TRL": 0}

    def ours() -> dict:
        runs["finetune.sft"] += 1
        out = work / f"sft{runs['finetune.sft']}"
        _sft(model, out, "--max_steps", str(steps), "--per_device_train_batch_size", str(batch),
             "--gradient_checkpointing", "true")
        return json.loads((out / "manifest.json").read_text())["metrics"]

    def plain() -> dict:
        runs["plain TRL"] += 1
        proc, _ = _run([PY, "bench/plain_trl_sft.py", str(model), str(work / f"plain{runs['plain TRL']}"), str(steps),
                        str(batch)])
        return json.loads(next(line for line in proc.stdout.splitlines() if line.startswith("BENCH "))[6:])

    report = compare({"finetune.sft": ours, "plain TRL": plain}, repeats=repeats)
    tok_s = {arm: [v["num_tokens"] / v["train_runtime"] for v in report.values(arm)] for arm in report.arms}
    ratio = [a / b for a, b in zip(tok_s["finetune.sft"], tok_s["plain TRL"])]
    tokens = {arm: sorted({v["num_tokens"] for v in report.values(arm)}) for arm in report.arms}
    lines = [report.markdown(ratio=("plain TRL", "finetune.sft")), "",
             f"trained tokens per run: {tokens}; {steps} steps of batch {batch}; torch threads: {threads or 'default'}",
             *(f"- {arm} tokens/s (trainer's train_runtime): {spread(v, '{:.1f}')}" for arm, v in tok_s.items()),
             f"- **finetune.sft / plain TRL tokens/s, per repeat: {spread(ratio, '{:.3f}')}**"]
    return "\n".join(lines)


def _peak(model: Path, out: Path, method: str, steps: int) -> dict:
    _sft(model, out, "--method", method, "--max_steps", str(steps), "--per_device_train_batch_size", "4")
    m = json.loads((out / "manifest.json").read_text())["metrics"]
    return {"model_mib": round(m["model_memory_bytes"] / 2**20, 1), "peak_mib": round(m["peak_memory_bytes"] / 2**20, 1),
            "peak_kind": m["peak_memory_kind"]}


def memory(work: Path, steps: int, smoke: bool = False) -> dict:
    import torch
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    from qa_tasks.testing import build_tiny_model

    tiny = build_tiny_model(work / "tiny", data_dir=os.environ.get("QA_PACK_DATA_DIR"))
    big = work / ("small" if smoke else "medium")
    width, layers = (128, 2) if smoke else (1024, 8)
    if not (big / "config.json").is_file():
        tok = AutoTokenizer.from_pretrained(tiny)
        torch.manual_seed(0)
        cfg = Qwen2Config(vocab_size=len(tok), hidden_size=width, intermediate_size=width * 11 // 4, num_hidden_layers=layers,
                          num_attention_heads=16, num_key_value_heads=4, max_position_embeddings=4096,
                          eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, tie_word_embeddings=True)
        Qwen2ForCausalLM(cfg).save_pretrained(big)
        tok.save_pretrained(big)
    n_params = sum(v.numel() for v in __import__("safetensors.torch").torch.load_file(
        str(big / "model.safetensors")).values())
    return {"params": n_params, "steps": steps, "lora": _peak(big, work / "mem_lora", "lora", steps),
            "qlora": _peak(big, work / "mem_qlora", "qlora", steps)}


def _format_accuracy(model: Path, out: Path, limit: int, peft: Path | None = None, gen_toks: int = 256) -> dict:
    args = f"pretrained={model}" + (f",peft={peft}" if peft else "")
    _run([str(Path(PY).parent / "lm_eval"), "--model", "hf", "--model_args", args, "--tasks", "gsm8k_think",
          "--limit", str(limit), "--batch_size", "16", "--gen_kwargs", f"max_gen_toks={gen_toks}", "--output_path",
          str(out)])
    res = json.loads(max(out.rglob("results_*.json")).read_text())["results"]["gsm8k_think"]
    return {k.split(",")[0]: v for k, v in res.items() if k.endswith(",none") and "stderr" not in k}


def gsm8k(work: Path, args: argparse.Namespace) -> dict:
    """Base vs adapter on gsm8k_think. The model is wider than the test suite's tiny one and built with a
    larger init scale: LoRA leaves the (tied) embeddings and the final norm frozen, so with the default
    scale no adapter can sharpen the output distribution. ``--train_head`` unties the embeddings and
    trains the output layer in full (lora_modules_to_save=lm_head) instead (bench/RESULTS.md)."""
    from qa_tasks.testing import build_tiny_model

    name = f"gsm_model_{args.hidden_size}x{args.num_layers}_{args.init_std}{'_untied' * args.train_head}"
    model = build_tiny_model(work / name, data_dir=os.environ.get("QA_PACK_DATA_DIR"), hidden_size=args.hidden_size,
                             num_layers=args.num_layers, init_std=args.init_std, tie_embeddings=not args.train_head)
    gen_toks = 16 if args.smoke else 256  # --smoke checks the pipeline runs; 256 lets a reply reach </answer>
    base = _format_accuracy(model, work / "gsm_base", args.limit, gen_toks=gen_toks)
    out = work / "gsm_adapter"
    started = time.time()
    _run([PY, "-m", "finetune.sft", "--config", "finetune/configs/gsm8k_r1_zero_lora.yaml", "--model_name_or_path",
          str(model), "--output_dir", str(out), "--eval_tasks", "", "--max_steps", str(args.gsm8k_steps),
          "--per_device_train_batch_size", "8", "--gradient_accumulation_steps", "1",
          "--learning_rate", str(args.gsm8k_lr), "--warmup_steps", "0.03", "--max_length", "512",
          "--save_steps", "100000", "--logging_steps", "50", "--lora_r", str(args.lora_r),
          "--lora_alpha", str(2 * args.lora_r), "--lora_dropout", "0", "--gradient_checkpointing", "false",
          "--disable_tqdm", "true", *(["--lora_modules_to_save", "lm_head"] if args.train_head else [])])
    seconds = time.time() - started
    trained = _format_accuracy(model, work / "gsm_trained", args.limit, out, gen_toks=gen_toks)
    metrics = json.loads((out / "manifest.json").read_text())["metrics"]
    return {"model": name, "train_head": args.train_head, "steps": args.gsm8k_steps,
            "lr": args.gsm8k_lr, "lora_r": args.lora_r, "train_wall_s": round(seconds, 1), "limit": args.limit,
            "train_loss": metrics["train_loss"], "final_loss": metrics["final_loss"], "base": base, "trained": trained}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=["speed", "phases", "memory", "gsm8k", "all"], default="all")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1,
                    help="speed, phases: torch CPU threads of each training process (OMP_NUM_THREADS); 0 = torch's default")
    add_arguments(ap, repeats=5)
    ap.add_argument("--limit", type=int, default=100, help="gsm8k: test problems evaluated")
    ap.add_argument("--gsm8k_steps", type=int, default=600)
    ap.add_argument("--gsm8k_lr", type=float, default=6e-3)
    ap.add_argument("--lora_r", type=int, default=128, help="gsm8k: LoRA rank (alpha = 2r)")
    ap.add_argument("--hidden_size", type=int, default=128, help="gsm8k: model width")
    ap.add_argument("--num_layers", type=int, default=2, help="gsm8k: model depth")
    ap.add_argument("--init_std", type=float, default=0.1, help="gsm8k: model init scale")
    ap.add_argument("--train_head", action="store_true", help="gsm8k: untied model, lm_head trained in full")
    ap.add_argument("--work", type=Path, default=None)
    args = ap.parse_args()
    if args.smoke:
        args.steps, args.batch, args.repeats, args.limit, args.gsm8k_steps = 2, 2, SMOKE_REPEATS, 2, 2
    work = args.work or Path(tempfile.mkdtemp(prefix="bench_sft_"))
    work.mkdir(parents=True, exist_ok=True)
    from qa_tasks.testing import build_tiny_model

    tiny = build_tiny_model(work / "tiny", data_dir=os.environ.get("QA_PACK_DATA_DIR"))
    report = {}
    if args.part in ("speed", "all"):
        print(speed(tiny, work, args.steps, args.batch, args.repeats, args.threads), flush=True)
    if args.part == "phases":
        print(phases(tiny, work, args.steps, args.batch, args.repeats, args.threads), flush=True)
    if args.part in ("memory", "all"):
        report["memory"] = memory(work, 1 if args.smoke else 3, smoke=args.smoke)
        print(json.dumps(report["memory"]), flush=True)
    if args.part in ("gsm8k", "all"):
        report["gsm8k"] = gsm8k(work, args)
        print(json.dumps(report["gsm8k"]), flush=True)
    print("REPORT " + json.dumps(report))


if __name__ == "__main__":
    main()
