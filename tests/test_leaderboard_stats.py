"""The leaderboards' statistics: fixed cases against textbook formulas and statsmodels / scipy, the test each
metric kind gets, bad input, and seeded simulations of the error rates under the null (clustered data, a
table of 20 comparisons)."""

from __future__ import annotations

import functools
import gc
import math

import numpy as np
import pytest
from scipy import stats as sps
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import proportion_confint

from leaderboards.kinds import metric_kind
from leaderboards.stats import (
    ALPHA,
    BOOTSTRAP_ITERS,
    SEED,
    adjust,
    cluster_sums,
    cluster_t_test,
    detectable_difference,
    estimate,
    mcnemar_exact,
    paired_test,
    rank_intervals,
)

# --- fixed cases ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("b", "c", "p"), [
    (0, 0, 1.0),  # no discordant documents: no evidence
    (5, 5, 1.0),
    (0, 1, 1.0),  # one document changed: nothing
    (1, 6, 2 * (1 + 7) / 2**7),  # textbook exact binomial: 0.125
    (10, 0, 2 / 2**10),
    (3, 12, 2 * (1 + 15 + 105 + 455) / 2**15),  # 0.0352: significant
    (12, 3, 2 * (1 + 15 + 105 + 455) / 2**15),  # symmetric
])
def test_mcnemar_exact_is_the_binomial_tail(b, c, p):
    assert mcnemar_exact(b, c) == pytest.approx(p, abs=1e-12)


@pytest.mark.parametrize(("values", "n_right"), [([1, 0, 1, 1, 0, 1, 1, 1, 0, 1], 7), ([0] * 20, 0), ([1] * 3, 3)])
def test_wilson_interval_for_independent_0_1_documents(values, n_right):
    found = estimate(values, "binary")
    lo, hi = proportion_confint(n_right, len(values), alpha=0.05, method="wilson")
    assert found.ci_method == "wilson" and found.ci == pytest.approx((lo, hi), abs=1e-9)
    if len(set(values)) > 1:  # lm-eval's stderr of a mean: sample standard deviation / sqrt(n)
        assert found.se == pytest.approx(np.std(values, ddof=1) / math.sqrt(len(values)), abs=1e-9)


def _cr1(values, groups) -> float:
    """Textbook cluster-robust (CR1) standard error of a mean: G/(G-1) * (N-1)/(N-1) * Σ_g (Σ_i e_i)² / N²."""
    v, g = np.asarray(values, float), np.asarray(groups)
    e = v - v.mean()
    sums = np.array([e[g == k].sum() for k in np.unique(g)])
    n, k = len(v), len(sums)
    return math.sqrt(k / (k - 1) * (sums**2).sum() / n**2)


CLUSTERED = ([1, 1, 1, 0, 0, 0, 1, 0, 1, 1, 0, 1], [0, 0, 0, 1, 1, 1, 2, 2, 3, 3, 3, 4])


def test_cluster_robust_error_is_the_sandwich():
    values, groups = CLUSTERED
    mean, se, p = cluster_t_test(values, clusters=groups)
    assert mean == pytest.approx(np.mean(values)) and se == pytest.approx(_cr1(values, groups), abs=1e-9)
    t = mean / se
    assert p == pytest.approx(2 * sps.t.sf(abs(t), df=len(set(groups)) - 1), abs=1e-9)  # t with G - 1 df


def test_clustered_score_uses_scipy_cluster_bootstrap_and_names_the_design_effect():
    values, groups = CLUSTERED
    found = estimate(values, "binary", clusters=groups, unit="passages")
    assert found.ci_method == "cluster bootstrap" and found.clusters == 5
    s, w = cluster_sums(values, None, groups)
    direct = sps.bootstrap((s, w), lambda a, b, axis=-1: a.sum(axis) / b.sum(axis), paired=True, vectorized=True,
                           n_resamples=BOOTSTRAP_ITERS, method="percentile", rng=np.random.default_rng(SEED))
    assert found.ci == pytest.approx((direct.confidence_interval.low, direct.confidence_interval.high), abs=1e-12)
    naive = np.std(values, ddof=1) / math.sqrt(len(values))
    assert found.design_effect == pytest.approx((_cr1(values, groups) / naive) ** 2, abs=1e-9)
    assert found == estimate(values, "binary", clusters=groups, unit="passages")  # seeded


@pytest.mark.parametrize(("p", "correction"), [
    ([0.01, 0.04, 0.03, 0.5], "holm"), ([0.01, 0.04, 0.03, 0.5], "bh"), ([0.001] * 3 + [0.2] * 5, "holm"),
])
def test_adjusted_p_values_are_statsmodels(p, correction):
    method = {"holm": "holm", "bh": "fdr_bh"}[correction]
    assert adjust(p, correction) == pytest.approx(list(multipletests(p, method=method)[1]), abs=1e-12)


