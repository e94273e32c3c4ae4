"""Grading of ``<think> … </think> <answer> … </answer>`` responses, as pure functions.

Three separate questions, answered in this order:

1. **Format gate** (``check_format``), CS336 ``r1_zero_reward_fn`` semantics exactly: a response is
   format-correct iff it contains the literal ``"</think> <answer>"`` (one space) and ``"</answer>"``.
   With the base prompt the response continues after the ``<think>`` the prompt ended with, so it
   never needs an opening ``<think>``. A failing response gets every failure kind that applies.
2. **Answer extraction** (``extract_answer``): the span after the first ``"</think> <answer>"`` up
   to the first ``</answer>`` that closes it (text after it is ignored; models keep generating because
   lm-eval cannot stop on ``</answer>`` without stripping it); the content of the last ``\\boxed{}``
   inside the span if there is one.
3. **Equivalence** (``Grader.equivalent``): normalised string match, then math-verify on the
   ``$…$``-wrapped answers (gold first), then sympy where math-verify cannot parse or claims two
   different exact numbers are equal (its float rounding makes ``1/2^99`` equal ``1/2^98``).

math-verify and sympy can run for minutes or exhaust memory on adversarial answers (``10^{10^{10}}``),
and math-verify's own timeouts use SIGALRM, which only works on the main thread. So everything past
the cheap string checks runs in a separate worker process with its own time bound: a soft alarm
inside the worker, and a hard kill (then a restart) from the caller. A timeout counts as wrong and
is reported in ``Verdict.timed_out``.
"""

from __future__ import annotations

import atexit
import os
import re
import threading
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING

from qa_tasks.errors import QAPackError

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = [
    "ANSWER_CLOSE",
    "ANSWER_OPEN",
    "DEFAULT_TIMEOUT_S",
    "FAILURE_KINDS",
    "GATE",
    "THINK_CLOSE",
    "TIMEOUT_ENV",
    "FormatCheck",
    "Grader",
    "ResponseGrade",
    "Verdict",
    "answer_span",
    "check_format",
    "default_grader",
    "equivalent_unbounded",
    "extract_answer",
    "gold_from_gsm8k",
    "gold_from_math",
    "grade_response",
    "last_boxed",
    "normalize_answer",
    "quick_verdict",
    "timeout_from_env",
]

GATE = "</think> <answer>"
THINK_CLOSE = "</think>"
ANSWER_OPEN = "<answer>"
ANSWER_CLOSE = "</answer>"
FAILURE_KINDS = ("missing_think_close", "missing_answer_open", "missing_answer_close", "wrong_order")
TIMEOUT_ENV = "QA_PACK_MATH_TIMEOUT_S"
DEFAULT_TIMEOUT_S = 2.0  # per-item grading bound unless QA_PACK_MATH_TIMEOUT_S says otherwise


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
_KILL_MARGIN_S = 1.0  # hard bound = soft bound + margin: the soft alarm cannot interrupt C code
_WORKER_MEMORY_BYTES = 3 << 30  # a runaway big-integer power fails with MemoryError, not swap


# --- format gate ------------------------------------------------------------------------------

@dataclass(frozen=True)
class FormatCheck:
    ok: bool
    failures: tuple[str, ...]  # empty iff ok; otherwise one or more of FAILURE_KINDS


def check_format(response: str) -> FormatCheck:
    """CS336 gate plus the reasons a response fails it (several kinds can apply at once)."""
    if GATE in response and ANSWER_CLOSE in response:
        return FormatCheck(True, ())
    has_think_close, has_answer_open = THINK_CLOSE in response, ANSWER_OPEN in response
    failures = []
    if not has_think_close:
        failures.append("missing_think_close")
    if not has_answer_open:
        failures.append("missing_answer_open")
    if ANSWER_CLOSE not in response:
        failures.append("missing_answer_close")
    if has_think_close and has_answer_open and GATE not in response:
        failures.append("wrong_order")  # both tags there, never as "</think> <answer>"
    return FormatCheck(False, tuple(failures))


