"""A real OpenAI-compatible server for the tests: ``transformers serve`` on a free loopback port.

    with serve(model_dir, log_path) as base_url:   # "http://127.0.0.1:PORT/v1"
        ...

The server is stopped on exit, whatever happened inside (its process group is terminated, then
killed). ``transformers_server`` is a module-scoped pytest fixture over the session's tiny model.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

__all__ = ["free_port", "serve", "transformers_server"]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _loaded(base: str, model: str) -> bool:
    """True once the server answers and lists ``model`` as loaded."""
    try:
        with urllib.request.urlopen(f"{base}/v1/models", timeout=2) as resp:
            data = json.load(resp)["data"]
    except (OSError, ValueError, KeyError):
        return False
    return any(m.get("id") == model for m in data)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


@contextlib.contextmanager
def serve(model_dir: str | os.PathLike, log_path: str | os.PathLike, startup_s: float = 120,
          threads: int = 1, extra_args: tuple[str, ...] = ()) -> Iterator[str]:
    """Run ``transformers serve MODEL`` on CPU at a free loopback port; yields its base URL.

    ``threads``: torch threads of the server (1 by default: on a busy shared machine more threads
    than free cores make every forward pass wait on the slowest of them); ``extra_args`` go to the
    command line (e.g. ``--continuous-batching``)."""
    model = str(model_dir)
    port = free_port()
    cmd = [str(Path(sys.executable).parent / "transformers"), "serve", model, "--host", "127.0.0.1",
           "--port", str(port), "--device", "cpu", "--log-level", "warning", *extra_args]
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS=str(threads))
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + startup_s
        while not _loaded(base, model):
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = Path(log_path).read_text(errors="replace")[-3000:]
                raise RuntimeError(f"transformers serve did not come up on port {port}:\n{tail}")
            time.sleep(0.3)
        yield f"{base}/v1"
    finally:
        _stop(proc)


@pytest.fixture(scope="module")
def transformers_server(tiny_model, tmp_path_factory) -> Iterator[str]:
    """One ``transformers serve`` over the tiny model per test module; yields ``http://HOST:PORT/v1``."""
    with serve(tiny_model, tmp_path_factory.mktemp("serve") / "server.log") as base_url:
        yield base_url
