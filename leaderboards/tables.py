"""Leaderboard tables from read lm-eval runs (see ``reader``); every table is sorted, so the same
inputs give the same tables.

Here: the cell and table types, model grouping, and the per-document values behind a score or a paired
comparison. ``overview`` holds the overview (scores with intervals and ranks), ``comparisons`` the paired
tables (base vs adapter, training progression), ``family_tables`` the per-family detail tables. A table
whose side-by-side numbers come from different documents carries a ``Caution`` (``checks``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from leaderboards.checks import LETTERS, Caution
from leaderboards.kinds import metric_kind
from leaderboards.reader import Collection, Run, TaskResult
from leaderboards.stats import Estimate, PairedTest, estimate
from qa_tasks.family import Family, family_named, family_of_yaml
from qa_tasks.harness.task_index import family_of
from qa_tasks.recipe_mpr import QUERY_TYPES

__all__ = [
    "LETTERS",
    "QUERY_TYPES",
    "Caution",
    "Model",
    "Paired",
    "Stat",
    "Table",
    "TestCell",
    "family",
    "group_models",
    "main_metric",
    "metrics_of",
    "paired_values",
    "score",
    "setup_differences",
    "stat",
    "tasks_of",
    "unit_of",
    "value",
]

_FALLBACK_MAIN = ("acc", "exact_match", "em", "accuracy", "f1", "acc_norm")


@dataclass(frozen=True)
class Stat:
    """A number with what stands behind it: ``0.250 [0.103, 0.455] (n=12)`` or ``0.250 ± 0.131 (n=12)``."""

    value: float | None
    stderr: float | None = None
    n: int | None = None
    n_unknown: bool = False  # a count the run did not record (shown as n=–), unlike one that does not apply
    ci: tuple[float, float] | None = None  # 95% interval
    ci_method: str = ""  # "wilson" | "bootstrap" | "cluster bootstrap"
    clusters: int | None = None  # passages behind a clustered score (None: independent documents)
    unit: str = ""  # what a cluster is ("passages")
    design_effect: float | None = None
    problem: str | None = None  # why there is no interval


@dataclass
class TestCell:
    """A paired comparison in a table: the test, what its clusters are, and its p-value adjusted across the
    table (filled in by ``comparisons.apply_correction``)."""

    test: PairedTest
    unit: str = "documents"
    kind: str = "continuous"  # the metric's declared kind (``kinds``)
    excluded: int = 0  # documents left out: same doc_id, different doc_hash
    adjusted: float | None = None
    correction: str = "none"


@dataclass
class Table:
    key: str
    title: str
    columns: list[str]
    rows: list[list]  # cells: str | int | float | Stat | TestCell | None
    note: str = ""
    plots: list[str] = field(default_factory=list)  # PNG file names, filled in by ``plots``
    decimals: dict[str, int] = field(default_factory=dict)  # per column, where 3 decimals would mislead
    cautions: list[Caution] = field(default_factory=list)  # shown above the table: do not compare blindly
    families: dict[str, str] = field(default_factory=dict)  # task -> family, for plots (chance level)
    group: int = 0  # leading columns shown as a heading over their rows in markdown (a model pair, named once)
    correction: str | None = None  # how the p-values of its tests are adjusted (holm | bh | none)
    hidden: tuple[str, ...] = ()  # columns kept in JSON and CSV but left out of the markdown


@dataclass(frozen=True)
class Paired:
    """Per-document values of one metric of two runs on the documents both scored (same doc_hash)."""

    a: list[float]
    b: list[float]
    weights: list[float]
    clusters: list[str] | None  # passage per document, where the documents are passage-based
    mismatched: int  # same doc_id, different doc_hash: left out

    @property
    def unit(self) -> str:
        return "passages" if self.clusters is not None else "documents"


@dataclass
class Model:
    """Every non-progression run of one model (base, or base + adapter), merged across files."""

    label: str
    base_key: str
    adapter_key: str | None
    tasks: dict[str, tuple[TaskResult, Run]]


def family(task: str, result: TaskResult | None = None) -> str:
    """The family owning ``task``; "other" for tasks not the pack's.

    From the YAML path ``result``'s results file records (no lm-eval import: a build stays fast); only
    for a file without one (older lm-eval) from lm-eval's index of the pack (``qa_tasks.family``).
    """
    source = result.config_source if result is not None else None
    found = family_of_yaml(source) if source else family_of(task)
    return found.name if found is not None else "other"


def metrics_of(task: str, result: TaskResult, pick) -> tuple[str, ...]:
    """``pick(family)`` (a metric tuple) of ``task``'s family, or its main metric alone."""
    found: Family | None = family_named(family(task, result))
    return (pick(found) if found else ()) or (main_metric(task, result.metrics, result),)


def main_metric(task: str, metrics, result: TaskResult | None = None) -> str:
    """The metric the overview shows for ``task`` (``result``: one of its results, for its family)."""
    found = family_named(family(task, result))
    preferred = found.main_metric if found else None
    if preferred in metrics:
        return preferred
    for name in _FALLBACK_MAIN:
        matches = sorted(m for m in metrics if m.split(",")[0] == name)
        if matches:
            return matches[0]
    return min(metrics)


