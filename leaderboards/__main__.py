"""Command line: ``python -m leaderboards build RESULTS_DIR... -o LEADERBOARD.md [--format md|csv|json]``.

    python -m leaderboards build runs/base runs/adapter -o LEADERBOARD.md
    python -m leaderboards build runs/ -o leaderboard.csv --format csv
    python -m leaderboards build sweeps/recipe_mpr_fold0 -o SWEEP.md   # a finetune.sweep folder
    python -m leaderboards build runs/ -o LEADERBOARD.md --correction bh  # one correction for every table

A markdown leaderboard gets LEADERBOARD.json beside it: every statistic (intervals, raw and adjusted
p-values, detectable differences) for papers and scripts.

Each corrupt, truncated or foreign file gets a warning on stderr naming it; the rest still renders.
Numbers set side by side but evaluated on different documents, and deltas of a model that gives one
constant answer, get a warning on stderr and above their table.
Exit status 2 for usage errors (missing folder, nothing readable).
"""

from __future__ import annotations

import argparse
import sys

from qa_tasks.errors import QAPackError

__all__ = ["main", "parser"]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m leaderboards", description="Leaderboards from lm-eval results.",
                                epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="lm-eval output folders -> leaderboard (markdown + PNG plots, CSV or JSON)")
    b.add_argument("results", nargs="+", metavar="RESULTS_DIR",
                   help="lm_eval --output_path folders (searched recursively), single results/latency files, or "
                        "python -m finetune.sweep folders (their sweep.json)")
    b.add_argument("-o", "--output", required=True, metavar="LEADERBOARD.md", help="file to write")
    b.add_argument("--format", choices=("md", "csv", "json"), default=None,
                   help="output format (default: from the output's suffix, else md)")
    b.add_argument("--no-plots", action="store_true", help="markdown without PNG plots")
    b.add_argument("--correction", choices=("holm", "bh", "none"), default=None,
                   help="multiple-comparison correction of every table's p-values (default: Holm for base vs "
                        "adapter, strategy vs strategy and the overview's ranks, Benjamini-Hochberg for the "
                        "training progression; raw p-values stay in the JSON)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from leaderboards.build import build

    try:
        report = build(args.results, args.output, args.format, plots=not args.no_plots, correction=args.correction)
    except QAPackError as e:
        return e.report()
    for warning in report.warnings + report.cautions:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"wrote {report.output} ({len(report.tables)} tables"
          + (f", {len(report.plots)} plots" if report.plots else "") + ")")
    for path in ([report.statistics] if report.statistics else []) + report.plots:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
