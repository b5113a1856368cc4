"""Compare training runs without W&B: ``python -m swapper.compare outputs/<name> [options]``.

Prints one row per run with the config keys that differ between the runs, the final and best value
of each metric in ``csv/metrics.csv``, steps and duration; exports Markdown/CSV, plots metric
curves across runs and tiles their latest preview grids.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from swapper.ops.plots import plot_metrics, preview_montage
from swapper.ops.report import compare_table, to_markdown, to_text, write_csv
from swapper.ops.runs import load_runs


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m swapper.compare", description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", help="run directories, or folders searched for them")
    parser.add_argument("--metrics", help="comma-separated metrics for the table (default: val/* and totals)")
    parser.add_argument("--sort", help="metric (best first) or column to sort by")
    parser.add_argument("--reverse", action="store_true", help="reverse the sort order")
    parser.add_argument("--markdown", type=Path, help="also write the table as Markdown to this file")
    parser.add_argument("--csv", type=Path, help="also write the table as CSV to this file")
    parser.add_argument("--plot", help="comma-separated metrics to plot against step, one PNG each")
    parser.add_argument("--montage", action="store_true", help="tile the runs' previews/latest.png")
    parser.add_argument("--out", type=Path, default=Path("comparison"), help="folder for plots and montage")
    return parser.parse_args(argv)


def _split(text: str | None) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()] if text else []


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        runs = load_runs(args.paths)
        metrics = _split(args.metrics) or None
        table = compare_table(runs, metrics=metrics, sort=args.sort, reverse=args.reverse)
        print(to_text(table))
        if args.markdown:
            args.markdown.parent.mkdir(parents=True, exist_ok=True)
            args.markdown.write_text(to_markdown(table))
            print(f"markdown: {args.markdown}")
        if args.csv:
            print(f"csv: {write_csv(table, args.csv)}")
        if args.plot:
            for path in plot_metrics(runs, _split(args.plot), args.out):
                print(f"plot: {path}")
        if args.plot or args.montage:
            montage = preview_montage(runs, args.out / "previews.png")
            print(f"montage: {montage}" if montage else "montage: no run has previews/latest.png")
    except (FileNotFoundError, ValueError, ImportError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
