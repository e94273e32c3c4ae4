"""Render tables as markdown, CSV (long format: one value per line) or JSON; pure text, no clock, no
absolute paths unless given, so the same tables give the same bytes. A table's cautions (numbers that
must not be compared as they stand) come first in markdown, as "warning" lines in CSV and as
"warnings" in JSON."""

from __future__ import annotations

import csv
import io
import json

from leaderboards.tables import Stat, Table

__all__ = ["KEY_COLUMNS", "fmt", "render_csv", "render_json", "render_markdown"]

# leading columns that identify a row (joined into the CSV "row" field)
KEY_COLUMNS = {"overview": 1, "comparison": 4, "progression": 3, "adapters": 1}
_DASH = "–"


def fmt(x, column: str = "", decimals: int | None = None) -> str:
    """One cell as text: 3 decimals (1 from 100 up) unless ``decimals``, signed deltas, p < 0.001 as '<0.001'."""
    if isinstance(x, Stat):
        n = f" (n={x.n})" if x.n is not None else f" (n={_DASH})" if x.n_unknown else ""
        if x.value is None:
            return _DASH + n
        text = fmt(x.value)
        if x.stderr is not None:
            text += f" ± {fmt(x.stderr)}"
        return text + n
    if x is None:
        return _DASH
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return str(x)
    if isinstance(x, float):
        if column == "p":
            return "<0.001" if x < 0.001 else f"{x:.3f}"
        if column == "Δ":
            return f"{x:+.3f}" if abs(x) < 100 else f"{x:+.1f}"
        if decimals is not None:
            return f"{x:.{decimals}f}"
        return f"{x:.1f}" if abs(x) >= 100 else f"{x:.3f}"
    return str(x)


def _md_cell(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _md_table(table: Table) -> list[str]:
    numeric = [all(isinstance(row[i], (int, float, Stat)) or row[i] is None for row in table.rows)
               and i >= KEY_COLUMNS.get(table.key, 2) for i in range(len(table.columns))]
    lines = ["| " + " | ".join(_md_cell(c) for c in table.columns) + " |",
             "|" + "|".join("---:" if right else "---" for right in numeric) + "|"]
    for row in table.rows:
        lines.append("| " + " | ".join(_md_cell(fmt(c, col, table.decimals.get(col)))
                                       for c, col in zip(row, table.columns)) + " |")
    return lines


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


def _raw(cell):
    if isinstance(cell, Stat):
        return cell.value, cell.stderr, cell.n
    return cell, None, None


def render_csv(tables: list[Table]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["table", "row", "column", "value", "stderr", "n"])
    for table in tables:
        keys = KEY_COLUMNS.get(table.key, 2)
        for row in table.rows:
            row_id = " / ".join(fmt(c) for c in row[:keys])
            for column, cell in zip(table.columns[keys:], row[keys:]):
                value, stderr, n = _raw(cell)
                writer.writerow([table.key, row_id, column, *("" if v is None else repr(v) if isinstance(v, float)
                                                              else v for v in (value, stderr, n))])
        for caution in table.cautions:  # column "warning": the rows named in "row" are not comparable
            writer.writerow([table.key, " / ".join(caution.scope), "warning", caution.text, "", ""])
    return buf.getvalue()


def _json_cell(cell):
    if isinstance(cell, Stat):
        return {"value": cell.value, "stderr": cell.stderr, "n": cell.n}
    return cell


def render_json(tables: list[Table], warnings: list[str], sources: list[str]) -> str:
    doc = {
        "tables": [{"key": t.key, "title": t.title, "columns": t.columns, "note": t.note,
                    "warnings": [{"scope": list(c.scope), "text": c.text} for c in t.cautions],
                    "rows": [[_json_cell(c) for c in row] for row in t.rows]} for t in tables],
        "warnings": warnings,
        "sources": sources,
    }
    return json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False) + "\n"
