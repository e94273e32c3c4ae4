"""The format gate and answer extraction of ``<think> … </think> <answer> … </answer>`` responses.

Everything here is a pure, linear-time string function, cheap enough to run in the caller: deciding
whether a response follows the format never needs the bounded grading worker.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "ANSWER_CLOSE",
    "ANSWER_OPEN",
    "FAILURE_KINDS",
    "GATE",
    "THINK_CLOSE",
    "FormatCheck",
    "answer_span",
    "check_format",
    "extract_answer",
    "gold_from_gsm8k",
    "gold_from_math",
    "last_boxed",
]

GATE = "</think> <answer>"
THINK_CLOSE = "</think>"
ANSWER_OPEN = "<answer>"
ANSWER_CLOSE = "</answer>"
FAILURE_KINDS = ("missing_think_close", "missing_answer_open", "missing_answer_close", "wrong_order")


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