# --- answer and gold extraction ---------------------------------------------------------------

def answer_span(response: str) -> str | None:
    """Text of the answer block that follows the first ``"</think> <answer>"``, or None without one.

    The block ends at the first ``</answer>`` after it (the end of the response if none follows);
    an ``<answer>`` re-opened inside the block starts it again, as in CS336's split on ``<answer>``.
    """
    start = response.find(GATE)
    if start < 0:
        return None
    start += len(GATE)
    end = response.find(ANSWER_CLOSE, start)
    span = response[start:] if end < 0 else response[start:end]
    reopened = span.rfind(ANSWER_OPEN)
    return span[reopened + len(ANSWER_OPEN):] if reopened >= 0 else span


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{…}`` / ``\\fbox{…}`` (or ``\\boxed 5``); None if absent or unbalanced."""
    index = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    if index < 0:
        return None
    i = index + (len("\\boxed") if text.startswith("\\boxed", index) else len("\\fbox"))
    if i < len(text) and text[i] == " ":  # "\boxed 5": up to the next "$" or end
        rest = text[i + 1:]
        return rest.split("$", 1)[0].strip() or None
    if i >= len(text) or text[i] != "{":
        return None
    depth = 0
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i + 1:j]
    return None


def extract_answer(response: str) -> str | None:
    """The answer a format-correct response gives (None when it gives none, e.g. unbalanced box)."""
    span = answer_span(response)
    if span is None:
        return None
    if "\\boxed" in span or "\\fbox" in span:
        span = last_boxed(span)
        if span is None:
            return None
    span = span.strip()
    return span or None


def gold_from_gsm8k(answer_field: str) -> str:
    """GSM8K gold: the number after ``####`` (thousands separators dropped)."""
    if "####" not in answer_field:
        raise ValueError("GSM8K answer has no '####' line")
    return answer_field.rsplit("####", 1)[1].strip().replace(",", "")


def gold_from_math(row: dict) -> str | None:
    """MATH gold: the ``answer`` field (MATH-500) or the last ``\\boxed{}`` of ``solution`` (hendrycks)."""
    answer = row.get("answer")
    if isinstance(answer, str) and answer.strip():
        return answer.strip()
    solution = row.get("solution")
    if isinstance(solution, str):
        boxed = last_boxed(solution)
        if boxed and boxed.strip():
            return boxed.strip()
    return None


# --- normalised string match (cheap, runs in the caller; every step is linear time) -------------

_UNIT_WORDS = (
    "dollars", "dollar", "cents", "cent", "units", "unit", "square", "sq", "inches", "inch", "feet", "foot",
    "ft", "meters", "meter", "cm", "mm", "km", "miles", "mile", "mph", "hours", "hour", "minutes", "minute",
    "seconds", "second", "days", "day", "weeks", "years", "degrees", "degree", "pounds", "pound", "lbs",
    "ounces", "grams", "kg", "points", "ways", "people", "students", "marbles", "apples", "cookies",
    "percent", "times", "pages", "books", "eggs", "liters", "gallons",
)
_UNITS = "|".join(_UNIT_WORDS)
_POWER = r"(?:\^\{?\d\}?)?"  # square/cubic units: \text{ cm}^2
_TRAILING_UNIT = re.compile(
    rf"(?:\s*\\(?:text|mbox|mathrm)\{{\s*(?:{_UNITS})(?:\s+(?:{_UNITS}))*\s*\}}{_POWER}|\s+(?:{_UNITS})\b\.?{_POWER})+$",
    re.IGNORECASE)