@pytest.mark.parametrize(("p", "correction", "expected"), [
    ([0.01, 0.04, 0.03], "holm", [0.03, 0.06, 0.06]),  # textbook: 3p, 2p, p, made monotone
    ([0.01, 0.04, 0.03], "bh", [0.03, 0.04, 0.04]),
    ([0.01, None, 0.03], "holm", [0.02, None, 0.03]),  # a comparison without a test is not counted
    ([0.01, 0.04], "none", [0.01, 0.04]),
    ([0.04], "holm", [0.04]),
])
def test_adjust_known_values(p, correction, expected):
    assert adjust(p, correction) == pytest.approx(expected)


def test_detectable_difference_is_the_textbook_power_formula():
    # many clusters: the t test's detectable difference approaches (z_0.975 + z_0.8) * se
    se = 0.02
    assert detectable_difference(se, 5000) == pytest.approx((sps.norm.ppf(0.975) + sps.norm.ppf(0.8)) * se, rel=1e-3)
    assert detectable_difference(se, 10) > detectable_difference(se, 5000)  # t with few clusters costs power
    assert detectable_difference(0.0, 10) is None and detectable_difference(se, 1) is None


@pytest.mark.parametrize(("metric", "kind"), [
    ("acc", "binary"), ("acc_norm", "binary"), ("em", "binary"), ("exact_match,strict-match", "binary"),
    ("acc_Specific", "binary"), ("acc_gold_C", "binary"), ("f1", "continuous"), ("prompt_tokens", "count"),
    ("my_new_metric", "continuous"),  # unknown: the kind that assumes nothing
])
def test_metric_kinds(metric, kind):
    assert metric_kind(metric) == kind


@pytest.mark.parametrize(("name", "a", "b", "kind", "weights", "clusters", "method"), [
    ("0/1, independent", [1, 0, 1, 0], [1, 1, 1, 0], "binary", None, None, "mcnemar"),
    # the old rule picked McNemar from the values; F1 is continuous whatever a run's values are
    ("F1 that happens to be 0/1", [1, 0, 1, 0], [1, 1, 1, 0], "continuous", None, None, "bootstrap"),
    ("0/1 sharing passages", [1, 0, 1, 0], [1, 1, 1, 0], "binary", None, ["p", "p", "q", "q"], "cluster bootstrap"),
    ("passages weighted by questions", [0.0, 1.0], [1.0, 1.0], "binary", [1, 3], None, "bootstrap"),
])
def test_paired_test_follows_the_declared_kind(name, a, b, kind, weights, clusters, method):
    found = paired_test(a, b, kind, weights, clusters)
    assert found.method == method, name
    total = sum(weights) if weights else len(a)
    assert found.delta == pytest.approx(sum((y - x) * (weights[i] if weights else 1)
                                            for i, (x, y) in enumerate(zip(a, b))) / total)


def test_paired_mcnemar_matches_the_discordant_counts():
    a = [1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 1, 1]
    b = [1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]
    found = paired_test(a, b, "binary")
    assert found.p_value == pytest.approx(mcnemar_exact(1, 7), abs=1e-12)
    assert found.detectable is not None and found.detectable > 0


@pytest.mark.parametrize(("a", "b", "clusters", "problem"), [
    ([], [], None, "no common documents"),
    ([1, 0, 1], [1, 1, 1], ["p", "p", "p"], "1 passage: no test"),
    ([1.0], [0.5], None, "1 document: no test"),
])
def test_bad_input_says_so_without_nan(a, b, clusters, problem):
    found = paired_test(a, b, "continuous", None, clusters, "passages")
    assert found.problem == problem and found.p_value is None
    assert all(x is None or not math.isnan(x) for x in (found.delta, found.se, found.detectable))


def test_one_passage_has_no_interval():
    found = estimate([1, 0, 1], "binary", clusters=["p"] * 3, unit="passages")
    assert found.ci is None and found.problem == "1 passage: no interval"


@pytest.mark.parametrize(("values", "separated", "expected"), [
    ([0.5, 0.4, 0.1], set(), [(1, 3)] * 3),  # nothing separated: all tied
    ([0.5, 0.4, 0.1], {(0, 2), (1, 2)}, [(1, 2), (1, 2), (3, 3)]),
    ([0.5, 0.4, 0.1], {(0, 2)}, [(1, 2), (1, 3), (2, 3)]),
    ([0.5, 0.4, 0.1], {(0, 1), (0, 2), (1, 2)}, [(1, 1), (2, 2), (3, 3)]),
])
def test_rank_intervals(values, separated, expected):
    assert rank_intervals(values, separated) == expected


