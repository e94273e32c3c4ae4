"""Paired tables: base vs adapter, the training progression (each checkpoint vs the base model) and the
SQuAD strategies of one model against each other on the same passages.

Each comparison is a ``TestCell`` (the test follows from the metric's kind and from whether documents
share passages, ``stats.paired_test``); ``apply_correction`` then adjusts the p-values across the whole
table (Holm for confirmatory tables, Benjamini-Hochberg for screening ones, or the ``--correction`` given)
and writes each verdict: yes, no, or underpowered with the smallest difference the test could detect.
"""

from __future__ import annotations

from itertools import combinations

from leaderboards.checks import CONSTANT_MIN_DOCS, CONSTANT_SHARE, Caution, constant_answer, doc_set_warning
from leaderboards.kinds import BINARY, metric_kind
from leaderboards.reader import Collection, TaskResult
from leaderboards.render import fmt
from leaderboards.stats import ALPHA, BOOTSTRAP_ITERS, CORRECTION_NAMES, POWER, adjust, paired_test
from leaderboards.tables import (
    Model,
    Stat,
    Table,
    TestCell,
    family,
    metrics_of,
    paired_values,
    score,
    setup_differences,
)

__all__ = [
    "PAIRED_COLUMNS",
    "apply_correction",
    "compare",
    "comparison_table",
    "progression_table",
    "strategy_table",
    "verdict",
]

PAIRED_COLUMNS = ["Δ [95% CI]", "Test", "p adj. (raw)", "Significant"]


def compare(base: TaskResult, other: TaskResult, metric: str, by_hash: bool = False) -> list:
    """The paired cells (Δ, test, and two left for ``apply_correction``) of ``other`` − ``base`` on ``metric``."""
    if base.samples is None or other.samples is None:
        return [None, "no per-sample log", None, "unknown"]
    p = paired_values(base, other, metric, by_hash)
    kind = metric_kind(metric)
    test = paired_test(p.a, p.b, kind, p.weights, p.clusters, p.unit)
    delta = None if test.delta is None else Stat(test.delta, test.se, ci=test.ci)
    return [delta, TestCell(test, p.unit, kind, excluded=p.mismatched), None, None]


def verdict(cell: TestCell) -> str:
    """yes (adjusted p < α), no, or underpowered: a Δ below what the comparison could detect, or a change
    whose size no observed variation lets the test estimate."""
    test = cell.test
    if test.p_value is None:
        return "unknown"
    if cell.adjusted is not None and cell.adjusted < ALPHA:
        return "yes"
    if test.detectable is None:
        return "underpowered" if test.delta else "no"
    if abs(test.delta or 0.0) < test.detectable:
        if cell.kind == BINARY and test.detectable >= 1:  # no 0/1 difference is big enough at this n
            return "underpowered (nothing detectable)"
        return f"underpowered (detectable ≥ {fmt(test.detectable)})"
    return "no"


def apply_correction(table: Table, correction: str) -> None:
    """Adjust every p-value of ``table`` across the table and fill in the p and verdict columns."""
    if "Test" not in table.columns:
        return
    at, p_at, v_at = (table.columns.index(c) for c in ("Test", "p adj. (raw)", "Significant"))
    cells = [row[at] for row in table.rows if isinstance(row[at], TestCell)]
    for cell, adjusted in zip(cells, adjust([c.test.p_value for c in cells], correction)):
        cell.adjusted, cell.correction = adjusted, correction
    for row in table.rows:
        if isinstance(row[at], TestCell):
            row[p_at], row[v_at] = row[at], verdict(row[at])
    table.correction = correction
    tests = sum(c.test.p_value is not None for c in cells)
    table.note += (f" p adj. = p adjusted by {CORRECTION_NAMES[correction]} across the {tests} tests of this "
                   "table (raw p in parentheses)." if correction != "none" else
                   f" p: raw, not adjusted for the {tests} tests of this table (--correction none).")


_TESTS_NOTE = ("Test: McNemar's exact test for a 0/1 metric of independent documents; otherwise a paired "
               f"bootstrap of the mean difference ({BOOTSTRAP_ITERS:,} resamples, seed 0) resampling documents, or "
               "whole passages where questions share one (cluster bootstrap: squad_v1's questions by passage; "
               "the strategies' documents are passages, weighted by their questions). Which test runs follows "
               "from the metric's kind (0/1, continuous, count), not from the values. Δ's interval comes from the "
               f"same bootstrap. Significant: adjusted p < {ALPHA}; otherwise, when |Δ| is below the smallest "
               f"difference the comparison could detect ({POWER:.0%} power, α = {ALPHA}, from n, the passages and "
               "the observed paired variance), \"underpowered (detectable ≥ X)\": no evidence either way.")


