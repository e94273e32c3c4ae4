"""End to end on CPU: SIGTERM during the in-training evaluation stops within 10 s with an interrupted
manifest and a resumable checkpoint; the resumed run ends with the adapter and train_loss of an
uninterrupted run; eval scores reach TensorBoard and W&B (offline) beside train/loss."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.test_finetune_e2e import CONFIG, FAST
from tests.toolkit.env import ROOT, lm_eval_env
from tests.toolkit.lm_eval_runs import run_command

pytestmark = [pytest.mark.slow, pytest.mark.heavy(order=5)]

TASK = "recipe_mpr_gen_fold0"
# the evaluation must run long enough to be interrupted in the middle
ARGS = ["--max_steps", "4", "--save_steps", "2", "--eval_steps", "2", "--eval_tasks", TASK, "--eval_limit", "30",
        "--eval_gen_kwargs", "max_gen_toks=32", "--eval_batch_size", "1"]


def _cmd(model: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "finetune.sft", "--config", str(CONFIG), "--model_name_or_path", str(model),
            "--output_dir", str(out), *FAST, *ARGS, *extra]


def _env(tmp: Path) -> dict:
    return lm_eval_env(WANDB_MODE="offline", WANDB_DIR=str(tmp), WANDB_SILENT="true")


@pytest.fixture(scope="module")
def reference(tiny_model, tmp_path_factory):
    root = tmp_path_factory.mktemp("ref")
    out = root / "run"
    proc = subprocess.run(_cmd(tiny_model, out, "--report_to", "tensorboard,wandb"), capture_output=True,
                          text=True, env=_env(root), cwd=ROOT, timeout=900, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {"out": out, "root": root, "stderr": proc.stderr}


@pytest.fixture(scope="module")
def interrupted(tiny_model, tmp_path_factory):
    root = tmp_path_factory.mktemp("int")
    out = root / "run"
    log = (root / "log.txt").open("w")
    proc = subprocess.Popen(_cmd(tiny_model, out), stdout=log, stderr=subprocess.STDOUT, env=_env(root), cwd=ROOT)
    deadline = time.time() + 600
    while not list((out / "eval").glob(".step-2.tmp*")):  # the evaluation of checkpoint-2 has begun
        assert proc.poll() is None and time.time() < deadline, (root / "log.txt").read_text()[-3000:]
        time.sleep(0.05)
    sent = time.time()
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(timeout=120)
    stopped_after = time.time() - sent
    state = {"code": code, "seconds": stopped_after, "log": (root / "log.txt").read_text(),
             "manifest": json.loads((out / "manifest.json").read_text()),
             "eval_dirs": sorted(p.name for p in (out / "eval").iterdir()) if (out / "eval").is_dir() else [],
             "checkpoints": sorted(p.name for p in out.glob("checkpoint-*"))}
    resumed = run_command(_cmd(tiny_model, out, "--resume", "true"), _env(root), ROOT)
    state.update(out=out, resumed=resumed)
    return state


def test_sigterm_during_evaluation_stops_within_10s(interrupted):
    assert interrupted["code"] == 143, interrupted["log"][-3000:]
    assert interrupted["seconds"] < 10
    assert "Traceback" not in interrupted["log"] and "rerun the same command with --resume" in interrupted["log"]
    manifest = interrupted["manifest"]
    assert manifest["status"] == "interrupted"
    assert manifest["metrics"]["last_checkpoint"] == "checkpoint-2" and manifest["metrics"]["global_step"] == 2
    assert interrupted["checkpoints"] == ["checkpoint-2"]
    assert interrupted["eval_dirs"] == []  # the abandoned evaluation left nothing half-written


def test_resumed_run_equals_uninterrupted_run(interrupted, reference):
    import torch
    from safetensors.torch import load_file

    assert interrupted["resumed"].returncode == 0, interrupted["resumed"].stderr[-3000:]
    out, ref = interrupted["out"], reference["out"]
    manifest, ref_manifest = (json.loads((p / "manifest.json").read_text()) for p in (out, ref))
    assert manifest["status"] == ref_manifest["status"] == "complete"
    assert manifest["metrics"]["resumed_from"] == "checkpoint-2"
    assert manifest["metrics"]["train_loss"] == pytest.approx(ref_manifest["metrics"]["train_loss"], abs=1e-5)
    a, b = load_file(out / "adapter_model.safetensors"), load_file(ref / "adapter_model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # the evaluation the signal stopped ran when the resumed run began
    assert [e["step"] for e in manifest["eval_during_training"]] == [2, 4]
    for step in (2, 4):
        ours = json.loads(next((out / "eval" / f"step-{step}").glob("results_*.json")).read_text())
        theirs = json.loads(next((ref / "eval" / f"step-{step}").glob("results_*.json")).read_text())
        assert ours["results"][TASK] == theirs["results"][TASK]


def _scalars(run: Path) -> dict[str, dict[int, float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (events,) = {p.parent for p in run.glob("runs/*/events.out.tfevents.*")}
    acc = EventAccumulator(str(events))
    acc.Reload()
    return {tag: {e.step: e.value for e in acc.Scalars(tag)} for tag in acc.Tags()["scalars"]}


def test_tensorboard_holds_eval_scores_beside_train_loss(reference):
    scalars = _scalars(reference["out"])
    assert sorted(scalars["train/loss"]) == [1, 2, 3, 4]
    assert sorted(scalars[f"eval/{TASK}/acc"]) == [2, 4]
    assert sorted(scalars[f"eval/{TASK}/invalid_rate"]) == [2, 4]
    results = json.loads(next((reference["out"] / "eval" / "step-4").glob("results_*.json")).read_text())
    assert scalars[f"eval/{TASK}/acc"][4] == pytest.approx(results["results"][TASK]["acc,none"])
    assert scalars[f"eval/{TASK}/n"][4] == 30


def test_wandb_offline_run_holds_eval_scores(reference):
    (run,) = reference["root"].glob("wandb/offline-run-*")
    (records,) = run.glob("run-*.wandb")  # the offline run's history, synced later by `wandb sync`
    data = records.read_bytes()
    assert b"train/loss" in data and f"eval/{TASK}/acc".encode() in data and f"eval/{TASK}/n".encode() in data


def test_no_bitsandbytes_noise_at_start(reference):
    assert "kernels" not in reference["stderr"]


def test_watch_logs_through_the_runs_loggers(reference, tmp_path):
    import shutil

    loggers = json.loads((reference["out"] / "loggers.json").read_text())
    assert loggers["report_to"] == ["tensorboard", "wandb"] and loggers["wandb_run_id"]
    (events,) = {p.parent for p in reference["out"].glob("runs/*/events.out.tfevents.*")}
    assert Path(loggers["tensorboard_logging_dir"]) == events.resolve()
    run = tmp_path / "run"
    shutil.copytree(reference["out"], run, ignore=shutil.ignore_patterns("eval", "runs"))
    (run / "loggers.json").write_text(json.dumps({"report_to": ["tensorboard", "wandb"], "wandb_run_id": "watch01",
                                                  "tensorboard_logging_dir": str(run / "runs" / "tb")}))
    proc = run_command([sys.executable, "-m", "finetune.watch", str(run), "--tasks", TASK, "--limit", "3",
                        "--once", "--gen_kwargs", "max_gen_toks=4"], _env(tmp_path), ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "logged to TensorBoardCallback, WandbCallback" in proc.stdout
    scalars = _scalars(run)
    assert sorted(scalars[f"eval/{TASK}/acc"]) == [2, 4] and set(scalars[f"eval/{TASK}/n"].values()) == {3}
    records = list(tmp_path.glob("wandb/offline-run-*-watch01/run-watch01.wandb"))  # the recorded W&B run
    assert records and all(f"eval/{TASK}/acc".encode() in r.read_bytes() for r in records)


def _stopped_at_last_step(reference: Path, run: Path) -> None:
    """``run``: the reference run as a signal during the evaluation of its last checkpoint leaves it."""
    import shutil

    shutil.copytree(reference, run)
    shutil.rmtree(run / "eval" / "step-4")
    for name in ("adapter_model.safetensors", "adapter_config.json", "manifest.json"):
        (run / name).unlink()


def test_resume_refuses_changed_hyperparameters(reference, tiny_model, tmp_path):
    """A resumed run keeps the checkpoint's optimizer and schedule: a new learning rate is refused before any
    model loads, and the run folder is left as it was."""
    run = tmp_path / "run"
    _stopped_at_last_step(reference["out"], run)
    before = {p: p.stat().st_mtime_ns for p in run.rglob("*")}
    proc = run_command(_cmd(tiny_model, run, "--resume", "true", "--learning_rate", "0.02"), _env(tmp_path), ROOT)
    errors = [x for x in proc.stderr.splitlines() if x.startswith("error:")]
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert len(errors) == 1 and "learning_rate 0.01 -> 0.02" in errors[0]
    assert {p: p.stat().st_mtime_ns for p in run.rglob("*")} == before


def test_resumed_from_the_last_step_trains_no_step_more(reference, tiny_model, tmp_path):
    """Stopped during the evaluation of the last checkpoint (max_steps): the resumed run evaluates it and
    writes it as the final adapter; transformers alone would train one step past max_steps."""
    from safetensors.torch import load_file

    run = tmp_path / "run"
    _stopped_at_last_step(reference["out"], run)
    proc = run_command(_cmd(tiny_model, run, "--resume", "true"), _env(tmp_path), ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["metrics"]["global_step"] == 4
    assert sorted(p.name for p in run.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]
    assert [e["step"] for e in manifest["eval_during_training"]] == [2, 4]
    ref = json.loads((reference["out"] / "manifest.json").read_text())
    assert manifest["metrics"]["train_loss"] == pytest.approx(ref["metrics"]["train_loss"], abs=1e-5)
    final, last = load_file(run / "adapter_model.safetensors"), load_file(run / "checkpoint-4" / "adapter_model.safetensors")
    assert final.keys() == last.keys() and all((final[k] == last[k]).all() for k in final)
