"""Grading of ``<think> … </think> <answer> … </answer>`` responses: the public entry point.

Three separate questions, answered in this order, each in its own module:

1. **Format gate** (``math_format.check_format``), CS336 ``r1_zero_reward_fn`` semantics exactly: a
   response is format-correct iff it contains the literal ``"</think> <answer>"`` (one space) and
   ``"</answer>"``. A failing response gets every failure kind that applies.
2. **Answer extraction** (``math_format.extract_answer``): the span after the first
   ``"</think> <answer>"`` up to the first ``</answer>`` that closes it; the content of the last
   ``\\boxed{}`` inside the span if there is one.
3. **Equivalence**, in the bounded worker (``math_worker.Grader``): normalisation and exact number
   checks (``math_normalize``), then math-verify on the ``$…$``-wrapped answers (gold first), then
   sympy (``math_equivalence``). A timeout counts as wrong and is reported in ``timed_out``.

Where the pack departs from CS336's ``r1_zero_reward_fn`` (each one a case in
``tests/test_math_grader.py::CS336_DEPARTURES``):

- **Which answer block counts.** CS336 takes everything after the *last* ``<answer>`` with every
  ``</answer>`` deleted; the pack takes the block after the *first* ``"</think> <answer>"``, up to
  its ``</answer>`` (an ``<answer>`` re-opened inside it restarts it). Text a model writes after its
  answer (a second question and answer) does not count.
- **Whitespace between digits.** CS336 turns ``2 3`` into ``2+3`` (= 5) and math-verify reads it as
  5 too; the pack never equates two numbers side by side with anything (``2 3`` is not 23, 5 or 6).
  Only a mixed number ``3 1/4`` reads as CS336 reads it, 13/4; ``-3 1/4`` is -13/4 (CS336: -11/4).
- **Malformed LaTeX.** An answer whose braces do not pair up (``5\\text{ cm\\text{ cm``) is wrong;
  math-verify would read the leading 5.
- **Units.** At most two trailing unit words are dropped, each unit once (``5 square feet``); an answer
  ending in more (``5\\text{ cm}\\text{ cm}``, ``5 dollars dollars``) is wrong (``units``), where
  math-verify would drop the ``\\text{}`` and read 5.
- **Scientific notation.** ``1.5e3``, ``1.5E+3``, ``1.5 \\cdot 10^3`` are 1500, compared exactly
  (math-verify reads ``1.5e3`` as 1.5 · e · 3, and its tolerance equates ``1.5000001e-3`` and 0.0015);
  ``2e-1`` stays 2e - 1.
- **Unicode.** Vulgar fractions (``½``, ``3¾``), ``√``, ``−``, ``π``, ``×``, superscripts (``10³``) read
  as their LaTeX; zero-width characters are dropped.
- **Percent.** ``50\\%`` matches both 50 and 1/2.
- **Equivalence engine.** math-verify (with sympy behind it) instead of CS336's mathd/sympy
  ``grade``; two different exact numbers are never equal (math-verify's float rounding equates
  ``1/2^99`` and ``1/2^98``), and numbers in a base (``52_8``) compare digits and base.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from qa_tasks.math.format import (
    ANSWER_CLOSE,
    ANSWER_OPEN,
    FAILURE_KINDS,
    GATE,
    THINK_CLOSE,
    FormatCheck,
    answer_span,
    check_format,
    extract_answer,
    gold_from_gsm8k,
    gold_from_math,
    last_boxed,
)
from qa_tasks.math.normalize import Verdict, normalize_answer, quick_verdict
from qa_tasks.math.worker import DEFAULT_TIMEOUT_S, TIMEOUT_ENV, Grader, default_grader, timeout_from_env

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
    "grade_responses",
    "last_boxed",
    "normalize_answer",
    "quick_verdict",
    "timeout_from_env",
]


def equivalent_unbounded(pred: str, gold: str) -> Verdict:
    """Full equivalence test with no time bound; in-process, so only for trusted answers."""
    from qa_tasks.math.equivalence import equivalent_unbounded as unbounded

    return unbounded(pred, gold)


@dataclass(frozen=True)
class ResponseGrade:
    format_ok: bool
    failures: tuple[str, ...]
    answer: str | None  # extracted answer (None when unformatted or no answer given)
    correct: bool  # format_ok and the answer is equivalent to the gold
    timed_out: bool
    method: str  # Verdict.method, or "format" when the gate failed


def grade_responses(items: Sequence[tuple[str, str]], grader: Grader | None = None) -> list[ResponseGrade]:
    """Format gate, answer extraction and equivalence for many (response, gold) pairs, one worker
    round trip for all of them (each item keeps its own time bound)."""
    checks = [check_format(response) for response, _ in items]
    answers = [extract_answer(response) if fmt.ok else None for fmt, (response, _) in zip(checks, items)]
    formatted = [i for i, fmt in enumerate(checks) if fmt.ok]
    verdicts = (grader or default_grader()).equivalent_many([(answers[i], items[i][1]) for i in formatted])
    by_item = dict(zip(formatted, verdicts))
    grades = []
    for i, fmt in enumerate(checks):
        if not fmt.ok:
            grades.append(ResponseGrade(False, fmt.failures, None, False, False, "format"))
        else:
            v = by_item[i]
            grades.append(ResponseGrade(True, (), answers[i], v.correct, v.timed_out, v.method))
    return grades


def grade_response(response: str, gold: str, grader: Grader | None = None) -> ResponseGrade:
    """Format gate, answer extraction and equivalence for one raw response (CS336 semantics)."""
    fmt = check_format(response)
    if not fmt.ok:  # no worker round trip for an unformatted response
        return ResponseGrade(False, fmt.failures, None, False, False, "format")
    return grade_responses([(response, gold)], grader)[0]
