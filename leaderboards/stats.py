"""Paired significance tests for base vs adapter on the same documents (pure functions).

0/1 metrics (accuracy, EM) use McNemar's exact test: only the documents the two models disagree on
carry information. Other metrics (F1, token counts) use a paired bootstrap of the mean difference.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from math import comb

__all__ = ["ALPHA", "BOOTSTRAP_ITERS", "PairedTest", "mcnemar_exact", "paired_bootstrap", "paired_test"]

ALPHA = 0.05
BOOTSTRAP_ITERS = 10_000


@dataclass(frozen=True)
class PairedTest:
    method: str  # "mcnemar" | "bootstrap"
    n: int  # paired documents
    delta: float  # mean(b) - mean(a) over the paired documents
    p_value: float

    @property
    def significant(self) -> bool:
        return self.p_value < ALPHA


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value from the discordant counts.

    ``b``: documents right before and wrong after; ``c``: wrong before and right after.
    Under no change each discordant document goes either way with probability 1/2.
    """
    if b < 0 or c < 0:
        raise ValueError("discordant counts must be >= 0")
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(comb(n, i) for i in range(min(b, c) + 1))
    return min(1.0, 2 * tail / 2**n)


def paired_bootstrap(a: Sequence[float], b: Sequence[float], iters: int = BOOTSTRAP_ITERS, seed: int = 0,
                     weights: Sequence[float] | None = None) -> float:
    """Two-sided p-value that the (weighted) mean of b - a is 0: resample documents, centre the
    resampled means on the null, count how often they land at least as far from 0 as observed.

    ``weights`` (e.g. questions per SQuAD passage) make the mean the micro-average the task reports.
    Seeded, so the same inputs always give the same p."""
    import numpy as np

    if len(a) != len(b) or (weights is not None and len(weights) != len(a)):
        raise ValueError(f"paired samples differ in length: {len(a)} vs {len(b)}")
    diffs = np.asarray(b, dtype=float) - np.asarray(a, dtype=float)
    w = np.ones_like(diffs) if weights is None else np.asarray(weights, dtype=float)
    n = len(diffs)
    if n == 0:
        return 1.0
    observed = float((w * diffs).sum() / w.sum())
    if abs(observed) < 1e-12:
        return 1.0
    rng = np.random.default_rng(seed)
    extreme = 0
    chunk = max(1, min(iters, 2_000_000 // n))  # bounded memory for long sample logs
    done = 0
    while done < iters:
        k = min(chunk, iters - done)
        idx = rng.integers(0, n, size=(k, n))
        means = (w[idx] * diffs[idx]).sum(axis=1) / w[idx].sum(axis=1)
        extreme += int(np.count_nonzero(np.abs(means - observed) >= abs(observed) - 1e-12))
        done += k
    return (extreme + 1) / (iters + 1)


def _is_binary(values: Sequence[float]) -> bool:
    return all(v in (0.0, 1.0) for v in values)


def paired_test(a: Sequence[float], b: Sequence[float], weights: Sequence[float] | None = None) -> PairedTest:
    """McNemar for unweighted 0/1 values on both sides, (weighted) paired bootstrap otherwise."""
    if len(a) != len(b):
        raise ValueError(f"paired samples differ in length: {len(a)} vs {len(b)}")
    n = len(a)
    unweighted = weights is None or all(x == 1 for x in weights)
    if unweighted:
        delta = (sum(b) - sum(a)) / n if n else 0.0
    else:
        delta = sum(w * (y - x) for x, y, w in zip(a, b, weights)) / sum(weights)
    if unweighted and _is_binary(a) and _is_binary(b):
        worse = sum(1 for x, y in zip(a, b) if x == 1.0 and y == 0.0)
        better = sum(1 for x, y in zip(a, b) if x == 0.0 and y == 1.0)
        return PairedTest("mcnemar", n, delta, mcnemar_exact(worse, better))
    return PairedTest("bootstrap", n, delta, paired_bootstrap(a, b, weights=None if unweighted else weights))
