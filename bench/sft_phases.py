"""Where one training process spends its CPU: bench_sft.py's two arms, phase by phase.

    python -m bench.sft_phases ours MODEL OUT STEPS BATCH     # python -m finetune.sft, as bench_sft runs it
    python -m bench.sft_phases plain MODEL OUT STEPS BATCH    # bench/plain_trl_sft.py

Runs the arm in this process with the named functions wrapped, and prints one ``PHASES`` JSON line:
CPU and wall seconds of each phase (user + system, every thread) and of the whole process. The heavy
libraries both arms import (torch, transformers, trl, peft, datasets, accelerate) are imported first, as
the phase ``imports``, so that neither arm's first phase carries them; ``rest`` is what no phase covers.
"""

from __future__ import annotations

import functools
import json
import resource
import runpy
import sys
import time
from pathlib import Path

_STATS: dict[str, list[float]] = {}
_ACTIVE: list[str] = []  # nested wrapped calls count once, in the outermost phase


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _add(phase: str, cpu: float, wall: float) -> None:
    entry = _STATS.setdefault(phase, [0.0, 0.0])
    entry[0] += cpu
    entry[1] += wall


def _wrap(owner, name: str, phase: str) -> None:
    """Replace ``owner.name`` (a function, or a classmethod read off its class) by a timed call of it."""
    original = getattr(owner, name)

    @functools.wraps(original)
    def timed(*args, **kwargs):
        if _ACTIVE:
            return original(*args, **kwargs)
        _ACTIVE.append(phase)
        cpu0, wall0 = _cpu(), time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            _add(phase, _cpu() - cpu0, time.perf_counter() - wall0)
            _ACTIVE.pop()

    bound = isinstance(owner, type) and hasattr(original, "__self__")  # a classmethod, already bound
    setattr(owner, name, staticmethod(timed) if bound else timed)


def main() -> None:
    arm, model, out, steps, batch = sys.argv[1], *sys.argv[2:6]
    wall0 = time.perf_counter()
    import accelerate  # noqa: F401
    import datasets  # noqa: F401
    import peft  # noqa: F401
    import torch  # noqa: F401
    import transformers
    import trl

    _add("imports", _cpu(), time.perf_counter() - wall0)
    _wrap(transformers.AutoModelForCausalLM, "from_pretrained", "model load")
    _wrap(trl.SFTTrainer, "__init__", "trainer setup (tokenize, peft)")
    _wrap(transformers.Trainer, "train", "train")
    _wrap(transformers.Trainer, "save_model", "save adapter")
    if arm == "plain":
        sys.argv = ["bench/plain_trl_sft.py", model, out, steps, batch]
        runpy.run_path(str(Path(__file__).parent / "plain_trl_sft.py"), run_name="__main__")
    else:
        import finetune.guard
        from bench.bench_sft import sft_argv
        from finetune import sft

        for owner, name, phase in ((sft, "parse_config", "config"), (sft, "validate", "validate"),
                                   (sft, "build_training_data", "data"),
                                   (finetune.guard, "check_no_overlap", "guard"),
                                   (sft, "_save_final", "save adapter"), (sft, "_write_manifest", "manifest")):
            _wrap(owner, name, phase)
        code = sft.main(sft_argv(model, out, "--max_steps", steps, "--per_device_train_batch_size", batch,
                                 "--gradient_checkpointing", "true"))
        if code:
            raise SystemExit(code)
    total_cpu, total_wall = _cpu(), time.perf_counter() - wall0
    phases = {k: {"cpu_s": round(c, 3), "wall_s": round(w, 3)} for k, (c, w) in _STATS.items()}
    covered = sum(c for c, _ in _STATS.values()), sum(w for _, w in _STATS.values())
    phases["rest"] = {"cpu_s": round(total_cpu - covered[0], 3), "wall_s": round(total_wall - covered[1], 3)}
    print("PHASES " + json.dumps({"arm": arm, "total": {"cpu_s": round(total_cpu, 3), "wall_s": round(total_wall, 3)},
                                  "phases": phases}), flush=True)


if __name__ == "__main__":
    main()