_TEXT_WRAPPER = re.compile(r"\\(?:text|textbf|mathrm|mbox|mathbf|operatorname)\{([^{}]*)\}")
_FRAC_SHORT = re.compile(r"\\frac(\d)(\d)")  # \frac12 -> \frac{1}{2}
_FRAC_HALF_SHORT = re.compile(r"\\frac\{([^{}]*)\}(\d)")  # \frac{1}2
_FRAC_SHORT_BRACE = re.compile(r"\\frac(\d)\{")  # \frac1{2}
_SQRT_SHORT = re.compile(r"\\sqrt(\w)")  # \sqrt2 -> \sqrt{2}
_SIMPLE_SLASH = re.compile(r"^(-?\d+)/(\d+)$")  # 1/2 -> \frac{1}{2}
_NUMBER = re.compile(r"^-?\d+(?:\.\d+)?$")
_THOUSANDS = re.compile(r"^-?\d{1,3}(?:,\d{3})+(?:\.\d+)?$")
_VARIABLE_LHS = re.compile(r"^[a-zA-Z](?:_\{?\w+\}?)?$|^\\[a-zA-Z]+$")
_BASE_NUMBER = re.compile(r"^([0-9a-zA-Z]+)_\{?(\d+)\}?$")  # 52_8, 1011_{2}: math-verify drops the base
_MAX_NORMALIZE = 2000  # longer answers skip the regex steps (left to the bounded worker)


def normalize_answer(text: str) -> str:
    """Canonical string for exact comparison (MATH ``strip_string`` style, plus units and numbers)."""
    s = text.strip()
    if len(s) > _MAX_NORMALIZE:
        return s
    for old, new in (("\n", " "), ("\\!", ""), ("\\,", ""), ("\\;", ""), ("\\ ", " "), ("\\dfrac", "\\frac"),
                     ("\\tfrac", "\\frac"), ("\\left", ""), ("\\right", ""), ("^{\\circ}", ""), ("^\\circ", ""),
                     ("°", ""), ("\\$", ""), ("$", ""), ("\\%", ""), ("%", ""), ("−", "-"), ("\\(", ""),
                     ("\\)", ""), ("\\[", ""), ("\\]", ""), ("\\displaystyle", "")):
        s = s.replace(old, new)
    s = s.strip().rstrip(".").strip()
    s = _TRAILING_UNIT.sub("", s)
    s = _TEXT_WRAPPER.sub(r"\1", s)
    s = _TRAILING_UNIT.sub("", s).strip()
    if s.count("=") == 1:  # "x = 5" -> "5", only for a lone variable on the left
        lhs, rhs = s.split("=")
        if _VARIABLE_LHS.match(lhs.strip()):
            s = rhs.strip()
    s = s.replace(" ", "")
    if _THOUSANDS.match(s):
        s = s.replace(",", "")
    s = _SQRT_SHORT.sub(r"\\sqrt{\1}", s)
    s = _FRAC_SHORT.sub(r"\\frac{\1}{\2}", s)
    s = _FRAC_HALF_SHORT.sub(r"\\frac{\1}{\2}", s)
    s = _FRAC_SHORT_BRACE.sub(r"\\frac{\1}{", s)
    slash = _SIMPLE_SLASH.match(s)
    if slash:
        s = f"\\frac{{{slash.group(1)}}}{{{slash.group(2)}}}"
    if s.startswith("."):
        s = "0" + s
    if s.startswith("-."):
        s = "-0" + s[1:]
    if _NUMBER.match(s):
        s = _canonical_number(s)
    return s


def _canonical_number(s: str) -> str:
    """'18.00' -> '18', '-0' -> '0', '0.50' -> '0.5'."""
    try:
        value = Decimal(s)
    except InvalidOperation:
        return s
    if value == value.to_integral_value():
        return str(int(value))
    return format(value.normalize(), "f")


@dataclass(frozen=True)
class Verdict:
    correct: bool
    method: str  # how it was decided: empty, string, number, math_verify, sympy, none, timeout
    timed_out: bool = False


def quick_verdict(pred: str | None, gold: str) -> Verdict | None:
    """Decide without sympy when possible: empty answer, equal normalised strings, integers."""
    if pred is None or not pred.strip():
        return Verdict(False, "empty")
    p, g = normalize_answer(pred), normalize_answer(gold)
    if p and p == g:
        return Verdict(True, "string")
    base_p, base_g = _BASE_NUMBER.match(p), _BASE_NUMBER.match(g)
    if base_p and base_g:
        return Verdict(base_p.groups() == base_g.groups(), "string")
    if _NUMBER.match(p) and _NUMBER.match(g):
        if Decimal(p) == Decimal(g):
            return Verdict(True, "number")
        if "." not in p and "." not in g:  # two different integers: nothing can make them equal
            return Verdict(False, "number")
    return None


