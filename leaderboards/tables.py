"""Leaderboard tables from read lm-eval runs (see ``reader``); every table is sorted, so the same
inputs give the same tables.

Here: the cell and table types, model grouping, the overview (models x tasks), base vs adapter (deltas
with a paired test from the per-sample logs, constant-answer models marked) and the training
progression. ``family_tables`` holds the per-family detail tables. A table whose side-by-side numbers
come from different documents carries a ``Caution`` (``checks``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from leaderboards.checks import (
    CONSTANT_MIN_DOCS,
    CONSTANT_SHARE,
    LETTERS,
    Caution,
    constant_answer,
    doc_set_cautions,
    doc_set_warning,
)
from leaderboards.reader import Collection, Run, TaskResult
from leaderboards.stats import ALPHA, BOOTSTRAP_ITERS, paired_test
from qa_tasks.family import Family, family_named, family_of, family_of_yaml
from qa_tasks.recipe_mpr import QUERY_TYPES

__all__ = [
    "LETTERS",
    "QUERY_TYPES",
    "Caution",
    "Model",
    "Stat",
    "Table",
    "comparison_table",
    "family",
    "group_models",
    "main_metric",
    "overview_table",
    "progression_table",
    "setup_differences",
    "stat",
    "tasks_of",
    "value",
]

_FALLBACK_MAIN = ("acc", "exact_match", "em", "accuracy", "f1", "acc_norm")


@dataclass(frozen=True)
class Stat:
    """A number with what stands behind it: ``0.250 ± 0.131 (n=12)``."""

    value: float | None
    stderr: float | None = None
    n: int | None = None
    n_unknown: bool = False  # a count the run did not record (shown as n=–), unlike one that does not apply


@dataclass
class Table:
    key: str
    title: str
    columns: list[str]
    rows: list[list]  # cells: str | int | float | Stat | None
    note: str = ""
    plots: list[str] = field(default_factory=list)  # PNG file names, filled in by ``plots``
    decimals: dict[str, int] = field(default_factory=dict)  # per column, where 3 decimals would mislead
    cautions: list[Caution] = field(default_factory=list)  # shown above the table: do not compare blindly
    families: dict[str, str] = field(default_factory=dict)  # task -> family, for plots (chance level)


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


def _metrics_of(task: str, result: TaskResult, pick) -> tuple[str, ...]:
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


def value(result: TaskResult, metric: str):
    return result.metrics.get(metric)


def tasks_of(models: list[Model], fam: str) -> list[tuple[Model, str, TaskResult]]:
    return [(m, t, m.tasks[t][0]) for m in models for t in sorted(m.tasks)
            if family(t, m.tasks[t][0]) == fam]


def overview_table(models: list[Model], notes: list[str]) -> Table | None:
    tasks = sorted({t for m in models for t in m.tasks})
    if not tasks:
        return None
    metric_of = {}
    for task in tasks:
        results = [m.tasks[task][0] for m in models if task in m.tasks]
        metric_of[task] = main_metric(task, sorted({k for r in results for k in r.metrics}), results[0])
    rows = [[m.label, *(stat(m.tasks[t][0], metric_of[t]) if t in m.tasks else None for t in tasks)] for m in models]
    note = "Main metric per task, ± lm-eval's standard error, n = documents evaluated."
    if notes:
        note += " Duplicates: " + "; ".join(notes) + "."
    cautions = doc_set_cautions((m.label, t, m.tasks[t][0]) for m in models for t in sorted(m.tasks))
    return Table("overview", "Overview", ["Model", *(f"{t} ({metric_of[t]})" for t in tasks)], rows, note,
                 cautions=cautions)


def _pairs(base: TaskResult, other: TaskResult, metric: str) -> tuple[list[float], list[float], list[float], int]:
    """Per-document values (and weights) of ``metric`` on the documents both runs scored (same doc_hash)."""
    a, b, w, mismatched = [], [], [], 0
    for doc_id in sorted(set(base.samples or {}) & set(other.samples or {})):
        hash_a, va = base.samples[doc_id]
        hash_b, vb = other.samples[doc_id]
        if metric not in va or metric not in vb:
            continue
        if hash_a and hash_b and hash_a != hash_b:
            mismatched += 1
            continue
        a.append(va[metric][0])
        b.append(vb[metric][0])
        w.append(va[metric][1])
    return a, b, w, mismatched


def setup_differences(a: tuple[TaskResult, Run], b: tuple[TaskResult, Run]) -> list[str]:
    """Names of the evaluation settings in which two runs of one task differ (unlike things)."""
    diff = [k for k in sorted(set(a[1].setup) | set(b[1].setup)) if a[1].setup.get(k, "") != b[1].setup.get(k, "")]
    diff += [k for k in sorted(set(a[0].setup) | set(b[0].setup)) if a[0].setup.get(k, "") != b[0].setup.get(k, "")]
    if a[0].n != b[0].n and "docs/prompts" not in diff:
        diff.append("n")
    return diff


def comparison_table(models: list[Model]) -> Table | None:
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
            flag = "; ".join(constant) or None
            metrics = [m for m in _metrics_of(task, ra, lambda f: f.compared_metrics)
                       if m in ra.metrics and m in rb.metrics]
            for metric in metrics:
                vb, va = rb.metrics[metric], ra.metrics[metric]
                if rb.samples is None or ra.samples is None:
                    test, p, verdict, n = "no per-sample log", None, "unknown", None
                else:
                    xs, ys, ws, mismatched = _pairs(rb, ra, metric)
                    if not xs:
                        test, p, verdict, n = "no common documents", None, "unknown", 0
                    else:
                        result = paired_test(xs, ys, ws)
                        test, p, n = result.method, result.p_value, result.n
                        verdict = "yes" if result.significant else "no"
                        if mismatched:
                            test += f" ({mismatched} docs differ, excluded)"
                diff = setup_differences(base.tasks[task], model.tasks[task])
                same = "yes" if not diff else "no: " + ", ".join(diff)
                rows.append([base.label, model.label, task, metric, vb, va, va - vb, n, test, p, verdict, flag,
                             same])
    if not rows:
        return None
    note = (f"Δ = adapter − base (results JSON). Paired test on the documents both runs scored (n), from the "
            f"per-sample logs: McNemar's exact test for 0/1 metrics, paired bootstrap over documents "
            f"({BOOTSTRAP_ITERS:,} resamples, seed 0; SQuAD passages weighted by their questions) otherwise. Significant = p < {ALPHA}; a Δ that is not significant is no "
            f"evidence of a change. Same setup = same generation settings, chat template, system prompt, few-shot "
            f"count, task version and documents/prompts (lm-eval's task hash); otherwise the runs compare unlike "
            f"things. Constant answer = a model giving one answer to ≥ {CONSTANT_SHARE:.0%} of the documents "
            f"(at least {CONSTANT_MIN_DOCS}; from the position-bias pred_X, else the replies in the samples log).")
    return Table("comparison", "Base vs adapter", ["Base", "Adapter", "Task", "Metric", "Base value",
                                                   "Adapter value", "Δ", "n paired", "Test", "p", "Significant",
                                                   "Constant answer", "Same setup"],
                 rows, note, cautions=cautions)


def progression_table(col: Collection, models: list[Model]) -> Table | None:
    steps = [r for r in col.runs if r.step is not None]
    if not steps:
        return None
    bases = {m.base_key: m for m in models if m.adapter_key is None}
    finals = {(m.base_key, m.adapter_key): m for m in models if m.adapter_key is not None}
    series: dict[tuple[str, str, str], dict] = {}
    for run in steps:
        for task, result in run.tasks.items():
            entry = series.setdefault((run.model, task, run.base_key), {"adapter": run.adapter_key, "points": {}})
            entry["points"][run.step] = result  # runs are sorted by date: a re-run step keeps the newer
    metric_names: list[str] = []
    for (_, task, _), entry in series.items():
        for result in entry["points"].values():
            for name in _metrics_of(task, result, lambda f: f.progress_metrics):
                if name in result.metrics and name not in metric_names:
                    metric_names.append(name)
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
        for step, result in points:
            rows.append([label, task, step, *(result.metrics.get(k) for k in metric_names), result.n])
        named = [(step if step in ("base", "final") else f"step {step}", result) for step, result in points]
        if warning := doc_set_warning(f"{label} on {task}", named):
            cautions.append(Caution((label, task), warning))
    return Table("progression", "Training progression", ["Model", "Task", "Step", *metric_names, "n"], rows,
                 "Evaluations written during fine-tuning (eval/step-N), between the base model and the final adapter.",
                 cautions=cautions, families=families)
