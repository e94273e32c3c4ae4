"""PNG plots written next to the markdown: Recipe-MPR accuracy per query type (bars with their 95%
intervals) and training progression (curves with a 95% band). Every bar carries its value (a 0 is a
hatched stub, a missing value says "no data"), a dashed line marks chance where there is one, and the
table's cautions (points on different documents) are printed in red on the figure. Uses matplotlib's Agg
canvas directly (no pyplot state, no GUI backend) and writes no timestamp or version into the PNG, so the
same tables give the same bytes.
"""

from __future__ import annotations

import io
import math
import re
import textwrap
from pathlib import Path

from leaderboards.checks import chance_level
from leaderboards.tables import QUERY_TYPES, Stat, Table
from qa_tasks.extras import EXTRAS, missing
from qa_tasks.files import atomic_write

__all__ = ["MISSING_NOTE", "make_plots", "plots_available", "progress_figure", "type_figure"]

_ZERO_STUB = 0.015  # height drawn for a bar of 0, so it differs from a missing bar
MISSING_NOTE = "Plots skipped: matplotlib is not installed (pip install 'lm-eval-qa-pack[plots]')."


def plots_available() -> bool:
    return not missing(*EXTRAS["plots"])


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower() or "x"


def _figure(width: float = 7.0, height: float = 3.6):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: Path) -> None:
    png = io.BytesIO()
    fig.savefig(png, format="png", metadata={"Software": None})
    atomic_write(path, png.getvalue())


def _value(cell) -> float:
    v = cell.value if isinstance(cell, Stat) else cell
    return float(v) if isinstance(v, (int, float)) else float("nan")


def _interval(cell) -> tuple[float, float]:
    """A Stat's 95% interval, or (nan, nan) where it has none."""
    if isinstance(cell, Stat) and cell.ci is not None:
        return cell.ci
    return float("nan"), float("nan")


def error_bars(values, lows, highs) -> list[list[float]]:
    """matplotlib's ``yerr`` (distances below and above each value) of intervals around ``values``; never
    negative (Wilson's upper bound at 20/20 is 1 - 1e-16, below the value)."""
    return [[max(0.0, v - lo) for v, lo in zip(values, lows)], [max(0.0, hi - v) for v, hi in zip(values, highs)]]


def _cautions(table: Table, scope: tuple[str, ...]) -> list[str]:
    return [c.text for c in table.cautions if c.scope == scope]


def _warn(fig, texts: list[str]) -> float:
    """Print the table's cautions in red under the axes; returns the figure fraction they take."""
    if not texts:
        return 0.0
    lines = [line for text in texts for line in textwrap.wrap("WARNING: " + text, 115)]
    height = fig.get_figheight()
    fig.set_figheight(height + 0.16 * len(lines))
    share = 0.16 * len(lines) / fig.get_figheight()
    fig.text(0.01, 0.01, "\n".join(lines), color="#b00000", fontsize=7, va="bottom", ha="left")
    return share + 0.01


def _chance(ax, table: Table, task: str, metrics: list[str]) -> None:
    levels = {chance_level(table.families.get(task, "other"), m) for m in metrics} - {None}
    for level in sorted(levels):
        ax.axhline(level, color="0.35", linestyle="--", linewidth=1, zorder=0,
                   label=f"chance accuracy ({level:.1f}, uniform guess)")


def _bar_labels(ax, xs: list[float], values: list[float], width: float, color, rotate: bool) -> None:
    """Every bar gets its value; a 0 gets a visible stub, a missing value says 'no data' (never an empty slot)."""
    for x, v in zip(xs, values):
        if math.isnan(v):
            ax.text(x, 0.01, "no data", ha="center", va="bottom", fontsize=6, color="0.4", rotation=90)
            continue
        if v == 0:
            ax.bar(x, _ZERO_STUB, width=width, color=color, edgecolor="black", linewidth=0.6, hatch="////")
        ax.text(x, max(v, _ZERO_STUB) + 0.01, f"{v:.2f}", ha="center", va="bottom", fontsize=6,
                rotation=90 if rotate else 0)


def _n_label(cells) -> str:
    ns = [c.n if isinstance(c, Stat) else None for c in cells]
    if all(n is None for n in ns):
        return ""
    shown = [str(n) if n is not None else "?" for n in ns]
    return f"n={shown[0]}" if len(set(shown)) == 1 else "n=" + "/".join(shown)


