"""What each metric is per document, declared once: the leaderboard picks its tests from this, never from
the values a run happened to produce (an F1 run whose values are all 0 or 1 is still continuous).

- ``binary``: 0/1 per document (accuracy, exact match, a failure flag): Wilson intervals and McNemar's
  test apply when the documents are independent;
- ``continuous``: a score in between (F1, seconds): bootstrap;
- ``count``: tokens, calls, characters: bootstrap.

Metric names of other tasks fall back to ``continuous``, the kind that assumes nothing.
"""

from __future__ import annotations

from typing import Literal

__all__ = ["BINARY", "CONTINUOUS", "COUNT", "Kind", "metric_kind"]

Kind = Literal["binary", "continuous", "count"]
BINARY: Kind = "binary"
CONTINUOUS: Kind = "continuous"
COUNT: Kind = "count"

_KINDS: dict[str, Kind] = {
    # lm-eval's own and the pack's 0/1 metrics
    **dict.fromkeys(("acc", "acc_norm", "exact_match", "em", "em_official", "lenient", "lenient_substring",
                     "accuracy", "format_accuracy", "wrong_answer_rate", "format_failure_rate", "truncated_rate",
                     "invalid_rate", "grader_timeouts", "missing_think_close", "missing_answer_open", "missing_answer_close",
                     "wrong_order", "planner_failures"), BINARY),
    **dict.fromkeys(("f1", "latency_s"), CONTINUOUS),
    **dict.fromkeys(("prompt_tokens", "gen_tokens", "prompt_tokens_api", "gen_tokens_api", "dep_tokens", "calls",
                     "rounds", "n_questions", "n_passages", "n", "response_chars", "response_chars_correct",
                     "response_chars_incorrect"), COUNT),
}
_BINARY_PREFIXES = ("acc_", "pred_")  # acc_<query type>, acc_gold_<letter>, pred_<letter>


def metric_kind(metric: str) -> Kind:
    """The declared kind of ``metric`` (a filter suffix such as ``,strict-match`` is ignored)."""
    name = metric.split(",")[0]
    if name in _KINDS:
        return _KINDS[name]
    return BINARY if name.startswith(_BINARY_PREFIXES) else CONTINUOUS