# --- simulations under the null -------------------------------------------------------------------

SIMS = 1000
PASSAGES, PER_PASSAGE, ICC = 200, 5, 0.3


def _clustered_null(rng: np.random.Generator, sims: int) -> tuple[np.ndarray, np.ndarray]:
    """Two models with the same accuracy overall, each doing better on some passages than on others:
    per passage a success probability drawn from Beta(α, α) (mean 0.5, intra-passage correlation
    1 / (2α + 1) = ICC), independently per model; questions Bernoulli given their passage."""
    alpha = (1 / ICC - 1) / 2
    shape = (sims, PASSAGES)
    pa, pb = rng.beta(alpha, alpha, shape), rng.beta(alpha, alpha, shape)
    a = rng.random((*shape, PER_PASSAGE)) < pa[..., None]
    b = rng.random((*shape, PER_PASSAGE)) < pb[..., None]
    return a.reshape(sims, -1).astype(float), b.reshape(sims, -1).astype(float)


@functools.cache
def _mcnemar(b: int, c: int) -> float:
    return mcnemar_exact(b, c)


def test_clustered_test_holds_its_level_where_the_naive_one_does_not():
    a, b = _clustered_null(np.random.default_rng(20240611), SIMS)
    groups = np.repeat(np.arange(PASSAGES), PER_PASSAGE)
    worse = ((a == 1) & (b == 0)).sum(axis=1)
    better = ((a == 0) & (b == 1)).sum(axis=1)
    naive = np.mean([_mcnemar(int(x), int(y)) < ALPHA for x, y in zip(worse, better)])
    clustered = np.mean([cluster_t_test(y - x, clusters=groups)[2] < ALPHA for x, y in zip(a, b)])
    print(f"rejection under the null: naive per-question McNemar {naive:.3f}, clustered {clustered:.3f}")
    assert naive > 0.12  # questions of one passage are not independent: far too many false alarms
    assert clustered <= 0.06


def test_holm_keeps_the_family_wise_error_of_a_table(monkeypatch):
    # statsmodels' Holm ends with a full gc.collect() (memory housekeeping for huge arrays, no effect on the
    # result): 25 ms a call in a process this size, so 1000 tables would take half a minute
    monkeypatch.setattr(gc, "collect", lambda *args: 0)
    rng = np.random.default_rng(7)
    docs, tests = 100, 20
    a = rng.random((SIMS, tests, docs)) < 0.5
    b = rng.random((SIMS, tests, docs)) < 0.5
    worse, better = (a & ~b).sum(axis=2), (~a & b).sum(axis=2)
    p = np.vectorize(lambda x, y: _mcnemar(int(x), int(y)))(worse, better)
    raw = np.mean((p < ALPHA).any(axis=1))
    holm = np.mean([min(adjust(list(row), "holm")) < ALPHA for row in p])
    print(f"family-wise error over {tests} null comparisons: uncorrected {raw:.3f}, Holm {holm:.3f}")
    assert raw > 0.3
    assert holm <= 0.06


@pytest.mark.slow
def test_cluster_bootstrap_holds_its_level():
    """The reported p (paired cluster bootstrap) under the same clustered null; fewer simulations, as each
    one resamples 9,999 times."""
    sims = 400
    a, b = _clustered_null(np.random.default_rng(99), sims)
    groups = list(np.repeat(np.arange(PASSAGES), PER_PASSAGE))
    rate = np.mean([paired_test(x, y, "binary", clusters=groups).p_value < ALPHA for x, y in zip(a, b)])
    print(f"cluster bootstrap rejection under the null: {rate:.3f}")
    assert rate <= 0.075  # 5% plus two standard errors of 400 simulations


def test_error_bars_are_never_negative_at_the_bounds():
    """Wilson's interval at 20/20 ends at 1 - 1e-16, just below the value: matplotlib refuses a negative yerr."""
    from statsmodels.stats.proportion import proportion_confint

    from leaderboards.plots import error_bars

    bounds = [proportion_confint(c, 20, method="wilson") for c in (0, 7, 20)]
    below, above = error_bars([0.0, 0.35, 1.0], [lo for lo, _ in bounds], [hi for _, hi in bounds])
    assert min(below + above) >= 0.0 and above[2] == 0.0 and below[0] == 0.0
    assert below[1] == pytest.approx(0.35 - bounds[1][0]) and above[1] == pytest.approx(bounds[1][1] - 0.35)
