"""Shared fixtures: offline environment, the tiny model (built once per run), lm_eval CLI runner."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.toolkit.forkserver import ForkServer

ROOT = Path(__file__).resolve().parent.parent
SITE = ROOT / "tests" / "toolkit" / "site"
DATA_DIR = Path(os.environ.get("QA_PACK_DATA_DIR") or ROOT.parent / "shared" / "data").resolve()
BIN = Path(sys.executable).parent

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ["QA_PACK_DATA_DIR"] = str(DATA_DIR)


def lm_eval_env(**extra: str) -> dict[str, str]:
    """Environment for an lm_eval subprocess: offline, local data, scripted model registered."""
    env = dict(os.environ)
    env.update({"QA_PACK_DATA_DIR": str(DATA_DIR), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
                "PYTHONPATH": os.pathsep.join([str(SITE), str(ROOT)])})
    env.update(extra)
    return env


FORK_SERVER = ForkServer(lm_eval_env, ROOT)


def run_command(cmd: list, env: dict | None = None, cwd: Path | str | None = None,
                timeout: float | None = 900) -> subprocess.CompletedProcess:
    """``subprocess.run(cmd, capture_output=True, text=True)`` for a command the tests do not signal: forked
    from the pre-imported server when its environment allows (tests/toolkit/forkserver.py), else fresh."""
    env, cwd = env or lm_eval_env(), cwd or os.getcwd()
    done = FORK_SERVER.run([str(c) for c in cmd], env, cwd, timeout)
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
    # the timestamp after the task name keeps "recipe_mpr" from matching "recipe_mpr_gen" files
    files = sorted(p for p in output.rglob(f"samples_{task}_*.jsonl")
                   if re.fullmatch(rf"samples_{re.escape(task)}_\d{{4}}-.*\.jsonl", p.name))
    assert files, f"no samples file for {task} under {output}"
    return [json.loads(line) for line in files[-1].read_text().splitlines() if line.strip()]


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA_DIR


@pytest.fixture(scope="session", autouse=True)
def shared_tiny_models(tmp_path_factory):
    """Each tiny model variant is built once per test run, in a folder every xdist worker and every
    subprocess (benches, the demo, lm_eval) copies from."""
    from qa_tasks.testing import CACHE_VARIABLE

    base = tmp_path_factory.getbasetemp()
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    os.environ.setdefault(CACHE_VARIABLE, str(root / "tiny-models"))


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A 2-layer Qwen2 model with a freshly trained BPE tokenizer, built once per test run."""
    from qa_tasks.testing import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model", data_dir=DATA_DIR)


# Files whose module-scoped fixtures train or evaluate for minutes go first (pytest-xdist hands out files
# in collection order), so the two workers finish together rather than one waiting on the last long file.
HEAVY_FIRST = ("test_sweep.py", "test_bench_commands.py", "test_bench_sft_commands.py", "test_finetune_e2e.py",
               "test_bench_rollout_commands.py", "test_plugin.py", "test_finetune_interrupt.py", "test_demo.py",
               "test_sweep_storage.py", "test_hostile_lm_eval.py")


def pytest_collection_modifyitems(config, items):
    items.sort(key=lambda item: HEAVY_FIRST.index(item.path.name) if item.path.name in HEAVY_FIRST
               else len(HEAVY_FIRST))
