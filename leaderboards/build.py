"""``build``: lm-eval output folders -> leaderboard file (+ PNG plots beside a markdown one)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from leaderboards import plots as plots_mod
from leaderboards.comparisons import comparison_table, progression_table, strategy_table
from leaderboards.family_tables import adapter_settings_table, adapters_table
from leaderboards.overview import overview_table
from leaderboards.reader import Collection, read_paths
from leaderboards.render import render_csv, render_json, render_markdown
from leaderboards.stats import CORRECTIONS
from leaderboards.tables import Table, group_models
from qa_tasks.errors import QAPackError
from qa_tasks.family import families, resolve
from qa_tasks.files import atomic_write

__all__ = ["FORMATS", "BuildReport", "build"]

FORMATS = ("md", "csv", "json")


@dataclass
class BuildReport:
    output: Path
    tables: list[Table]
    plots: list[Path] = field(default_factory=list)
    statistics: Path | None = None  # the JSON of every statistic written beside a markdown leaderboard
    warnings: list[str] = field(default_factory=list)  # files skipped in whole or in part
    cautions: list[str] = field(default_factory=list)  # numbers the tables set side by side but must not compare


def _display(path: Path, base: Path) -> str:
    """A path relative to the output's folder (stable across machines for a moved tree)."""
    try:
        return Path(os.path.relpath(path.resolve(), base.resolve())).as_posix()
    except ValueError:  # another drive on Windows
        return path.as_posix()


def _write(path: Path, text: str) -> None:
    atomic_write(path, text)


def build(paths, output, fmt: str | None = None, plots: bool = True, correction: str | None = None) -> BuildReport:
    """Read ``paths`` (lm-eval output folders or files) and write the leaderboard to ``output``.

    ``fmt`` defaults to the output's suffix (.md/.csv/.json); a markdown leaderboard gets the JSON of every
    statistic beside it (same stem, .json). ``correction`` (holm | bh | none) overrides each table's own
    multiple-comparison correction. Bad files become warnings; only bad arguments or having nothing
    readable at all raise ``QAPackError``.
    """
    output = Path(output)
    fmt = fmt or (output.suffix.lstrip(".").lower() if output.suffix.lstrip(".").lower() in FORMATS else "md")
    if fmt not in FORMATS:
        raise QAPackError(f"--format {fmt!r} is not supported; use one of {', '.join(FORMATS)}")
    if correction is not None and correction not in CORRECTIONS:
        raise QAPackError(f"--correction {correction!r} is not supported; use one of {', '.join(CORRECTIONS)}")
    if not paths:
        raise QAPackError("no results folder given; pass the --output_path folders of your lm_eval runs")
    out_dir = output.parent
    if not out_dir.is_dir():
        raise QAPackError(f"{out_dir}: output folder does not exist; create it or choose another -o path")
    from leaderboards import sweep as sweep_mod  # finetune.sweep folders: read from their sweep.json only

    # a sweep folder, given or found below a given folder, is read from its sweep.json only
    found = {p: [Path(p)] if sweep_mod.is_sweep(p) else sweep_mod.find_sweeps(p) for p in paths}
    sweeps = [sweep_mod.read_sweep(f) for p in paths for f in found[p]]
    others = [p for p in paths if not sweep_mod.is_sweep(p)]
    col = read_paths(others, skip=[f for p in others for f in found[p]]) if others else Collection()
    warnings = [_relative_warning(w, out_dir) for w in col.warnings + [w for d in sweeps for w in d["_warnings"]]]
    if not col.runs and not col.latencies and not sweeps:
        raise QAPackError("no readable lm-eval results in " + ", ".join(str(p) for p in paths)
                          + (f" ({len(warnings)} file(s) skipped: {warnings[0]})" if warnings else "")
                          + "; pass folders written by lm_eval --output_path")
    tables = build_tables(col, correction)
    swept = [sweep_mod.sweep_tables(doc) for doc in sweeps]
    tables += [t for group in swept for t in group]
    sources = [_display(p, out_dir) for p in col.files] + [_display(Path(d["_path"]), out_dir) for d in sweeps]
    report = BuildReport(output, tables, warnings=warnings,
                         cautions=[f"{t.title}: {c.text}" for t in tables for c in t.cautions])
    if fmt == "md":
        note = ""
        if plots and plots_mod.plots_available():
            report.plots = [out_dir / n for n in plots_mod.make_plots(tables, out_dir, output.stem)]
            report.plots += [out_dir / n for doc, group in zip(sweeps, swept)
                             for n in sweep_mod.sweep_plots(doc, group, out_dir, output.stem)]
        elif plots:
            note = plots_mod.MISSING_NOTE
        _write(output, render_markdown(tables, warnings, sources, note))
        if output.suffix.lower() != ".json":
            report.statistics = output.with_suffix(".json")
            _write(report.statistics, render_json(tables, warnings, sources))
    elif fmt == "csv":
        _write(output, render_csv(tables))
    else:
        _write(output, render_json(tables, warnings, sources))
    return report


def build_tables(col: Collection, correction: str | None = None) -> list[Table]:
    """Every table the runs in ``col`` fill, in reading order (empty ones left out).

    Confirmatory tables (the overview's ranks, base vs adapter, strategy vs strategy) adjust their p-values
    by Holm, the screening one (training progression) by Benjamini-Hochberg, unless ``correction`` is given."""
    models, notes = group_models(col)
    detail: list[Table | None] = []
    for family in families():  # each family's own tables, in the registry's order
        for ref in family.tables:
            made = resolve(ref)(models, col)
            detail += made if isinstance(made, list) else [made]
            if family.name == "squad" and ref.endswith(":squad_table"):  # its paired comparisons right below
                detail.append(strategy_table(models, correction or "holm"))
    tables = [overview_table(models, notes, correction or "holm"), comparison_table(models, correction or "holm"),
              *detail, progression_table(col, models, correction or "bh"), adapters_table(col),
              adapter_settings_table(col)]
    return [t for t in tables if t is not None]


def _relative_warning(warning: str, base: Path) -> str:
    path, sep, why = warning.partition(": ")
    return f"{_display(Path(path), base)}: {why}" if sep else warning
