"""The test suite's fork server (tests/toolkit/forkserver.py) runs a command as a fresh interpreter would:
same stdout, stderr, exit code, working folder, environment and ``sys.argv``; it refuses what it cannot run
that way, and a command past its timeout is killed."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.toolkit.forkserver import ForkServer, serves

SCRIPT = ("import os, sys, json; print(json.dumps([os.getcwd(), sys.argv[1:], os.environ.get('QA_PACK_ROLLOUT'), "
          "sys.path[0]])); print('to stderr', file=sys.stderr); sys.exit(int(sys.argv[1]))")


@pytest.fixture(scope="module")
def server():
    fork = ForkServer(lambda: dict(os.environ), os.getcwd(), preload=("json",))
    yield fork
    fork.close()


@pytest.mark.parametrize("code", ["0", "3"])
def test_forked_command_matches_a_fresh_interpreter(server, tmp_path, code):
    env = {**os.environ, "QA_PACK_ROLLOUT": "rounds"}
    cmd = [sys.executable, "-c", SCRIPT, code, "x y"]
    forked = server.run(cmd, env, tmp_path, timeout=60)
    fresh = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, check=False)
    assert forked is not None
    assert (forked.returncode, forked.stdout, forked.stderr) == (fresh.returncode, fresh.stdout, fresh.stderr)
    assert forked.returncode == int(code) and str(tmp_path) in forked.stdout


def test_module_runs_as_dash_m(server, tmp_path):
    cmd = [sys.executable, "-m", "json.tool", "--sort-keys"]
    (tmp_path / "in.json").write_text('{"b": 1, "a": 2}')
    forked = server.run([*cmd, str(tmp_path / "in.json")], dict(os.environ), tmp_path, timeout=60)
    assert forked.returncode == 0 and forked.stdout.index('"a"') < forked.stdout.index('"b"')
    missing = [*cmd, str(tmp_path / "missing.json")]
    bad = server.run(missing, dict(os.environ), tmp_path, timeout=60)
    fresh = subprocess.run(missing, cwd=tmp_path, capture_output=True, text=True, check=False)
    assert bad.returncode == fresh.returncode != 0 and "No such file" in bad.stderr


def test_what_a_fork_cannot_reproduce_is_refused(server, tmp_path):
    base = dict(os.environ)
    assert serves({**base, "QA_PACK_DATA_DIR": "/elsewhere"}, base)  # read when used
    assert not serves({**base, "PYTHONPATH": "/elsewhere"}, base)  # read at start-up
    assert not serves({**base, "HF_HUB_OFFLINE": "0"}, base)  # read at import
    assert server.run([sys.executable, "-c", "pass"], {**base, "PYTHONPATH": "/x"}, tmp_path) is None
    assert server.run([sys.executable, "-X", "importtime", "-c", "pass"], base, tmp_path) is None
    assert server.run(["/usr/bin/python3", "-c", "pass"], base, tmp_path) is None


def test_timeout_kills_the_command(server, tmp_path):
    with pytest.raises(subprocess.TimeoutExpired):
        server.run([sys.executable, "-c", "import time; time.sleep(60)"], dict(os.environ), tmp_path, timeout=1)
    after = server.run([sys.executable, "-c", "print('still serving')"], dict(os.environ), tmp_path, timeout=60)
    assert after.stdout == "still serving\n"
