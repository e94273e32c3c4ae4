"""The bounded grading worker: equivalence off the caller's process, with a time bound per item.

math-verify and sympy can run for minutes or exhaust memory on adversarial answers, and
math-verify's own timeouts use SIGALRM, which only works on the main thread. So all answer
clean-up and equivalence testing runs in a separate worker process (a fresh interpreter, never a
fork of a process that holds a model or threads): a soft alarm per item inside the worker, and a
hard kill (then a restart) from the caller. A timeout counts as wrong and is reported in
``Verdict.timed_out``. Items travel in batches (one message out, one small reply per item back),
so grading many items costs one round trip per batch, not per item.
"""

from __future__ import annotations

import atexit
import os
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

from qa_tasks.errors import QAPackError
from qa_tasks.math.normalize import Verdict

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["DEFAULT_TIMEOUT_S", "TIMEOUT_ENV", "Grader", "default_grader", "timeout_from_env", "worker_main"]

TIMEOUT_ENV = "QA_PACK_MATH_TIMEOUT_S"
DEFAULT_TIMEOUT_S = 2.0  # per-item grading bound unless QA_PACK_MATH_TIMEOUT_S says otherwise
_KILL_MARGIN_S = 1.0  # hard bound = soft bound + margin: the soft alarm cannot interrupt C code
_WORKER_MEMORY_BYTES = 3 << 30  # a runaway big-integer power fails with MemoryError, not swap


def timeout_from_env() -> float:
    """The per-item bound: ``QA_PACK_MATH_TIMEOUT_S`` if set (validated), else ``DEFAULT_TIMEOUT_S``."""
    value = os.environ.get(TIMEOUT_ENV, "").strip() or str(DEFAULT_TIMEOUT_S)
    try:
        seconds = float(value)
    except ValueError:
        seconds = float("nan")
    if not seconds > 0:
        raise QAPackError(f"{TIMEOUT_ENV}={value} is not a positive number of seconds; set it to e.g. 2 or unset it")
    return seconds


class _SoftTimeout(BaseException):
    """Not an Exception, so the broad ``except Exception`` inside math-verify cannot swallow it."""


def _grade_one(pred: str, gold: str, timeout_s: float) -> tuple:
    """("ok", correct, method) or ("timeout",), with the soft alarm armed around the whole test."""
    import signal

    from qa_tasks.math.equivalence import equivalent_unbounded

    try:
        signal.setitimer(signal.ITIMER_REAL, timeout_s)
        verdict = equivalent_unbounded(pred, gold)
        signal.setitimer(signal.ITIMER_REAL, 0)
        return ("ok", verdict.correct, verdict.method)
    except _SoftTimeout:
        return ("timeout",)
    except MemoryError:
        signal.setitimer(signal.ITIMER_REAL, 0)
        return ("timeout",)
    except Exception:  # noqa: BLE001 - a grading bug must not take the worker down
        signal.setitimer(signal.ITIMER_REAL, 0)
        return ("ok", False, "none")


def worker_main() -> None:
    """Worker loop over stdin/stdout: a list of (pred, gold) plus the bound -> one reply per item."""
    import logging
    import signal
    from multiprocessing.connection import Connection

    reader = Connection(os.dup(0), writable=False)
    writer = Connection(os.dup(1), readable=False)
    os.dup2(2, 1)  # stray prints from sympy or math-verify must not corrupt the replies
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (_WORKER_MEMORY_BYTES, _WORKER_MEMORY_BYTES))
    except (ImportError, ValueError, OSError):
        pass
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    from math_verify import parse, verify

    # first use builds the LaTeX parser: do it before "ready" so no item is charged for it
    verify(parse("$\\left(1,\\frac{\\pi}{2}\\right]$", parsing_timeout=None),
           parse("$(1,\\pi/2]$", parsing_timeout=None), timeout_seconds=None)

    def on_alarm(signum, frame):
        raise _SoftTimeout

    signal.signal(signal.SIGALRM, on_alarm)
    writer.send(("ready",))
    while True:
        try:
            pairs, timeout_s = reader.recv()
        except (EOFError, OSError):
            return
        for pred, gold in pairs:
            reply = _grade_one(pred, gold, timeout_s)
            try:
                writer.send(reply)
            except _SoftTimeout:  # the alarm landed between the grading and the reply
                writer.send(reply)


