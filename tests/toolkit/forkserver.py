"""Test-only: start the pack's command lines (``lm_eval``, ``python -m finetune.sft``, ...) as processes forked
from one server that has already imported torch, transformers, lm-eval, peft and TRL.

Each command still runs in its own process, through its real entry point, with its own arguments,
environment, working directory, stdout/stderr and exit code; only the ~5-15 s of CPU that every fresh
interpreter spends importing those libraries is paid once per test worker instead of once per command.
A command whose environment differs from the server's in anything read at import time (``PYTHONPATH``,
``HF_*``, ``QA_PACK_DISABLE_HOOK``, thread counts, ...) runs as a fresh interpreter instead (``serves``), as
do commands the tests signal (they keep ``subprocess.Popen``).

Protocol (one UNIX socket, one request at a time): the client sends one JSON line ``{argv, env, cwd, out,
err}``; the server forks, answers ``{"pid": n}``, waits for the child and answers ``{"code": n}``.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import runpy
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path

# variables a command may change without a fresh interpreter: they are read when used, not at import
LAZY = {"QA_PACK_DATA_DIR", "QA_PACK_HENDRYCKS_MATH_DIR", "QA_PACK_ROLLOUT", "QA_PACK_TINY_MODEL_CACHE",
        "QA_PACK_MATH_TIMEOUT_S", "PYTEST_CURRENT_TEST", "WANDB_MODE", "WANDB_DIR", "WANDB_SILENT",
        "TENSORBOARD_LOGGING_DIR", "PWD", "OLDPWD",
        "TORCHINDUCTOR_CACHE_DIR"}  # torch sets this one in the test process once inductor is imported
PRELOAD = ("torch", "transformers", "datasets", "accelerate", "peft", "trl", "lm_eval", "lm_eval.evaluator",
           "lm_eval.__main__", "lm_eval.models.huggingface", "finetune.sft", "finetune.watch")


def serves(env: dict[str, str], base: dict[str, str]) -> bool:
    """Whether a command with ``env`` behaves in a child of a server started with ``base``."""
    keys = set(env) | set(base)
    return all(env.get(k) == base.get(k) for k in keys - LAZY)


def _target(argv: list[str]):
    """The entry point a fresh ``python ARGV`` or console script of this environment would run; None for
    anything else (another interpreter, interpreter options such as ``-X importtime``)."""
    if Path(argv[0]).parent != Path(sys.executable).parent:
        return None
    head = Path(argv[0]).name
    if head == "lm_eval":
        def run_cli():
            from lm_eval.__main__ import cli_evaluate
            sys.argv = ["lm_eval", *argv[1:]]
            return cli_evaluate()
        return run_cli
    if head.startswith("python") and len(argv) > 2 and argv[1] == "-m":
        def run_module():
            sys.argv = [argv[2], *argv[3:]]
            runpy.run_module(argv[2], run_name="__main__", alter_sys=True)
        return run_module
    if head.startswith("python") and len(argv) > 2 and argv[1] == "-c":
        def run_code():
            sys.argv = ["-c", *argv[3:]]
            exec(compile(argv[2], "<string>", "exec"), {"__name__": "__main__"})  # noqa: S102  (python -c)
        return run_code
    return None


def _child(request: dict) -> None:
    """Runs in the forked process: becomes the requested command, then exits as Python would."""
    code = 1
    try:
        os.setsid()
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.environ.clear()
        os.environ.update(request["env"])
        os.chdir(request["cwd"])
        for fd, path, mode in ((0, os.devnull, os.O_RDONLY), (1, request["out"], os.O_WRONLY),
                               (2, request["err"], os.O_WRONLY)):
            target = os.open(path, mode)
            os.dup2(target, fd)
            os.close(target)
        argv = request["argv"]
        # sys.path[0] as a fresh interpreter sets it: the script's folder, or the working folder for -m / -c
        sys.path[0] = str(Path(argv[0]).parent) if Path(argv[0]).name == "lm_eval" else \
            (os.getcwd() if argv[1] == "-m" else "")
        result = _target(argv)()
        code = 0 if result is None else (result if isinstance(result, int) else 1)
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        if not isinstance(e.code, int) and e.code is not None:
            print(e.code, file=sys.stderr)
    except BaseException:  # noqa: BLE001  (as an uncaught exception ends a fresh interpreter: exit 1)
        traceback.print_exc()
        code = 1
    finally:
        try:
            atexit._run_exitfuncs()
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def serve(path: str, preload: list[str]) -> None:
    if sys.platform.startswith("linux"):  # the server ends with the test worker that started it
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    for name in preload:
        __import__(name)
    # lm-eval adds torch's environment report to every results file; it is the same for every command
    # of this server (the installed packages do not change), so it is gathered once, for real
    if "torch" in sys.modules:
        from torch.utils import collect_env

        report = collect_env.get_pretty_env_info()
        collect_env.get_pretty_env_info = lambda: report
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(8)
    print("ready", flush=True)
    while True:
        conn, _ = listener.accept()
        stream, pid = conn.makefile("rw"), 0
        try:
            request = json.loads(stream.readline())
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                listener.close()
                conn.close()
                _child(request)
            stream.write(json.dumps({"pid": pid}) + "\n")
            stream.flush()
            _, status = os.waitpid(pid, 0)
            stream.write(json.dumps({"code": os.waitstatus_to_exitcode(status)}) + "\n")
            stream.flush()
        except OSError:  # the client has gone (it timed out and killed the command): serve the next one
            pass
        finally:
            with contextlib.suppress(ChildProcessError):
                if pid:
                    os.waitpid(pid, 0)
            with contextlib.suppress(OSError):
                stream.close()
            conn.close()


class ForkServer:
    """The client side, one server per test worker, started on first use with the environment
    ``environment()`` gives then."""

    def __init__(self, environment, cwd: Path, preload: tuple[str, ...] = PRELOAD):
        self.environment, self.cwd, self.preload = environment, cwd, preload
        self.env: dict[str, str] = {}
        self.proc: subprocess.Popen | None = None

    def _start(self) -> bool:
        if self.proc is None:
            self.dir = Path(tempfile.mkdtemp(prefix="qa-forkserver-"))
            self.path = str(self.dir / "socket")
            self.env = self.environment()
            self.proc = subprocess.Popen([sys.executable, "-m", "tests.toolkit.forkserver", self.path,
                                          ",".join(self.preload)],
                                         env=self.env, cwd=self.cwd, stdout=subprocess.PIPE, text=True)
            ready = self.proc.stdout.readline().strip() == "ready"
            if not ready:
                self.proc.kill()
            atexit.register(self.close)
        return self.proc.poll() is None

    def run(self, argv: list[str], env: dict[str, str], cwd: Path | str,
            timeout: float | None = None) -> subprocess.CompletedProcess | None:
        """Runs ``argv`` forked from the server; None when it cannot (then run a fresh interpreter)."""
        if _target(argv) is None or not self._start() or not serves(env, self.env):
            return None
        out, err = self.dir / f"{os.getpid()}.out", self.dir / f"{os.getpid()}.err"
        out.write_bytes(b"")
        err.write_bytes(b"")
        request = {"argv": list(map(str, argv)), "env": env, "cwd": str(cwd), "out": str(out), "err": str(err)}
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.connect(self.path)
            stream = conn.makefile("rw")
            stream.write(json.dumps(request) + "\n")
            stream.flush()
            pid = json.loads(stream.readline())["pid"]
            conn.settimeout(timeout)
            try:
                code = json.loads(stream.readline())["code"]
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
                raise subprocess.TimeoutExpired(argv, timeout) from None
        return subprocess.CompletedProcess(argv, code, out.read_text(errors="replace"),
                                           err.read_text(errors="replace"))

    def close(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            shutil.rmtree(self.dir, ignore_errors=True)


if __name__ == "__main__":
    serve(sys.argv[1], [name for name in sys.argv[2].split(",") if name])
