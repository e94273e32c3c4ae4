"""The overview: one row per task and model (so it stays as wide with nine tasks as with one), the main
metric with its 95% interval, n, the standard error (clustered by passage where questions share one) and
a rank per task in which models that no corrected paired test separates share a rank ("1–2")."""

from __future__ import annotations

from leaderboards.checks import doc_set_cautions, doc_set_warning
from leaderboards.kinds import metric_kind
from leaderboards.render import fmt
from leaderboards.stats import ALPHA, BOOTSTRAP_ITERS, CORRECTION_NAMES, adjust, paired_test, rank_intervals
from leaderboards.tables import Model, Stat, Table, main_metric, paired_values, score

__all__ = ["overview_table", "ranks", "se_text"]


def se_text(cell: Stat | None) -> str | None:
    """The standard error and, for a clustered score, its passages and design effect."""
    if cell is None or cell.stderr is None:
        return cell.problem if cell is not None else None
    text = fmt(cell.stderr)
    if cell.clusters:
        text += f" ({cell.clusters} {cell.unit}" + (f", deff {cell.design_effect:.2f}" if cell.design_effect
                                                    else "") + ")"
    elif cell.ci is None:
        text += " (lm-eval)"
    return text


def _rank(lo: int, hi: int) -> str:
    return str(lo) if lo == hi else f"{lo}–{hi}"


def ranks(entries: list[tuple[Model, Stat | None]], task: str, metric: str, correction: str) -> list[str]:
    """Rank ranges of ``entries`` (one task's models) from corrected paired tests between every two of them;
    models on different documents or without a samples log are never separated."""
    results = [m.tasks[task][0] for m, _ in entries]
    values = [c.value if c is not None and c.value is not None else float("-inf") for _, c in entries]
    pairs, tests = [], []
    for i in range(len(entries)):
        for j in range(i + 1, len(entries)):
            if results[i].samples is None or results[j].samples is None or doc_set_warning(
                    task, [("a", results[i]), ("b", results[j])]):
                continue
            p = paired_values(results[i], results[j], metric)
            found = paired_test(p.a, p.b, metric_kind(metric), p.weights, p.clusters, p.unit)
            if found.p_value is not None:
                pairs.append((i, j, found.delta))
                tests.append(found.p_value)
    separated = set()
    for (i, j, delta), p in zip(pairs, adjust(tests, correction)):
        if p < ALPHA and delta:
            separated.add((j, i) if delta > 0 else (i, j))
    return [_rank(lo, hi) for lo, hi in rank_intervals(values, separated)]


def overview_table(models: list[Model], notes: list[str], correction: str = "holm") -> Table | None:
    tasks = sorted({t for m in models for t in m.tasks})
    if not tasks:
        return None
    rows = []
    for task in tasks:
        entries = [(m, m.tasks[task][0]) for m in models if task in m.tasks]
        metric = main_metric(task, sorted({k for _, r in entries for k in r.metrics}), entries[0][1])
        cells = [(m, score(r, metric)) for m, r in entries]
        ranked = ranks(cells, task, metric, correction)
        order = sorted(range(len(cells)), key=lambda i: (int(ranked[i].split("–")[0]),
                                                         -(cells[i][1].value or 0) if cells[i][1] else 0,
                                                         cells[i][0].label))
        rows += [[task, metric, cells[i][0].label, ranked[i], cells[i][1], se_text(cells[i][1])] for i in order]
    note = ("Main metric per task as the results JSON reports it, with its 95% interval: Wilson for a 0/1 metric "
            "of independent documents, else a bootstrap resampling documents, or passages where questions share "
            f"one ({BOOTSTRAP_ITERS:,} resamples, seed 0). squad_v1's questions are clustered by their passage; "
            "the strategies' documents are passages already. n = documents. SE = standard error: cluster-robust "
            "where questions share passages, with the number of passages and the design effect (clustered ÷ "
            "per-question variance); \"lm-eval\" where no complete samples log gives the interval. Rank: within a "
            "task, models that no paired test separates (p < 0.05 after "
            f"{CORRECTION_NAMES[correction]} correction over that task's pairs) share a rank.")
    if notes:
        note += " Duplicates: " + "; ".join(notes) + "."
    cautions = doc_set_cautions((m.label, t, m.tasks[t][0]) for m in models for t in sorted(m.tasks))
    return Table("overview", "Overview", ["Task", "Metric", "Model", "Rank", "Score [95% CI] (n)", "SE"], rows,
                 note, cautions=cautions)
