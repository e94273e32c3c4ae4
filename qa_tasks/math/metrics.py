"""Math metrics: per response, then summarised the way lm-eval aggregates them."""

from __future__ import annotations

from collections.abc import Iterable

from qa_tasks.math.grader import (
    FAILURE_KINDS,
    Grader,
    ResponseGrade,
    grade_response,
)
from qa_tasks.rollout.budget import TRUNCATED_METRIC

__all__ = ["COUNT_METRICS", "METRICS", "TRUNCATED_METRIC", "doc_metrics", "score_response", "summarize"]

METRICS = ("accuracy", "format_accuracy", "wrong_answer_rate", "format_failure_rate", *FAILURE_KINDS,
           TRUNCATED_METRIC, "response_chars", "response_chars_correct", "response_chars_incorrect", "grader_timeouts", "n")
COUNT_METRICS = ("grader_timeouts", "n")  # summed; every other metric is a mean over the docs that carry it


# --- metrics: per response, then summarised the way lm-eval aggregates them ----------------------

def doc_metrics(grade: ResponseGrade, response: str, truncated: bool | None = None) -> dict[str, float]:
    """Per-response metric values (keys of ``METRICS``; the length of the class it is not in is omitted).

    accuracy + wrong_answer_rate + format_failure_rate = 1 for every response, hence for every mean.
    ``truncated``: whether the response stopped because it hit ``max_gen_toks``, as the rollout layer measured
    it (``qa_tasks.rollout.budget``); None (not measured) leaves ``truncated_rate`` out, never 0.
    """
    correct = float(grade.correct)
    out = {
        "accuracy": correct,
        "format_accuracy": float(grade.format_ok),
        "wrong_answer_rate": float(grade.format_ok and not grade.correct),
        "format_failure_rate": float(not grade.format_ok),
        **{kind: float(kind in grade.failures) for kind in FAILURE_KINDS},
        "response_chars": float(len(response)),
        "grader_timeouts": float(grade.timed_out),
        "n": 1.0,
    }
    if truncated is not None:
        out[TRUNCATED_METRIC] = float(truncated)
    out["response_chars_correct" if grade.correct else "response_chars_incorrect"] = float(len(response))
    return out


def score_response(response: str, gold: str, grader: Grader | None = None,
                   truncated: bool | None = None) -> dict[str, float]:
    """Grade one raw response against its gold answer and return its metric values (``truncated``: see
    ``doc_metrics``)."""
    return doc_metrics(grade_response(response, gold, grader), response, truncated)


def summarize(rows: Iterable[dict[str, float]]) -> dict[str, float]:
    """Aggregate per-response metrics as the lm-eval tasks do (means; counts summed)."""
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    for row in rows:
        for key, value in row.items():
            sums[key] = sums.get(key, 0.0) + value
            counts[key] = counts.get(key, 0) + 1
    return {key: (sums[key] if key in COUNT_METRICS else sums[key] / counts[key]) for key in METRICS if key in sums}


