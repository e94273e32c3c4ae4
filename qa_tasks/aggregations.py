"""lm-eval aggregation functions the task families share (the YAMLs name them through their utils.py)."""

from __future__ import annotations

__all__ = ["count"]


def count(items) -> int:
    """How many documents stand behind a rate (or how many timed out): a sum, not a mean."""
    return int(sum(items))
