"""PNG plots written next to the markdown: Recipe-MPR accuracy per query type (bars) and training
progression (curves). Uses matplotlib's Agg canvas directly (no pyplot state, no GUI backend) and
writes no timestamp or version into the PNG, so the same tables give the same bytes.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

from leaderboards.tables import QUERY_TYPES, Stat, Table

__all__ = ["MISSING_NOTE", "make_plots", "plots_available"]

MISSING_NOTE = "Plots skipped: matplotlib is not installed (pip install 'lm-eval-qa-pack[plots]')."


def plots_available() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower() or "x"


def _figure(width: float = 7.0, height: float = 3.6):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fig.savefig(tmp, format="png", metadata={"Software": None})
    os.replace(tmp, path)


def _value(cell) -> float:
    v = cell.value if isinstance(cell, Stat) else cell
    return float(v) if isinstance(v, (int, float)) else float("nan")


def _type_bars(table: Table, out_dir: Path, stem: str) -> list[str]:
    names = []
    for task in sorted({row[1] for row in table.rows}):
        rows = [row for row in table.rows if row[1] == task]
        fig = _figure()
        ax = fig.add_subplot(1, 1, 1)
        groups = ["Overall", *QUERY_TYPES]
        width = 0.8 / max(len(rows), 1)
        for i, row in enumerate(rows):
            xs = [g + (i - (len(rows) - 1) / 2) * width for g in range(len(groups))]
            ax.bar(xs, [_value(c) for c in row[2:2 + len(groups)]], width=width, label=row[0])
        ax.set_xticks(range(len(groups)), [f"{g}\n(n={c.n})" if isinstance(c, Stat) and c.n is not None else g
                                           for g, c in zip(groups, rows[0][2:2 + len(groups)])], fontsize=8)
        ax.set_ylim(0, 1)
        ax.set_ylabel("accuracy")
        ax.set_title(f"{task}: accuracy by query type (n from {rows[0][0]})", fontsize=9)
        ax.legend(fontsize=7, loc="upper right")
        fig.tight_layout()
        name = f"{stem}_types_{_slug(task)}.png"
        _save(fig, out_dir / name)
        names.append(name)
    return names


def _progression(table: Table, out_dir: Path, stem: str) -> list[str]:
    names = []
    metrics = [c for c in table.columns[3:] if c != "n"]
    for key in sorted({(row[0], row[1]) for row in table.rows}):
        rows = [row for row in table.rows if (row[0], row[1]) == key and row[2] != "final"]
        xs = [0 if row[2] == "base" else int(row[2]) for row in rows]
        fig = _figure()
        ax = fig.add_subplot(1, 1, 1)
        for j, metric in enumerate(metrics):
            ys = [_value(row[3 + j]) for row in rows]
            if not all(math.isnan(y) for y in ys):  # skip all-NaN series
                ax.plot(xs, ys, marker="o", label=metric)
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        values = [_value(row[3 + j]) for row in rows for j in range(len(metrics))]
        if all(0 <= v <= 1 for v in values if not math.isnan(v)):  # rates: keep the full scale in view
            ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("training step (0 = base model)")
        ax.set_title(f"{key[0]} on {key[1]}", fontsize=9)
        ax.legend(fontsize=7)
        fig.tight_layout()
        name = f"{stem}_progress_{_slug(key[0])}_{_slug(key[1])}.png"
        _save(fig, out_dir / name)
        names.append(name)
    return names


def make_plots(tables: list[Table], out_dir: Path, stem: str) -> list[str]:
    """Write the PNGs, attach their names to the tables they illustrate, return all names."""
    written = []
    for table in tables:
        if table.key == "recipe_types":
            table.plots = _type_bars(table, out_dir, stem)
        elif table.key == "progression":
            table.plots = _progression(table, out_dir, stem)
        written += table.plots
    return written
