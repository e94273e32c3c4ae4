"""Running the pack's command lines from the tests and reading what ``lm_eval`` wrote.

- ``run_command(cmd, env, cwd, timeout)``: ``subprocess.run(cmd, capture_output=True, text=True)`` for any
  command line the tests do not signal (``lm_eval``, ``python -m finetune.sft``, ``finetune.sweep``,
  ``leaderboards``, ...), forked from this worker's pre-imported server (``FORK_SERVER``,
  tests/toolkit/forkserver.py) when its environment allows, else a fresh interpreter;
- ``run_lm_eval(args, output, ...)``: the real ``lm_eval`` CLI; the process and its results JSON;
- ``read_samples(output, task)``: the logged samples of one task of a run.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

from tests.toolkit.env import BIN, ROOT, lm_eval_env
from tests.toolkit.forkserver import ForkServer

__all__ = ["FORK_SERVER", "read_samples", "run_command", "run_lm_eval"]

FORK_SERVER = ForkServer(lm_eval_env, ROOT)


def run_command(cmd: list, env: dict | None = None, cwd: Path | str | None = None,
                timeout: float | None = 900) -> subprocess.CompletedProcess:
    """``subprocess.run(cmd, capture_output=True, text=True)`` for a command the tests do not signal: forked
    from the pre-imported server when its environment allows (tests/toolkit/forkserver.py), else fresh."""
    cmd, env, cwd = [str(c) for c in cmd], env or lm_eval_env(), cwd or os.getcwd()
    done = FORK_SERVER.run(cmd, env, cwd, timeout)
    return done if done is not None else subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd,
                                                       timeout=timeout, check=False)


def run_lm_eval(args: list[str], output: Path | None = None, env: dict | None = None,
                check: bool = True, timeout: int = 900) -> tuple[subprocess.CompletedProcess, dict | None]:
    """Run the real ``lm_eval`` CLI; returns the process and the parsed results JSON (if written)."""
    cmd = [str(BIN / "lm_eval"), *args]
    if output is not None:
        cmd += ["--output_path", str(output)]
    proc = run_command(cmd, env, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"lm_eval failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    results = None
    if output is not None:
        files = sorted(output.rglob("results_*.json"))
        if files:
            results = json.loads(files[-1].read_text())
    return proc, results


def read_samples(output: Path, task: str) -> list[dict]:
    """The samples ``lm_eval --log_samples`` wrote for ``task`` under ``output`` (the newest file)."""
    # the timestamp after the task name keeps "recipe_mpr" from matching "recipe_mpr_gen" files
    files = sorted(p for p in output.rglob(f"samples_{task}_*.jsonl")
                   if re.fullmatch(rf"samples_{re.escape(task)}_\d{{4}}-.*\.jsonl", p.name))
    assert files, f"no samples file for {task} under {output}"
    return [json.loads(line) for line in files[-1].read_text().splitlines() if line.strip()]
