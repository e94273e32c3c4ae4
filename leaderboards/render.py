"""Render tables as markdown, CSV (long format: one value per line) or JSON; pure text, no clock, no
absolute paths unless given, so the same tables give the same bytes. A table's cautions (numbers that
must not be compared as they stand) come first in markdown, as "warning" lines in CSV and as
"warnings" in JSON. The JSON keeps every statistic (intervals, raw and adjusted p-values, detectable
differences); the markdown names a table's leading ``group`` columns once, as a heading over their rows."""

from __future__ import annotations

import csv
import io
import json

from leaderboards.tables import Stat, Table, TestCell

__all__ = ["KEY_COLUMNS", "fmt", "render_csv", "render_json", "render_markdown"]

# leading columns that identify a row (joined into the CSV "row" field)
KEY_COLUMNS = {"overview": 3, "comparison": 4, "progression": 4, "squad_pairs": 4, "adapters": 1}
_DASH = "–"
_TESTS = {"mcnemar": "McNemar exact", "bootstrap": "bootstrap", "cluster bootstrap": "cluster bootstrap"}


def _p(p: float) -> str:
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def _test_text(cell: TestCell, column: str) -> str:
    """A paired comparison in the column that shows one side of it: its p-values, or which test ran on what."""
    test = cell.test
    if column.startswith("p"):
        if test.p_value is None:
            return _DASH
        if cell.adjusted is None or cell.correction == "none":
            return _p(test.p_value)
        return f"{_p(cell.adjusted)} ({_p(test.p_value)})"
    if test.problem:
        return test.problem
    where = (f"{test.n} in {test.clusters} {cell.unit}" if test.clusters else f"n={test.n}" if cell.unit ==
             "documents" else f"{test.n} {cell.unit}")
    text = f"{_TESTS.get(test.method, test.method)}, {where}"
    return text + (f" ({cell.excluded} docs differ, excluded)" if cell.excluded else "")


def _stat(x: Stat, signed: bool) -> str:
    n = f" (n={x.n})" if x.n is not None else f" (n={_DASH})" if x.n_unknown else ""
    if x.value is None:
        return _DASH + n
    number = (lambda v: fmt(v, "Δ")) if signed else fmt
    text = number(x.value)
    if x.ci is not None:
        text += f" [{number(x.ci[0])}, {number(x.ci[1])}]"
    elif x.stderr is not None:
        text += f" ± {fmt(x.stderr)}"
    return text + n


def fmt(x, column: str = "", decimals: int | None = None) -> str:
    """One cell as text: 3 decimals (1 from 100 up) unless ``decimals``, signed deltas, p < 0.001 as '<0.001',
    a score as its value with its 95% interval (else ± its standard error) and n."""
    if isinstance(x, Stat):
        return _stat(x, column.startswith("Δ"))
    if isinstance(x, TestCell):
        return _test_text(x, column)
    if x is None:
        return _DASH
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return str(x)
    if isinstance(x, float):
        if column == "p":
            return _p(x)
        if column.startswith("Δ"):
            return f"{x:+.3f}" if abs(x) < 100 else f"{x:+.1f}"
        if decimals is not None:
            return f"{x:.{decimals}f}"
        return f"{x:.1f}" if abs(x) >= 100 else f"{x:.3f}"
    return str(x)


