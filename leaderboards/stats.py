"""The statistics behind every number and comparison of a leaderboard (pure functions over per-document values).

Which test runs follows from the metric's declared kind (``kinds``) and from how the documents cluster,
never from the values observed:

- one score: Wilson interval for a 0/1 mean of independent documents, else a cluster bootstrap (resampling
  passages, or documents when they are independent); its standard error is cluster-robust (statsmodels'
  sandwich estimator), with the design effect against the naive per-document error;
- two runs on the same documents: McNemar's exact test for a 0/1 metric on independent documents, else a
  paired cluster bootstrap of the mean difference; the smallest difference the comparison could detect
  (80% power, α = 0.05) comes from the observed paired variance and the number of clusters;
- a table of tests: Holm or Benjamini-Hochberg adjusted p-values (statsmodels ``multipletests``).

Every resampling is seeded, so the same inputs give the same numbers.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from leaderboards.kinds import BINARY, Kind

__all__ = ["ALPHA", "BOOTSTRAP_ITERS", "CORRECTIONS", "CORRECTION_NAMES", "POWER", "SEED", "Estimate", "PairedTest", "adjust",
           "cluster_sums", "cluster_t_test", "detectable_difference", "estimate", "mcnemar_exact", "paired_test",
           "rank_intervals"]

ALPHA = 0.05
POWER = 0.8
BOOTSTRAP_ITERS = 9_999
SEED = 0
# --correction name -> statsmodels multipletests method
CORRECTIONS = {"holm": "holm", "bh": "fdr_bh", "none": None}
CORRECTION_NAMES = {"holm": "Holm", "bh": "Benjamini–Hochberg", "none": "no correction"}


@dataclass(frozen=True)
class Estimate:
    """One score with its uncertainty: ``value`` over ``n`` documents in ``clusters`` clusters (None: the
    documents are independent), a 95% interval and the standard error."""

    value: float
    n: int
    se: float | None
    ci: tuple[float, float] | None
    ci_method: str  # "wilson" | "cluster bootstrap" | "bootstrap"
    clusters: int | None = None
    design_effect: float | None = None  # var(clustered) / var(as if independent)
    problem: str | None = None  # why there is no interval (e.g. one passage)


@dataclass(frozen=True)
class PairedTest:
    """B − A on the documents both runs scored; ``p_value`` is the raw p, before any correction."""

    method: str  # "mcnemar" | "bootstrap" | "cluster bootstrap" | "" (no test: see ``problem``)
    n: int
    delta: float | None
    p_value: float | None
    ci: tuple[float, float] | None = None
    se: float | None = None  # cluster-robust standard error of delta
    detectable: float | None = None  # minimum detectable |delta| at 80% power, alpha 0.05
    clusters: int | None = None
    problem: str | None = None


def _array(x) -> np.ndarray:
    return np.asarray(x, dtype=float)


def cluster_sums(values, weights=None, clusters=None) -> tuple[np.ndarray, np.ndarray]:
    """Per-cluster (Σ weight·value, Σ weight), clusters in first-seen order; no clusters: one per document."""
    v = _array(values)
    w = np.ones_like(v) if weights is None else _array(weights)
    if clusters is None:
        return v * w, w
    _, first, inverse = np.unique(np.asarray(clusters, dtype=object).astype(str), return_index=True,
                                  return_inverse=True)
    order = np.argsort(np.argsort(first))  # relabel clusters by first appearance: stable across runs
    ids = order[inverse]
    g = len(first)
    return np.bincount(ids, v * w, g), np.bincount(ids, w, g)


def _ratio(s, w, axis=-1):
    return s.sum(axis=axis) / w.sum(axis=axis)


def _bootstrap(s: np.ndarray, w: np.ndarray, iters: int = BOOTSTRAP_ITERS):
    """scipy's bootstrap of Σs/Σw resampling clusters (s, w paired), seeded; percentile interval."""
    from scipy import stats

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # degenerate (constant) data: a zero-width interval
        return stats.bootstrap((s, w), _ratio, paired=True, vectorized=True, n_resamples=iters,
                               confidence_level=1 - ALPHA, method="percentile", batch=max(1, 4_000_000 // len(s)),
                               rng=np.random.default_rng(SEED))


def cluster_t_test(values, weights=None, clusters=None) -> tuple[float, float | None, float | None]:
    """(weighted mean, cluster-robust standard error, two-sided p that the mean is 0).

    statsmodels' sandwich estimator (WLS on a constant, ``cov_type="cluster"``, small-sample corrected, t with
    G − 1 degrees of freedom). No clusters given: each document is its own cluster. None where it is not
    defined (one cluster, or no variation)."""
    import statsmodels.api as sm

    v = _array(values)
    w = np.ones_like(v) if weights is None else _array(weights)
    mean = float((w * v).sum() / w.sum())
    groups = np.arange(len(v)) if clusters is None else np.unique(np.asarray(clusters, dtype=object).astype(str),
                                                                  return_inverse=True)[1]
    if len(np.unique(groups)) < 2:
        return mean, None, None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        fit = sm.WLS(v, np.ones_like(v), weights=w).fit(cov_type="cluster", cov_kwds={"groups": groups},
                                                         use_t=True)
    se = float(fit.bse[0])
    if not np.isfinite(se) or se <= 1e-15:
        return mean, 0.0, None
    return mean, se, float(fit.pvalues[0])


def _naive_se(values, weights=None) -> float | None:
    """The per-document standard error, as if every document were independent (lm-eval's stderr for a mean)."""
    import statsmodels.api as sm

    v = _array(values)
    if len(v) < 2:
        return None
    w = np.ones_like(v) if weights is None else _array(weights)
    return float(sm.WLS(v, np.ones_like(v), weights=w).fit().bse[0])


@functools.lru_cache(maxsize=256)
def _effect_size(nobs: int) -> float:
    from statsmodels.stats.power import TTestPower

    return float(TTestPower().solve_power(effect_size=None, nobs=nobs, alpha=ALPHA, power=POWER,
                                          alternative="two-sided"))


def detectable_difference(se: float | None, clusters: int) -> float | None:
    """Smallest |Δ| detected with 80% power at α = 0.05 (two-sided one-sample t over ``clusters`` units)
    when the paired differences have standard error ``se``: the standardized effect from statsmodels'
    ``TTestPower`` times the per-cluster standard deviation se·√G. None without a usable se."""
    if se is None or se <= 0 or clusters < 2:
        return None
    return _effect_size(int(clusters)) * se * float(np.sqrt(clusters))


def _independent(weights, clusters) -> bool:
    one_each = clusters is None or len(set(clusters)) == len(clusters)
    return one_each and (weights is None or all(x == 1 for x in weights))


def estimate(values: Sequence[float], kind: Kind, weights=None, clusters=None, unit: str = "clusters") -> Estimate:
    """A score's 95% interval and standard error from its per-document values (``weights``: questions per
    passage for a micro-average; ``clusters``: the passage of each document)."""
    n = len(values)
    if n == 0:
        return Estimate(float("nan"), 0, None, None, "", problem="no documents")
    s, w = cluster_sums(values, weights, clusters)
    value = float(s.sum() / w.sum())
    g = len(s)
    if _independent(weights, clusters) and kind == BINARY:
        from statsmodels.stats.proportion import proportion_confint

        lo, hi = proportion_confint(round(value * n), n, alpha=ALPHA, method="wilson")
        return Estimate(value, n, _naive_se(values), (float(lo), float(hi)), "wilson")
    grouped = clusters is not None and g < n
    if g < 2:
        return Estimate(value, n, None, None, "", clusters=g if grouped else None,
                        problem=f"1 {unit.rstrip('s')}: no interval")
    _, se, _ = cluster_t_test(values, weights, clusters)
    naive = _naive_se(values, weights)
    deff = (se / naive) ** 2 if grouped and se is not None and naive else None
    res = _bootstrap(s, w)
    ci = (float(res.confidence_interval.low), float(res.confidence_interval.high))
    return Estimate(value, n, se, ci, "cluster bootstrap" if grouped else "bootstrap",
                    clusters=g if grouped else None, design_effect=deff)


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p from the discordant counts (statsmodels): ``b`` right before and wrong
    after, ``c`` wrong before and right after."""
    from statsmodels.stats.contingency_tables import mcnemar

    if b < 0 or c < 0:
        raise ValueError("discordant counts must be >= 0")
    return float(mcnemar([[0, b], [c, 0]], exact=True).pvalue)


def paired_test(a: Sequence[float], b: Sequence[float], kind: Kind, weights=None, clusters=None,
                unit: str = "clusters") -> PairedTest:
    """Compare two runs on the same documents (``a``, ``b`` aligned; ``weights`` and ``clusters`` as in
    ``estimate``). A problem (no documents, one cluster) comes back in ``problem``, never as NaN."""
    if len(a) != len(b) or (weights is not None and len(weights) != len(a)):
        raise ValueError(f"paired samples differ in length: {len(a)} vs {len(b)}")
    n = len(a)
    if n == 0:
        return PairedTest("", 0, None, None, problem="no common documents")
    d = _array(b) - _array(a)
    s, w = cluster_sums(d, weights, clusters)
    g = len(s)
    delta = float(s.sum() / w.sum())
    grouped = clusters is not None and g < n
    if g < 2:
        what = f"1 {unit.rstrip('s')}" if grouped else "1 document"
        return PairedTest("", n, delta, None, clusters=g if grouped else None, problem=f"{what}: no test")
    _, se, _ = cluster_t_test(d, weights, clusters)
    detectable = detectable_difference(se, g)
    if not d.any():  # the runs agree on every document: nothing to resample
        ci, p = (0.0, 0.0), 1.0
    else:
        res = _bootstrap(s, w)
        ci = (float(res.confidence_interval.low), float(res.confidence_interval.high))
        extreme = np.count_nonzero(np.abs(res.bootstrap_distribution - delta) >= abs(delta) - 1e-12)
        p = float((extreme + 1) / (BOOTSTRAP_ITERS + 1))
    if _independent(weights, clusters) and kind == BINARY:
        av, bv = _array(a), _array(b)
        p = mcnemar_exact(int(((av == 1) & (bv == 0)).sum()), int(((av == 0) & (bv == 1)).sum()))
        return PairedTest("mcnemar", n, delta, p, ci, se, detectable)
    method = "cluster bootstrap" if grouped else "bootstrap"
    return PairedTest(method, n, delta, p, ci, se, detectable, clusters=g if grouped else None)


def adjust(p_values: Sequence[float | None], correction: str) -> list[float | None]:
    """Adjusted p-values (``correction``: holm | bh | none) over the tests that ran; None stays None."""
    from statsmodels.stats.multitest import multipletests

    method = CORRECTIONS[correction]
    ran = [i for i, p in enumerate(p_values) if p is not None]
    out: list[float | None] = list(p_values)
    if method is None or len(ran) < 2:
        return out
    adjusted = multipletests([p_values[i] for i in ran], alpha=ALPHA, method=method)[1]
    for i, p in zip(ran, adjusted):
        out[i] = float(p)
    return out


def rank_intervals(values: Sequence[float], separated: set[tuple[int, int]]) -> list[tuple[int, int]]:
    """Rank range per entry (1 = best, higher value better): ``(i, j)`` in ``separated`` means a corrected
    test found i better than j. i's best rank is 1 + the entries found better than i, its worst the count
    of entries not found worse than i, so entries no test separates share ranks."""
    k = len(values)
    return [(1 + sum((j, i) in separated for j in range(k)), k - sum((i, j) in separated for j in range(k)))
            for i in range(k)]