class _Worker:
    """One worker process and the two pipe ends that talk to it."""

    def __init__(self) -> None:
        import subprocess
        import sys
        from multiprocessing.connection import Connection

        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # above qa_tasks/
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from qa_tasks.math.worker import worker_main; worker_main()"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, close_fds=True)
        self.writer = Connection(os.dup(self.proc.stdin.fileno()), readable=False)
        self.reader = Connection(os.dup(self.proc.stdout.fileno()), writable=False)
        self.proc.stdin.close()
        self.proc.stdout.close()
        self.ready = False

    def wait_ready(self, timeout_s: float = 120.0) -> None:
        if self.ready:
            return
        try:
            ok = self.reader.poll(timeout_s) and self.reader.recv() == ("ready",)
        except (EOFError, OSError):
            ok = False
        if not ok:
            self.kill()
            raise RuntimeError("the math grading worker did not start (check that math-verify is installed)")
        self.ready = True

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.reader.close()
        self.writer.close()


class Grader:
    """Equivalence with a bounded time per item, off the caller's thread (one worker process).

    Thread-safe; use one Grader per thread for parallel grading. ``timeouts`` counts the items that
    hit the bound (each also comes back as ``Verdict(False, "timeout", timed_out=True)``). A worker
    killed at the hard bound is replaced at once, so its start-up overlaps the caller's next work.
    """

    def __init__(self, timeout_s: float | None = None) -> None:
        """``timeout_s``: per-item bound; default ``QA_PACK_MATH_TIMEOUT_S`` or 2 s."""
        if timeout_s is None:
            timeout_s = timeout_from_env()
        if not timeout_s > 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s!r}")
        self.timeout_s = float(timeout_s)
        self.timeouts = 0
        self._worker: _Worker | None = None
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            if self._worker is not None:
                self._worker.kill()
                self._worker = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def start(self) -> Self:
        """Start the worker now (otherwise it starts on the first item that needs it)."""
        with self._lock:
            self._ensure_worker()
        return self

    def _ensure_worker(self) -> _Worker:
        if self._worker is None or not self._worker.alive():
            if self._worker is not None:
                self._worker.kill()
            self._worker = _Worker()
        self._worker.wait_ready()
        return self._worker

    def equivalent(self, pred: str | None, gold: str) -> Verdict:
        """Whether ``pred`` is equivalent to ``gold`` (both raw answer strings)."""
        return self.equivalent_many([(pred, gold)])[0]

    def equivalent_many(self, pairs: Sequence[tuple[str | None, str]]) -> list[Verdict]:
        """``equivalent`` for many (pred, gold) pairs in one worker round trip, same bound per item."""
        verdicts: list[Verdict | None] = [None] * len(pairs)
        todo = []
        for i, (pred, _) in enumerate(pairs):
            if pred is None or not pred.strip():
                verdicts[i] = Verdict(False, "empty")
            else:
                todo.append(i)
        with self._lock:
            while todo:
                todo = self._send_batch(pairs, todo, verdicts)
        return verdicts  # type: ignore[return-value]

    def _send_batch(self, pairs, todo: list[int], verdicts: list) -> list[int]:
        """Grade ``todo`` in the worker; returns the items still to send after a hard kill."""
        worker = self._ensure_worker()
        try:
            worker.writer.send(([pairs[i] for i in todo], self.timeout_s))
        except (EOFError, OSError):
            return self._replace_after(worker, todo, 0, verdicts)
        for k, i in enumerate(todo):
            reply = None
            try:  # each reply gets its own hard bound, measured from the previous one
                if worker.reader.poll(self.timeout_s + _KILL_MARGIN_S):
                    reply = worker.reader.recv()
            except (EOFError, OSError):  # the worker died (e.g. a crash inside sympy)
                reply = None
            if reply is None:  # stuck in C code past the soft alarm, or dead
                return self._replace_after(worker, todo, k, verdicts)
            verdicts[i] = self._verdict(reply)
        return []

    def _replace_after(self, worker: _Worker, todo: list[int], k: int, verdicts: list) -> list[int]:
        """Kill the worker, count item k as timed out, start a replacement now; the rest go again."""
        worker.kill()
        self._worker = _Worker()
        verdicts[todo[k]] = self._verdict(("timeout",))
        return todo[k + 1:]

    def _verdict(self, reply: tuple) -> Verdict:
        if reply[0] == "timeout":
            self.timeouts += 1
            return Verdict(False, "timeout", timed_out=True)
        return Verdict(bool(reply[1]), reply[2])


_DEFAULT: Grader | None = None
_DEFAULT_LOCK = threading.Lock()


def default_grader() -> Grader:
    """The process-wide grader (started lazily, stopped at exit)."""
    global _DEFAULT
    with _DEFAULT_LOCK:
        if _DEFAULT is None:
            _DEFAULT = Grader()
            atexit.register(_DEFAULT.close)
        return _DEFAULT
