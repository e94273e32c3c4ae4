"""``finetune.loggers``: a watcher logs into a run's own loggers from the JSON the run recorded, and never
unpickles a file from the run folder (a run folder from elsewhere must not run code)."""

from __future__ import annotations

import json
import os
import pickle

import pytest

from finetune.loggers import LOGGERS_FILE, log_to_run

pytestmark = pytest.mark.slow  # transformers' logging integrations and TensorBoard: seconds of imports


class _Payload:
    """Unpickling this creates the file ``path``: proof that a loader executed the folder's code."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (os.mkdir, (self.path,))


def test_log_to_run_reads_json_and_never_unpickles(tmp_path, monkeypatch):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run, tb, proof = tmp_path / "run", tmp_path / "tb", tmp_path / "code-ran"
    checkpoint = run / "checkpoint-2"
    checkpoint.mkdir(parents=True)
    (checkpoint / "training_args.bin").write_bytes(pickle.dumps(_Payload(str(proof))))
    (run / LOGGERS_FILE).write_text(json.dumps({
        "report_to": ["tensorboard"], "tensorboard_logging_dir": str(tb),
        "training_args": {"run_name": "lr-sweep-3", "learning_rate": 0.002, "no_such_field": 1}}))
    monkeypatch.delenv("TENSORBOARD_LOGGING_DIR", raising=False)
    assert log_to_run(run, 2, {"eval_recipe_mpr_gen/acc": 0.25}) == ["TensorBoardCallback"]
    assert not proof.exists()
    acc = EventAccumulator(str(tb))
    acc.Reload()
    assert [(e.step, e.value) for e in acc.Scalars("eval/recipe_mpr_gen/acc")] == [(2, 0.25)]


def test_a_run_that_recorded_no_arguments_still_logs(tmp_path, monkeypatch):
    run, tb = tmp_path / "run", tmp_path / "tb"
    run.mkdir()
    (run / LOGGERS_FILE).write_text(json.dumps({"report_to": ["tensorboard"], "tensorboard_logging_dir": str(tb)}))
    monkeypatch.delenv("TENSORBOARD_LOGGING_DIR", raising=False)
    assert log_to_run(run, 1, {"eval_t/acc": 1.0}) == ["TensorBoardCallback"]
    assert list(tb.glob("events.out.tfevents.*"))