def group_models(col: Collection) -> tuple[list[Model], list[str]]:
    """Merge the non-progression runs per model; a task seen twice keeps the newer file (noted)."""
    groups: dict[tuple[str, str | None], Model] = {}
    notes = []
    for run in sorted((r for r in col.runs if r.step is None), key=lambda r: (r.date, str(r.source))):
        model = groups.setdefault((run.base_key, run.adapter_key), Model(run.model, run.base_key, run.adapter_key, {}))
        for task, result in run.tasks.items():
            if task in model.tasks:
                notes.append(f"{model.label} / {task}: in {model.tasks[task][1].source.name} and "
                             f"{run.source.name}; the newer ({run.source.name}) is shown")
            model.tasks[task] = (result, run)
    labels: dict[str, int] = {}
    for model in groups.values():
        labels[model.label] = labels.get(model.label, 0) + 1
    for model in groups.values():
        if labels[model.label] > 1:  # different models share basenames: show the full arguments
            model.label = model.base_key + (f" + {model.adapter_key}" if model.adapter_key else "")
    return sorted(groups.values(), key=lambda m: (m.label, m.base_key, m.adapter_key or "")), sorted(notes)


def stat(result: TaskResult, metric: str, n: int | None = None) -> Stat | None:
    if metric not in result.metrics:
        return None
    return Stat(result.metrics[metric], result.stderr.get(metric), result.n if n is None else n)


def unit_of(result: TaskResult) -> str:
    return "passages" if result.clusters is not None else "documents"


def _values(result: TaskResult, metric: str) -> tuple[list[float], list[float], list[str] | None] | None:
    """``metric``'s per-document values, weights and passages, where the samples log holds every document."""
    if not result.samples or len(result.samples) != result.n:  # a truncated log would misstate the interval
        return None
    ids = [i for i in sorted(result.samples) if metric in result.samples[i][1]]
    if len(ids) != len(result.samples):
        return None
    pairs = [result.samples[i][1][metric] for i in ids]
    clusters = [result.clusters[i] for i in ids] if result.clusters is not None else None
    return [v for v, _ in pairs], [w for _, w in pairs], clusters


def score(result: TaskResult, metric: str, with_n: bool = True) -> Stat | None:
    """The results JSON's value of ``metric`` with a 95% interval and standard error from the samples log
    (clustered by passage where the documents share passages); lm-eval's stderr alone without a full log.
    ``with_n=False``: n left to a column of its own."""
    if metric not in result.metrics:
        return None
    found = _values(result, metric)
    if found is None:
        plain = stat(result, metric)
        return plain if with_n else replace(plain, n=None)
    values, weights, clusters = found
    est: Estimate = estimate(values, metric_kind(metric), weights, clusters, unit_of(result))
    return Stat(result.metrics[metric], est.se, result.n if with_n else None, ci=est.ci, ci_method=est.ci_method,
                clusters=est.clusters, unit=unit_of(result) if est.clusters else "",
                design_effect=est.design_effect, problem=est.problem)


def value(result: TaskResult, metric: str):
    return result.metrics.get(metric)


def tasks_of(models: list[Model], fam: str) -> list[tuple[Model, str, TaskResult]]:
    return [(m, t, m.tasks[t][0]) for m in models for t in sorted(m.tasks)
            if family(t, m.tasks[t][0]) == fam]


def paired_values(base: TaskResult, other: TaskResult, metric: str, by_hash: bool = False) -> Paired:
    """``metric`` of two runs on the documents both scored, aligned by doc_id with equal doc_hash
    (``by_hash``: aligned by doc_hash alone, for two tasks over the same passages)."""
    a, b, w, mismatched, ids = [], [], [], 0, []
    if by_hash:
        index = {h: i for i, (h, _) in (other.samples or {}).items() if h}
        keys = sorted((i, index[h]) for i, (h, _) in (base.samples or {}).items() if h in index)
    else:
        keys = [(i, i) for i in sorted(set(base.samples or {}) & set(other.samples or {}))]
    for doc_id, other_id in keys:
        hash_a, va = base.samples[doc_id]
        hash_b, vb = other.samples[other_id]
        if metric not in va or metric not in vb:
            continue
        if hash_a and hash_b and hash_a != hash_b:
            mismatched += 1
            continue
        a.append(va[metric][0])
        b.append(vb[metric][0])
        w.append(va[metric][1])
        ids.append(doc_id)
    clusters = [base.clusters[i] for i in ids] if base.clusters is not None else None
    return Paired(a, b, w, clusters, mismatched)


def setup_differences(a: tuple[TaskResult, Run], b: tuple[TaskResult, Run]) -> list[str]:
    """Names of the evaluation settings in which two runs of one task differ (unlike things)."""
    diff = [k for k in sorted(set(a[1].setup) | set(b[1].setup)) if a[1].setup.get(k, "") != b[1].setup.get(k, "")]
    diff += [k for k in sorted(set(a[0].setup) | set(b[0].setup)) if a[0].setup.get(k, "") != b[0].setup.get(k, "")]
    if a[0].n != b[0].n and "docs/prompts" not in diff:
        diff.append("n")
    return diff