# --- math-verify and sympy (slow, unbounded: only ever called inside the worker) -----------------

_SAFE_EXPR = re.compile(r"^[0-9a-z+\-*/^().,\s]*$")
_SAFE_NAMES = {"sqrt", "pi", "e", "i", "x", "y", "z", "n", "k", "a", "b", "c", "t", "sin", "cos", "tan", "log",
               "ln", "exp", "oo"}


def _latex_to_plain(s: str) -> str | None:
    """A sympy-parsable form of simple LaTeX, or None when the text is outside that safe subset."""
    s = normalize_answer(s)
    s = re.sub(r"(\d)\\frac\{(\d+)\}\{(\d+)\}", r"(\1+\2/\3)", s)  # mixed number 1\frac{4}{5}
    s = re.sub(r"\\[dt]?frac\{([^{}]*)\}\{([^{}]*)\}", r"((\1)/(\2))", s)
    s = re.sub(r"\\sqrt\{([^{}]*)\}", r"sqrt(\1)", s)
    for old, new in (("\\pi", "pi"), ("\\cdot", "*"), ("\\times", "*"), ("\\infty", "oo"), ("{", "("),
                     ("}", ")"), ("\\ln", "ln"), ("\\log", "log"), ("\\sin", "sin"), ("\\cos", "cos"),
                     ("\\tan", "tan")):
        s = s.replace(old, new)
    s = s.lower()
    if "\\" in s or not _SAFE_EXPR.match(s) or "__" in s:
        return None
    if any(name not in _SAFE_NAMES for name in re.findall(r"[a-z]+", s)):
        return None
    return s


def _sympy_equal(gold: str, pred: str) -> bool | None:
    """Symbolic equality of two simple answers; None when either is outside the parsable subset."""
    import sympy
    from sympy.parsing.sympy_parser import (
        convert_xor,
        implicit_multiplication_application,
        parse_expr,
        standard_transformations,
    )

    g, p = _latex_to_plain(gold), _latex_to_plain(pred)
    if not g or not p:
        return None
    transformations = standard_transformations + (implicit_multiplication_application, convert_xor)
    local = {"e": sympy.E, "i": sympy.I, "ln": sympy.log}
    try:
        gv = parse_expr(g, transformations=transformations, local_dict=local)
        pv = parse_expr(p, transformations=transformations, local_dict=local)
        if isinstance(gv, tuple) or isinstance(pv, tuple):
            return isinstance(gv, tuple) and isinstance(pv, tuple) and len(gv) == len(pv) and all(
                sympy.simplify(a - b) == 0 for a, b in zip(gv, pv))
        return bool(sympy.simplify(gv - pv) == 0)
    except Exception:  # noqa: BLE001 - any parse/simplify failure means "cannot tell"
        return None


def _exact_number(value) -> bool:
    import sympy

    return isinstance(value, sympy.Expr) and value.is_number and not value.has(sympy.Float)


def _wrap(text: str) -> str:
    """``$text$`` unless the text already holds math delimiters (an escaped ``\\$`` is not one)."""
    unescaped = text.replace("\\$", "")
    return text if "$" in unescaped or "\\(" in text or "\\[" in text else f"${text}$"