def _md_cell(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _md_rows(table: Table, rows: list[list]) -> list[str]:
    shown = [i for i, c in enumerate(table.columns) if i >= table.group and c not in table.hidden]
    numeric = {i: all(isinstance(row[i], (int, float, Stat)) or row[i] is None for row in rows)
               and i >= KEY_COLUMNS.get(table.key, 2) for i in shown}
    lines = ["| " + " | ".join(_md_cell(table.columns[i]) for i in shown) + " |",
             "|" + "|".join("---:" if numeric[i] else "---" for i in shown) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(_md_cell(fmt(row[i], table.columns[i], table.decimals.get(table.columns[i])))
                                       for i in shown) + " |")
    return lines


def _md_table(table: Table) -> list[str]:
    """The table; with ``group`` leading columns, one heading per distinct group and its rows below it."""
    if not table.group:
        return _md_rows(table, table.rows)
    out: list[str] = []
    groups: dict[tuple, list[list]] = {}
    for row in table.rows:
        groups.setdefault(tuple(fmt(c) for c in row[: table.group]), []).append(row)
    joiner = " → " if table.key == "comparison" else " on " if table.group == 2 else " / "
    for key, rows in groups.items():
        out += [f"### {_md_cell(joiner.join(key))}", "", *_md_rows(table, rows), ""]
    return out[:-1]


def render_markdown(tables: list[Table], warnings: list[str], sources: list[str], plots_note: str = "",
                    title: str = "Leaderboard") -> str:
    out = [f"# {title}", "",
           f"Built by `python -m leaderboards build` from {len(sources)} file(s) listed under Sources.", ""]
    if plots_note:
        out += [f"_{plots_note}_", ""]
    for table in tables:
        out += [f"## {table.title}", ""]
        # above the table, where a reader comparing its numbers cannot miss it
        if table.cautions:
            out += ["> ⚠ **Warning: do not compare these numbers as they stand**", ">"]
            out += [f"> - {_md_cell(caution.text)}" for caution in table.cautions] + [""]
        out += [*_md_table(table), ""]
        if table.note:
            out += [table.note, ""]
        for name in table.plots:
            out += [f"![{table.title}]({name})", ""]
    if warnings:
        out += ["## Warnings", "", "These files were skipped in whole or in part:", ""]
        out += [f"- {_md_cell(w)}" for w in warnings] + [""]
    out += ["## Sources", ""] + [f"- `{s}`" for s in sources] + [""]
    return "\n".join(out)


_CSV_FIELDS = ("value", "stderr", "n", "ci_low", "ci_high", "p", "p_adjusted")


def _raw(cell, column: str) -> tuple:
    """(value, stderr, n, ci_low, ci_high, p, p_adjusted) of one cell for the CSV."""
    if isinstance(cell, Stat):
        ci = cell.ci or (None, None)
        return cell.value, cell.stderr, cell.n, *ci, None, None
    if isinstance(cell, TestCell):
        test = cell.test
        if column.startswith("p"):
            return cell.adjusted, None, test.n, None, None, test.p_value, cell.adjusted
        return fmt(cell, column), test.se, test.n, None, None, test.p_value, cell.adjusted
    return cell, None, None, None, None, None, None


def render_csv(tables: list[Table]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["table", "row", "column", *_CSV_FIELDS])
    for table in tables:
        keys = KEY_COLUMNS.get(table.key, 2)
        for row in table.rows:
            row_id = " / ".join(fmt(c) for c in row[:keys])
            for column, cell in zip(table.columns[keys:], row[keys:]):
                writer.writerow([table.key, row_id, column, *("" if v is None else repr(v) if isinstance(v, float)
                                                              else v for v in _raw(cell, column))])
        for caution in table.cautions:  # column "warning": the rows named in "row" are not comparable
            writer.writerow([table.key, " / ".join(caution.scope), "warning", caution.text,
                             *[""] * (len(_CSV_FIELDS) - 1)])
    return buf.getvalue()


def _json_cell(cell, column: str):
    if isinstance(cell, Stat):
        out = {"value": cell.value, "stderr": cell.stderr, "n": cell.n}
        if cell.ci is not None or cell.problem:
            out.update(ci=list(cell.ci) if cell.ci else None, ci_method=cell.ci_method, clusters=cell.clusters,
                       cluster_unit=cell.unit or None, design_effect=cell.design_effect, problem=cell.problem)
        return out
    if isinstance(cell, TestCell):
        if column.startswith("p"):
            return {"p": cell.test.p_value, "p_adjusted": cell.adjusted, "correction": cell.correction}
        test = cell.test
        return {"method": test.method or None, "text": fmt(cell, column), "n": test.n, "clusters": test.clusters,
                "unit": cell.unit, "delta": test.delta, "ci": list(test.ci) if test.ci else None, "se": test.se,
                "detectable": test.detectable, "p": test.p_value, "p_adjusted": cell.adjusted,
                "correction": cell.correction, "excluded": cell.excluded, "problem": test.problem}
    return cell


def render_json(tables: list[Table], warnings: list[str], sources: list[str]) -> str:
    doc = {
        "tables": [{"key": t.key, "title": t.title, "columns": t.columns, "note": t.note, "correction": t.correction,
                    "warnings": [{"scope": list(c.scope), "text": c.text} for c in t.cautions],
                    "rows": [[_json_cell(c, col) for c, col in zip(row, t.columns)] for row in t.rows]}
                   for t in tables],
        "warnings": warnings,
        "sources": sources,
    }
    return json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False) + "\n"
