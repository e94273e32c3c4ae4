"""Sweep storages beyond the SQLite default: two workers on two output folders fill one study on a real
PostgreSQL server started on loopback by this file, one of them killed with SIGKILL mid-trial (its trial is
failed by the heartbeat and re-run by the other); a journal file fails the trials of a dead worker."""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from tests.test_sweep import TPE
from tests.toolkit.env import ROOT, lm_eval_env

pytestmark = pytest.mark.heavy(order=7)

optuna = pytest.importorskip("optuna")


def _server_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    path = found[-1] if found else shutil.which("initdb")
    return Path(path).parent if path else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def postgres_url():
    """A throwaway PostgreSQL server on loopback (initdb refuses root: run as the postgres user then)."""
    pytest.importorskip("psycopg", reason="psycopg (extra sweep) is not installed")
    bindir = _server_bin()
    if bindir is None:
        pytest.skip("no PostgreSQL server binaries (apt-get install postgresql)")
    as_user: list[str] = []
    root = Path(tempfile.mkdtemp(prefix="qa-pack-pg-"))
    if os.geteuid() == 0:
        as_user = ["runuser", "-u", "postgres", "--"]
        shutil.chown(root, "postgres")
    data, port = root / "data", _free_port()
    run = lambda *cmd: subprocess.run([*as_user, *map(str, cmd)], capture_output=True, text=True,
                                      timeout=120, check=False)
    init = run(bindir / "initdb", "-D", data, "-U", "sweep", "--auth=trust", "-E", "UTF8")
    if init.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        pytest.skip(f"initdb failed: {init.stderr.strip().splitlines()[-1:]}")
    start = run(bindir / "pg_ctl", "-D", data, "-l", root / "server.log", "-w", "-t", "60", "start", "-o",
                f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off")
    assert start.returncode == 0, start.stderr + (root / "server.log").read_text()
    try:
        yield f"postgresql://sweep@127.0.0.1:{port}/postgres"
    finally:
        run(bindir / "pg_ctl", "-D", data, "-m", "immediate", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)


def _cmd(config: Path, model: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "finetune.sweep", "--config", str(config), "--model_name_or_path", str(model),
            "--output_dir", str(out), *extra]


@pytest.fixture(scope="module")
def killed_worker(postgres_url, tiny_model, tmp_path_factory):
    """Workers A and B (own output folders, as on two machines) on one PostgreSQL study of 3 trials; A is
    killed with SIGKILL while its first trial trains."""
    root = tmp_path_factory.mktemp("pg")
    config = root / "sweep.yaml"
    config.write_text(yaml.safe_dump(TPE), encoding="utf-8")
    extra = ("--storage", postgres_url, "--n_trials", "3", "--seed", "0", "--heartbeat", "1")
    logs = {name: root / f"{name}.log" for name in "AB"}
    procs = {name: subprocess.Popen(_cmd(config, tiny_model, root / name, *extra), stdout=logs[name].open("w"),
                                    stderr=subprocess.STDOUT, env=lm_eval_env(), cwd=ROOT) for name in "AB"}
    deadline = time.time() + 600
    while not list((root / "A").glob("trial-*/run/checkpoint-1")):  # A's trial is training
        assert procs["A"].poll() is None and time.time() < deadline, logs["A"].read_text()[-3000:]
        time.sleep(0.1)
    procs["A"].send_signal(signal.SIGKILL)
    procs["A"].wait(timeout=30)
    code = procs["B"].wait(timeout=600)
    assert code == 0, logs["B"].read_text()[-3000:]
    study = optuna.load_study(study_name="sweep", storage=postgres_url)
    return {"study": study, "root": root, "log_b": logs["B"].read_text()}


@pytest.mark.slow
def test_killed_worker_trial_is_failed_by_heartbeat_and_rerun(killed_worker):
    trials = killed_worker["study"].get_trials(deepcopy=False)
    by_a = [t for t in trials if str(t.user_attrs.get("output_dir", "")).startswith(str(killed_worker["root"] / "A"))]
    assert by_a and by_a[0].state.name == "FAIL" and "error" not in by_a[0].user_attrs
    rerun = [t for t in trials if t.user_attrs.get("retry_of") == by_a[0].number]
    assert len(rerun) == 1 and rerun[0].state.name in ("COMPLETE", "PRUNED")
    assert rerun[0].params == by_a[0].params
    done = [t for t in trials if t.state.name in ("COMPLETE", "PRUNED")]
    assert len(done) >= 3, [(t.number, t.state.name) for t in trials]  # the study reached --n_trials
    assert not [t for t in trials if t.state.name == "RUNNING"]
    assert (killed_worker["root"] / "B" / "sweep.json").is_file()
    assert "postgresql://sweep@127.0.0.1" in killed_worker["log_b"]


@pytest.mark.slow
def test_killed_worker_takes_its_trial_down(killed_worker):
    """The trial of the killed worker got SIGTERM when its worker died (its server exits with the worker):
    it stopped as an interrupted finetune.sft run does, and no process writes into its folder any more."""
    import json

    manifests = list((killed_worker["root"] / "A").glob("trial-*/run/manifest.json"))
    assert len(manifests) == 1
    assert json.loads(manifests[0].read_text())["status"] == "interrupted"
    run_dir = manifests[0].parent
    before = sorted(p.name for p in run_dir.iterdir())
    time.sleep(1)
    assert sorted(p.name for p in run_dir.iterdir()) == before


def test_journal_fails_the_trials_of_a_dead_worker(tmp_path):
    from finetune.sweep_storage import fail_orphaned_trials, open_storage

    storage = open_storage(f"journal:{tmp_path / 'study.log'}", tmp_path, 5)
    study = optuna.create_study(study_name="s", storage=storage.storage)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    alive, orphan = study.ask(), study.ask()
    host = socket.gethostname()
    study._storage.set_trial_system_attr(alive._trial_id, "worker", f"{host}:{os.getpid()}")
    study._storage.set_trial_system_attr(orphan._trial_id, "worker", f"{host}:{dead.pid}")
    again = open_storage(f"journal:{tmp_path / 'study.log'}", tmp_path, 5)  # as another worker reads it
    fail_orphaned_trials(optuna.load_study(study_name="s", storage=again.storage), again)
    states = {t.number: t.state.name for t in study.get_trials()}
    assert states == {alive.number: "RUNNING", orphan.number: "FAIL"}
    assert again.label == f"journal:{tmp_path / 'study.log'}" and not again.heartbeat