def type_figure(table: Table, task: str):
    """Bars of accuracy per query type of ``task``'s rows in a ``recipe_types`` table, one series per model."""
    groups = ["Overall", *QUERY_TYPES]
    rows = [row for row in table.rows if row[1] == task]
    fig = _figure(width=8.5)
    bottom = _warn(fig, _cautions(table, (task,)))
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / max(len(rows), 1)
    for i, row in enumerate(rows):
        xs = [g + (i - (len(rows) - 1) / 2) * width for g in range(len(groups))]
        values = [_value(c) for c in row[2:2 + len(groups)]]
        bars = ax.bar(xs, [0 if math.isnan(v) else v for v in values], width=width, label=row[0])
        lows, highs = zip(*(_interval(c) for c in row[2:2 + len(groups)]))
        shown = [i for i, (v, lo) in enumerate(zip(values, lows)) if not (math.isnan(v) or math.isnan(lo))]
        if shown:  # the 95% interval of each bar (Wilson: independent queries)
            ax.errorbar([xs[i] for i in shown], [values[i] for i in shown],
                        yerr=error_bars([values[i] for i in shown], [lows[i] for i in shown],
                                        [highs[i] for i in shown]),
                        fmt="none", ecolor="0.2", elinewidth=0.8, capsize=0)
        _bar_labels(ax, xs, values, width, bars.patches[0].get_facecolor(), rotate=len(rows) > 1)
    ticks = [f"{g}\n({_n_label([row[2 + j] for row in rows])})" for j, g in enumerate(groups)]
    ax.set_xticks(range(len(groups)), [t.replace("\n()", "") for t in ticks], fontsize=8)
    _chance(ax, table, task, ["acc"])
    ax.set_ylim(0, 1.15)
    ax.set_ylabel("accuracy")
    ax.set_xlabel("query type (n = queries" + (", per model in legend order" if len(rows) > 1 else "")
                  + "; whiskers: 95% interval)", fontsize=8)
    ax.set_title(f"{task}: accuracy by query type", fontsize=9)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))  # outside: never over a bar
    fig.tight_layout(rect=(0, bottom, 1, 1))
    return fig


def progress_figure(table: Table, key: tuple[str, str]):
    """Curves of a ``progression`` table's metrics over training steps for one (model, task) series."""
    from matplotlib.ticker import MaxNLocator

    rows = [row for row in table.rows if (row[0], row[1]) == key and row[2] != "final"]
    metrics = list(dict.fromkeys(row[3] for row in rows))
    steps = list(dict.fromkeys(row[2] for row in rows))
    cells = {(row[2], row[3]): row[4] for row in rows}
    xs = [0 if step == "base" else int(step) for step in steps]
    fig = _figure(width=8.5)
    cautions = _cautions(table, key)
    bottom = _warn(fig, cautions)
    ax = fig.add_subplot(1, 1, 1)
    for metric in metrics:
        ys = [_value(cells.get((step, metric))) for step in steps]
        if not all(math.isnan(y) for y in ys):  # skip all-NaN series
            line = ax.plot(xs, ys, marker="o", label=metric)[0]
            lows, highs = zip(*(_interval(cells.get((step, metric))) for step in steps))
            if not all(math.isnan(lo) for lo in lows):  # the 95% interval of each point, as a band
                ax.fill_between(xs, lows, highs, color=line.get_color(), alpha=0.15, linewidth=0)
    ns = [next((c.n for m in metrics if isinstance(c := cells.get((step, m)), Stat)), None) for step in steps]
    if cautions or len(set(ns)) > 1:  # points on different documents: say which n each one has
        ax.set_xticks(xs, [f"{x}\nn={n if n is not None else '?'}" for x, n in zip(xs, ns)], fontsize=7)
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    values = [_value(row[4]) for row in rows]
    rates = all(0 <= v <= 1 for v in values if not math.isnan(v))
    if rates:  # keep the full scale in view
        ax.set_ylim(-0.02, 1.02)
        _chance(ax, table, key[1], [m for m in metrics if m.startswith("acc")])
    ax.set_xlabel("training step (0 = base model)" + (f", n = documents: {ns[0]}" if len(set(ns)) == 1 else "")
                  + "; band: 95% interval", fontsize=8)
    ax.set_ylabel("score (0-1)" if rates else "value")
    ax.set_title(f"{key[0]} on {key[1]}", fontsize=9)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.tight_layout(rect=(0, bottom, 1, 1))
    return fig


def make_plots(tables: list[Table], out_dir: Path, stem: str) -> list[str]:
    """Write the PNGs, attach their names to the tables they illustrate, return all names."""
    written = []
    for table in tables:
        if table.key == "recipe_types":
            figures = {f"{stem}_types_{_slug(task)}.png": type_figure(table, task)
                       for task in sorted({row[1] for row in table.rows})}
        elif table.key == "progression":
            figures = {f"{stem}_progress_{_slug(key[0])}_{_slug(key[1])}.png": progress_figure(table, key)
                       for key in sorted({(row[0], row[1]) for row in table.rows})}
        else:
            continue
        for name, fig in figures.items():
            _save(fig, out_dir / name)
        table.plots = list(figures)
        written += table.plots
    return written
