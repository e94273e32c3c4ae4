"""Every command works without the optional extras (pyproject.toml) as far as it can: ``--help`` always, and a
feature whose extra is missing stops with one line naming the pip command (qa_tasks.extras.require), exit 2.

The packages are hidden in the child process by tests/toolkit/sim_site (``QA_SIM_HIDE``), as if not installed.
The commands run as fresh interpreters (not through conftest's fork server, which has imported them already).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from qa_tasks.extras import EXTRAS
from tests.toolkit.env import BIN, ROOT, lm_eval_env

SIM_SITE = ROOT / "tests" / "toolkit" / "sim_site"
# every optional module at once: transformers also writes TensorBoard logs through tensorboardX
ALL_OPTIONAL = ",".join([*(m for modules in EXTRAS.values() for m in modules if m not in ("requests", "tqdm")),
                         "tensorboardX", "bitsandbytes"])  # requests and tqdm: core dependencies too
COMMANDS = ["finetune.sft", "finetune.sweep", "finetune.watch", "finetune.merge", "leaderboards",
            "leaderboards build", "qa_pack_demo"]
SFT = ["-m", "finetune.sft", "--model_name_or_path", "m", "--task", "recipe_mpr", "--output_dir", "out"]
SWEEP = ["-m", "finetune.sweep", "--config", "sweep.yaml", "--model_name_or_path", "m", "--output_dir", "out"]
API = "aiohttp,tenacity"  # what lm-eval[api] adds to the core dependencies


def _pip(extra: str) -> str:
    return f"pip install 'lm-eval-qa-pack[{extra}]'"


def _run(args: list[str], hide: str, cwd) -> subprocess.CompletedProcess:
    """``python ARGS`` (or ``lm_eval ARGS`` when args[0] is "lm_eval") with the ``hide`` packages absent."""
    env = lm_eval_env(QA_SIM_HIDE=hide, PYTHONPATH=f"{SIM_SITE}:{ROOT}")
    cmd = [str(BIN / "lm_eval"), *args[1:]] if args[0] == "lm_eval" else [sys.executable, *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd, timeout=300, check=False)


@pytest.mark.parametrize("command", COMMANDS)
def test_help_works_without_any_extra(command, tmp_path):
    proc = _run(["-m", *command.split(), "--help"], ALL_OPTIONAL, tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith("usage:") and not proc.stderr, proc.stderr[-2000:]


def _slow(*values):
    return pytest.param(*values, marks=pytest.mark.slow)


@pytest.mark.parametrize(("hide", "args", "line"), [
    ("optuna", SWEEP, f"python -m finetune.sweep needs optuna, which is not installed: {_pip('sweep,train')}"),
    ("optuna", ["-m", "leaderboards", "build", "sweep", "-o", "LB.md"],
     f"the sweep folder sweep (its parameter importances) needs optuna, which is not installed: {_pip('sweep')}"),
    ("trl,accelerate", SFT,
     f"python -m finetune.sft needs trl, accelerate, which are not installed: {_pip('train')}"),
    ("trl", ["-m", "finetune.sft", "--help-all"],
     f"python -m finetune.sft needs trl, which is not installed: {_pip('train')}"),
    ("trl", SWEEP, f"python -m finetune.sweep needs trl, which is not installed: {_pip('sweep,train')}"),
    ("trl", ["-m", "qa_pack_demo", "--out", "demo"],
     f"python -m qa_pack_demo needs trl, which is not installed: {_pip('train,math')}"),
    ("bitsandbytes", ["-m", "finetune.watch", "run", "--tasks", "recipe_mpr_gen", "--load_in_4bit"],
     f"--load_in_4bit needs bitsandbytes, which is not installed: {_pip('train')}"),
    _slow("bitsandbytes", [*SFT, "--method", "qlora"],
          f"method=qlora needs bitsandbytes, which is not installed: {_pip('train')}"),
    _slow("wandb", [*SFT, "--report_to", "wandb"],
          f"report_to wandb needs wandb, which is not installed: {_pip('logging')}"),
    _slow("tensorboard,tensorboardX", [*SFT, "--report_to", "tensorboard"],
          f"report_to tensorboard needs tensorboard, which is not installed: {_pip('logging')}"),
    _slow("wandb", ["-m", "finetune.watch", "run", "--tasks", "recipe_mpr_gen", "--model", "m", "--once"],
          f"the run's report_to wandb needs wandb, which is not installed: {_pip('logging')}"),
    _slow("math_verify", ["-m", "qa_pack_demo", "--out", "demo"],
          f"python -m qa_pack_demo needs math_verify, which is not installed: {_pip('train,math')}"),
    # lm_eval: the pack's startup hook checks the backend and the tasks before any model loads or network use
    _slow("math_verify", ["lm_eval", "run", "--model", "hf", "--model_args", "pretrained=org/name", "--tasks",
                          "gsm8k_think", "--limit", "1"],
          f"gsm8k_think needs math_verify, which is not installed: {_pip('math')}"),
    _slow(API, ["lm_eval", "run", "--model", "local-completions", "--model_args",
                "model=x,base_url=http://127.0.0.1:9/v1/completions", "--tasks", "recipe_mpr_gen", "--limit", "1"],
          f"--model local-completions needs aiohttp, tenacity, which are not installed: {_pip('api')}"),
    _slow(API, ["lm_eval", "run", "--model", "local-chat-completions", "--model_args",
                "model=x,base_url=http://127.0.0.1:9/v1/chat/completions", "--tasks", "recipe_mpr_gen",
                "--apply_chat_template", "--limit", "1"],
          f"--model local-chat-completions needs aiohttp, tenacity, which are not installed: {_pip('api')}"),
    _slow("vllm", ["lm_eval", "run", "--model", "vllm", "--model_args", "pretrained=org/name", "--tasks",
                   "recipe_mpr_gen", "--limit", "1"],
          f"--model vllm needs vllm, which is not installed: {_pip('vllm')}"),
], ids=["sweep-sweep", "sweep-leaderboard", "train-sft", "train-sft-help-all", "train-sweep", "train-demo",
        "train-watch-4bit", "train-sft-qlora", "logging-sft-wandb", "logging-sft-tensorboard", "logging-watch",
        "math-demo", "math-lm_eval", "api-completions", "api-chat-completions", "vllm-lm_eval"])
def test_feature_without_its_extra_is_one_line(hide, args, line, tmp_path):
    (tmp_path / "sweep").mkdir()  # a finetune.sweep folder (no trial yet)
    (tmp_path / "sweep" / "sweep.json").write_text(json.dumps({"objective": "recipe_mpr_gen/acc", "trials": []}))
    (tmp_path / "run").mkdir()  # a finetune.sft run that logs to W&B
    (tmp_path / "run" / "loggers.json").write_text(json.dumps({"report_to": ["wandb"]}))
    proc = _run(args, hide, tmp_path)
    # lm-eval and transformers log to stderr too (INFO lines, deprecation warnings): the error is one line of it
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert [x for x in proc.stderr.splitlines() if x.startswith("error:")] == [f"error: {line}"], proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists() and not (tmp_path / "demo").exists()  # stopped before any work


def test_plots_stay_optional_in_a_default_build(tmp_path):
    """Plots are a by-product of a markdown leaderboard: without matplotlib the file says so, no error."""
    (tmp_path / "sweep").mkdir()
    (tmp_path / "sweep" / "sweep.json").write_text(json.dumps({"objective": "recipe_mpr_gen/acc", "trials": []}))
    proc = _run(["-m", "leaderboards", "build", "sweep", "-o", "LB.md"], "matplotlib", tmp_path)
    assert proc.returncode == 0 and "error" not in proc.stderr, proc.stderr[-2000:]
    assert f"matplotlib is not installed ({_pip('plots')})" in (tmp_path / "LB.md").read_text()
