"""Trials as processes forked from one server that has already imported torch, transformers, TRL, peft and
lm-eval (``multiprocessing``'s ``forkserver``), so a trial costs its own model load, training and
evaluation, not an interpreter's start-up.

Each trial is still its own process: a crash or an out-of-memory kill fails that trial only and frees its
memory, SIGTERM reaches it (the worker forwards its own signals, the pruner sends one), and it dies with
its worker (SIGTERM once the worker's end of its multiprocessing sentinel pipe closes).
The server is started by ``fork`` + ``exec`` of a fresh interpreter and only imports: nothing initialises
CUDA before a trial is forked (``PYTORCH_NVML_BASED_CUDA_CHECK`` keeps ``torch.cuda.is_available`` from
doing so). The sweep's own checks run the same way (``call``), so the worker imports none of these.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import threading
import traceback
from multiprocessing.connection import wait
from pathlib import Path

from qa_tasks.errors import QAPackError

__all__ = ["PRELOAD", "Trial", "call", "context", "start"]

PRELOAD = ["torch", "transformers", "datasets", "accelerate", "peft", "trl", "lm_eval.evaluator",
           "lm_eval.models.huggingface", "finetune.sft", "finetune.eval_callback", "finetune.sweep_check"]
_context = None


def context():
    """The forkserver context, its server preloading PRELOAD (started once per process, on first use)."""
    global _context
    if _context is None:
        os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")  # inherited by the server and trials
        _context = multiprocessing.get_context("forkserver")
        _context.set_forkserver_preload(PRELOAD)
    return _context


def start() -> None:
    """Start the trial server now, without waiting for it: its imports then overlap the worker's own start-up
    (optuna, the storage); the first trial or check waits for it to be ready.

    The server gets /dev/null as stdout and stderr: trials write to their train.log and checks answer through a
    pipe, and a server holding the worker's stdout would keep a reader of it (``| tee``, a bench) waiting the
    seconds torch's shutdown takes after the worker has exited."""
    from multiprocessing import forkserver

    context()
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        forkserver.ensure_running()
    finally:
        for fd, target in zip(saved, (1, 2)):
            os.dup2(fd, target)
            os.close(fd)
        os.close(devnull)


def _die_with_parent() -> None:
    """SIGTERM to this process when the worker that started it is gone (killed outright too): the write end
    of the pipe multiprocessing hands each child as its parent's sentinel closes with the worker."""
    parent = multiprocessing.parent_process()

    def watch() -> None:
        wait([parent.sentinel])
        os.kill(os.getpid(), signal.SIGTERM)

    if parent is not None:
        threading.Thread(target=watch, name="die-with-worker", daemon=True).start()


def _redirect(log: str) -> None:
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    for target in (1, 2):
        os.dup2(fd, target)
    os.close(fd)


def _train(argv: list[str], log: str, env: dict[str, str]) -> None:
    _die_with_parent()
    _redirect(log)
    os.environ.update(env)
    from finetune.sft import main

    code = main(argv)
    sys.stdout.flush()
    sys.stderr.flush()
    sys.exit(code)


class Trial:
    """One ``finetune.sft`` run (``argv``) in a forked process, its output in ``log``."""

    def __init__(self, argv: list[str], log: Path, env: dict[str, str]):
        self.process = context().Process(target=_train, args=(argv, str(log), env), daemon=False)
        self.process.start()

    def poll(self) -> int | None:
        code = self.process.exitcode
        if code is None:
            return None
        return 128 - code if code < 0 else code  # killed by signal n: 128 + n, as a shell reports it

    def wait(self, timeout: float | None = None) -> int | None:
        self.process.join(timeout)
        return self.poll()

    def send_signal(self, sig: int) -> None:
        if self.process.exitcode is None:
            os.kill(self.process.pid, sig)


def _call(conn, function: str, args: tuple) -> None:
    _die_with_parent()
    import importlib

    module, _, name = function.partition(":")
    try:
        conn.send(("ok", getattr(importlib.import_module(module), name)(*args)))
    except QAPackError as e:
        conn.send(("error", str(e)))
    except BaseException:  # noqa: BLE001 (sent to the worker, which raises it)
        conn.send(("crash", traceback.format_exc()))
    finally:
        conn.close()


def call(function: str, *args):
    """``module:function(*args)`` in a forked process; its QAPackError is raised here."""
    ctx = context()
    receive, send = ctx.Pipe(duplex=False)
    process = ctx.Process(target=_call, args=(send, function, args))
    process.start()
    send.close()
    try:
        kind, value = receive.recv()
    except EOFError:
        process.join()
        raise RuntimeError(f"{function} died (exit {process.exitcode}) before it answered") from None
    finally:
        receive.close()
    process.join()
    if kind == "error":
        raise QAPackError(value)
    if kind == "crash":
        raise RuntimeError(f"{function} failed:\n{value}")
    return value
