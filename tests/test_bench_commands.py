"""Every command recorded in bench/RESULTS.md still runs: each is rerun with ``--smoke`` (tiny sizes,
one repeat), from the repository root, without PYTHONPATH, so no recorded figure points at a command that
no longer exists or no longer parses."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys

import pytest

from tests.toolkit.env import DATA_DIR, ROOT

RESULTS = ROOT / "bench" / "RESULTS.md"
_COMMAND = re.compile(r"python -m (bench\.\w+)([^`\n]*)")


def recorded_commands(text: str) -> list[tuple[str, list[str]]]:
    """(module, arguments) of every ``python -m bench.<name> ...`` line in ``text``; backslash line
    continuations are joined, environment assignments before ``python`` and ``# comments`` dropped."""
    joined = re.sub(r"\\\n\s*", " ", text)
    out = []
    for line in joined.splitlines():
        match = _COMMAND.search(line)
        if match:
            args = shlex.split(match.group(2).split(" #", 1)[0], comments=False)
            if (match.group(1), args) not in out:
                out.append((match.group(1), args))
    return out


COMMANDS = recorded_commands(RESULTS.read_text(encoding="utf-8"))


def test_results_record_a_command_for_every_bench():
    modules = {m for m, _ in COMMANDS}
    assert {"bench.bench_math_grader", "bench.bench_rollout", "bench.bench_sft", "bench.bench_startup",
            "bench.bench_eval_overhead"} <= modules, modules


# the training and rollout benches are run from their own test files, so that pytest-xdist (one file per
# worker) spreads these minutes of subprocess runs over both workers
# (test_bench_sft_commands.py, test_bench_rollout_commands.py)
ELSEWHERE = {"bench.bench_sft", "bench.bench_rollout"}


def commands(*modules: str) -> list:
    """pytest params of the recorded commands of ``modules`` (all the others when none is named)."""
    picked = [(m, a) for m, a in COMMANDS if (m in modules if modules else m not in ELSEWHERE)]
    return [pytest.param(m, a, id=" ".join([m, *a])) for m, a in picked]


def run_recorded(module: str, args: list[str], tmp_path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update({"QA_PACK_DATA_DIR": str(DATA_DIR), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
                "TOKENIZERS_PARALLELISM": "false"})
    args = [str(tmp_path / "out.json") if a.startswith("/tmp/") else a for a in args]
    proc = subprocess.run([sys.executable, "-m", module, *args, "--smoke"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600, check=False)
    assert proc.returncode == 0, f"{module} {args}: {proc.stderr[-2000:]}"
    assert proc.stdout.strip(), "the command printed no result"


@pytest.mark.parametrize(("module", "args"), commands())
@pytest.mark.slow
def test_recorded_command_runs_at_smoke_size(module, args, tmp_path):
    run_recorded(module, args, tmp_path)