def comparison_table(models: list[Model], correction: str = "holm") -> Table | None:
    bases = {m.base_key: m for m in models if m.adapter_key is None}
    rows, cautions = [], []
    for model in models:
        base = bases.get(model.base_key)
        if model.adapter_key is None or base is None:
            continue
        for task in sorted(set(model.tasks) & set(base.tasks)):
            rb, ra = base.tasks[task][0], model.tasks[task][0]
            pair = f"{base.label} vs {model.label}"
            if warning := doc_set_warning(f"{task} ({pair})", [("base", rb), ("adapter", ra)]):
                cautions.append(Caution((pair, task), warning))
            constant = []
            for who, r, label in (("base", rb, base.label), ("adapter", ra, model.label)):
                if what := constant_answer(r):
                    constant.append(f"{who}: {what}")
                    caution = Caution((pair, task), f"{task}: {label} {what}; a Δ involving it measures how "
                                                    "often the gold is that answer, not a skill")
                    if caution.text not in {c.text for c in cautions}:  # a base shared by several adapters
                        cautions.append(caution)
            diff = setup_differences(base.tasks[task], model.tasks[task])
            for metric in [m for m in metrics_of(task, ra, lambda f: f.compared_metrics)
                           if m in ra.metrics and m in rb.metrics]:
                rows.append([base.label, model.label, task, metric, score(rb, metric, False), score(ra, metric, False),
                             *compare(rb, ra, metric), "yes" if not diff else "no: " + ", ".join(diff),
                             "; ".join(constant) or None])
    if not rows:
        return None
    note = ("Base → adapter, each pair named once above its rows. Values as the results JSON reports them, with "
            "their 95% interval; Δ = adapter − base on the documents both runs scored (n in the Test column). "
            + _TESTS_NOTE + " Same setup = same generation settings, chat template, system prompt, few-shot "
            "count, task version and documents/prompts (lm-eval's task hash); otherwise the runs compare unlike "
            f"things. A model giving one answer to ≥ {CONSTANT_SHARE:.0%} of the documents (at least "
            f"{CONSTANT_MIN_DOCS}) is named in the warning above the table.")
    table = Table("comparison", "Base vs adapter", ["Base model", "Adapter model", "Task", "Metric", "Base",
                                                    "Adapter", *PAIRED_COLUMNS, "Same setup", "Constant answer"],
                  rows, note, cautions=cautions, group=2, hidden=("Constant answer",))
    apply_correction(table, correction)
    return table


def _series(col: Collection) -> dict[tuple[str, str, str], dict]:
    series: dict[tuple[str, str, str], dict] = {}
    for run in (r for r in col.runs if r.step is not None):
        for task, result in run.tasks.items():
            entry = series.setdefault((run.model, task, run.base_key), {"adapter": run.adapter_key, "points": {}})
            entry["points"][run.step] = result  # runs are sorted by date: a re-run step keeps the newer
    return series


def progression_table(col: Collection, models: list[Model], correction: str = "bh") -> Table | None:
    series = _series(col)
    if not series:
        return None
    bases = {m.base_key: m for m in models if m.adapter_key is None}
    finals = {(m.base_key, m.adapter_key): m for m in models if m.adapter_key is not None}
    rows, cautions, families = [], [], {}
    for (label, task, base_key), entry in sorted(series.items()):
        families[task] = family(task, next(iter(entry["points"].values())))
        points: list[tuple[str, TaskResult]] = []
        base = bases.get(base_key)
        if base and task in base.tasks:
            points.append(("base", base.tasks[task][0]))
        points += [(str(step), entry["points"][step]) for step in sorted(entry["points"])]
        final = finals.get((base_key, entry["adapter"]))
        if final and task in final.tasks:
            points.append(("final", final.tasks[task][0]))
        metrics = [m for m in metrics_of(task, points[0][1], lambda f: f.progress_metrics)
                   if any(m in r.metrics for _, r in points)]
        for step, result in points:
            for metric in metrics:
                paired = (compare(points[0][1], result, metric) if points[0][0] == "base" and step != "base"
                          and metric in points[0][1].metrics and metric in result.metrics else [None] * 4)
                rows.append([label, task, step, metric, score(result, metric), *paired])
        named = [(step if step in ("base", "final") else f"step {step}", result) for step, result in points]
        if warning := doc_set_warning(f"{label} on {task}", named):
            cautions.append(Caution((label, task), warning))
    note = ("Evaluations written during fine-tuning (eval/step-N), between the base model and the final adapter, "
            "each with its 95% interval; Δ = checkpoint − base on the documents both scored. " + _TESTS_NOTE
            + " A screening table: many checkpoints, so the correction controls the false discovery rate.")
    table = Table("progression", "Training progression", ["Model", "Task", "Step", "Metric", "Value [95% CI] (n)",
                                                          *PAIRED_COLUMNS], rows, note, cautions=cautions,
                  families=families, group=2)
    apply_correction(table, correction)
    return table


_STRATEGY_METRICS = ("em", "f1")


def strategy_table(models: list[Model], correction: str = "holm") -> Table | None:
    """The SQuAD strategies of each model against each other on the same passages (paired by doc_hash)."""
    rows = []
    for m in models:
        found = [(t, m.tasks[t][0]) for t in sorted(m.tasks)
                 if family(t, m.tasks[t][0]) == "squad" and "n_passages" in m.tasks[t][0].metrics]
        for (ta, ra), (tb, rb) in combinations(found, 2):
            for metric in (x for x in _STRATEGY_METRICS if x in ra.metrics and x in rb.metrics):
                rows.append([m.label, ta.removeprefix("squad_"), tb.removeprefix("squad_"), metric,
                             score(ra, metric, False), score(rb, metric, False),
                             *compare(ra, rb, metric, by_hash=True)])
    if not rows:
        return None
    note = ("Each model's multi-question strategies against each other on the passages both evaluated (same "
            "doc_hash); Δ = B − A. " + _TESTS_NOTE)
    table = Table("squad_pairs", "SQuAD: strategy vs strategy", ["Model", "A", "B", "Metric", "A value", "B value",
                                                                 *PAIRED_COLUMNS], rows, note, group=1)
    apply_correction(table, correction)
    return table