def equivalent_unbounded(pred: str, gold: str) -> Verdict:
    """Full equivalence test with no time bound (string, then math-verify, then sympy)."""
    quick = quick_verdict(pred, gold)
    if quick is not None:
        return quick
    from math_verify import parse, verify

    try:
        gold_parsed = parse(_wrap(gold), parsing_timeout=None)
        pred_parsed = parse(_wrap(pred), parsing_timeout=None)
    except Exception:  # noqa: BLE001 - math-verify raising is "no parse", not a crash
        gold_parsed = pred_parsed = []
    if gold_parsed and pred_parsed:
        try:
            same = bool(verify(gold_parsed, pred_parsed, timeout_seconds=None))
        except Exception:  # noqa: BLE001
            same = False
        if same and _exact_number(gold_parsed[0]) and _exact_number(pred_parsed[0]):
            # float rounding inside math-verify equates 1/2^99 and 1/2^98: confirm exactly
            try:
                exact = bool((gold_parsed[0] - pred_parsed[0]).equals(0))
            except Exception:  # noqa: BLE001
                exact = False
            return Verdict(exact, "sympy")
        if same:
            return Verdict(True, "math_verify")
    fallback = _sympy_equal(gold, pred)
    if fallback is not None and (fallback or not (gold_parsed and pred_parsed)):
        return Verdict(fallback, "sympy")
    return Verdict(False, "math_verify" if gold_parsed and pred_parsed else "none")


# --- the bounded worker -----------------------------------------------------------------------

class _SoftTimeout(BaseException):
    """Not an Exception, so the broad ``except Exception`` inside math-verify cannot swallow it."""


def _worker_main() -> None:
    """Worker loop over stdin/stdout: (pred, gold, timeout_s) -> ("ok", correct, method) | ("timeout",)."""
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
            pred, gold, timeout_s = reader.recv()
        except (EOFError, OSError):
            return
        try:
            signal.setitimer(signal.ITIMER_REAL, timeout_s)
            verdict = equivalent_unbounded(pred, gold)
            signal.setitimer(signal.ITIMER_REAL, 0)
            reply = ("ok", verdict.correct, verdict.method)
        except _SoftTimeout:
            reply = ("timeout",)
        except MemoryError:
            signal.setitimer(signal.ITIMER_REAL, 0)
            reply = ("timeout",)
        except Exception:  # noqa: BLE001 - a grading bug must not take the worker down
            signal.setitimer(signal.ITIMER_REAL, 0)
            reply = ("ok", False, "none")
        try:
            writer.send(reply)
        except _SoftTimeout:  # the alarm landed between the grading and the reply
            writer.send(reply)


class _Worker:
    """One worker process (a fresh interpreter: no fork of a process that holds a model or threads)."""

    def __init__(self) -> None:
        import subprocess
        import sys
        from multiprocessing.connection import Connection

        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from qa_tasks.math_grader import _worker_main; _worker_main()"],
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
        quick = quick_verdict(pred, gold)
        if quick is not None:
            return quick
        with self._lock:
            worker = self._ensure_worker()
            reply = None
            try:
                worker.writer.send((pred, gold, self.timeout_s))
                if worker.reader.poll(self.timeout_s + _KILL_MARGIN_S):
                    reply = worker.reader.recv()
            except (EOFError, OSError):  # the worker died (e.g. a crash inside sympy)
                reply = None
            if reply is None:  # stuck in C code past the soft alarm, or dead: replace it now
                worker.kill()
                self._worker = _Worker()
            if reply is None or reply[0] == "timeout":
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


# --- one response, all verdicts ---------------------------------------------------------------

@dataclass(frozen=True)
class ResponseGrade:
    format_ok: bool
    failures: tuple[str, ...]
    answer: str | None  # extracted answer (None when unformatted or no answer given)
    correct: bool  # format_ok and the answer is equivalent to the gold
    timed_out: bool
    method: str  # Verdict.method, or "format" when the gate failed


def grade_response(response: str, gold: str, grader: Grader | None = None) -> ResponseGrade:
    """Format gate, answer extraction and equivalence for one raw response (CS336 semantics)."""
    fmt = check_format(response)
    if not fmt.ok:
        return ResponseGrade(False, fmt.failures, None, False, False, "format")
    answer = extract_answer(response)
    verdict = (grader or default_grader()).equivalent(answer, gold)
    return ResponseGrade(True, (), answer, verdict.correct, verdict.timed_out, verdict.method)
