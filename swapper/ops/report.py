"""The comparison table: one row per run, the differing config keys, final/best metrics, duration."""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from swapper.ops.runs import Run, differing_keys, metric_mode

DEFAULT_TRAIN_METRICS = ("train/g/total", "train/d/total")


@dataclass
class Table:
    columns: list[str]
    rows: list[dict[str, Any]]

    def column(self, name: str) -> list[Any]:
        return [row.get(name) for row in self.rows]


def default_metrics(runs: Sequence[Run]) -> list[str]:
    """Every validation metric plus the generator/discriminator totals (all metrics if none of those).

    Metrics with the same history in every run (a data-only baseline) say nothing about the runs
    and are left out when there are several runs.
    """
    names = sorted({m for run in runs for m in run.metrics})
    if len(runs) > 1:
        names = [m for m in names if len({tuple(run.metrics.get(m, ())) for run in runs}) > 1]
    chosen = [m for m in names if m.startswith("val/")] + [m for m in DEFAULT_TRAIN_METRICS if m in names]
    return chosen or names


def compare_table(
    runs: Sequence[Run], metrics: Sequence[str] | None = None, sort: str | None = None, reverse: bool = False
) -> Table:
    """Build the table; ``sort`` is a metric (ranked by its best value, best first) or any column name."""
    metrics = list(metrics) if metrics else default_metrics(runs)
    if sort and sort not in metrics and any(sort in run.metrics for run in runs):
        metrics.append(sort)
    keys = differing_keys(runs)
    columns = ["run", *keys]
    for metric in metrics:
        columns += [f"{metric} final", f"{metric} best"]
    columns += ["steps", "duration"]
    rows = []
    for run in runs:
        row: dict[str, Any] = {"run": run.label or str(run.path)}
        row.update({key: run.config.get(key) for key in keys})
        for metric in metrics:
            row[f"{metric} final"] = run.final(metric)
            row[f"{metric} best"] = run.best(metric, metric_mode(metric, runs))
        row["steps"] = run.last_step + 1 if run.last_step is not None else None
        row["duration"] = run.duration_s
        rows.append(row)
    table = Table(columns, rows)
    if sort:
        sort_table(table, sort, descending=_descending(sort, runs) != reverse)
    return table


def _descending(sort: str, runs: Sequence[Run]) -> bool:
    metric = sort.removesuffix(" best").removesuffix(" final")
    return any(metric in run.metrics for run in runs) and metric_mode(metric, runs) == "max"


def sort_table(table: Table, sort: str, descending: bool = False) -> None:
    """Sort rows in place by a column (a bare metric name means its "best" column); blanks go last."""
    column = f"{sort} best" if f"{sort} best" in table.columns else sort
    if column not in table.columns:
        raise ValueError(f"cannot sort by {sort!r}: columns are {', '.join(table.columns)}")

    def blank(value: Any) -> bool:
        return value is None or (isinstance(value, float) and math.isnan(value))

    present = [r for r in table.rows if not blank(r.get(column))]
    absent = [r for r in table.rows if blank(r.get(column))]
    present.sort(key=lambda r: _sort_key(r[column]), reverse=descending)
    table.rows[:] = present + absent


def _sort_key(value: Any) -> tuple[int, Any]:
    # numbers before strings, so a column mixing both still sorts
    return (0, value) if isinstance(value, (int, float)) and not isinstance(value, bool) else (1, str(value))


def format_value(value: Any, column: str = "") -> str:
    if value is None:
        return "-"
    if column == "duration":
        return format_duration(value)
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, tuple):
        return "[" + ", ".join(format_value(v) for v in value) + "]"
    return str(value)


def format_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def to_text(table: Table) -> str:
    """Aligned plain-text table for the terminal (numbers right-aligned)."""
    cells = [[format_value(row.get(c), c) for c in table.columns] for row in table.rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(table.columns)]
    numeric = [all(_is_number(row.get(c)) or row.get(c) is None for row in table.rows) for c in table.columns]
    numeric[table.columns.index("duration")] = True

    def line(values: list[str]) -> str:
        parts = zip(values, widths, numeric, strict=True)
        return "  ".join(v.rjust(w) if num else v.ljust(w) for v, w, num in parts)

    out = [line(table.columns), line(["-" * w for w in widths])] + [line(r) for r in cells]
    return "\n".join(s.rstrip() for s in out)


def to_markdown(table: Table) -> str:
    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    header = "| " + " | ".join(cell(c) for c in table.columns) + " |"
    align = "|" + "|".join("---:" if c != "run" else ":---" for c in table.columns) + "|"
    body = [
        "| " + " | ".join(cell(format_value(r.get(c), c)) for c in table.columns) + " |" for r in table.rows
    ]
    return "\n".join([header, align, *body]) + "\n"


def write_csv(table: Table, path: str | Path) -> Path:
    """Full-precision values; the duration in seconds (column ``duration_s``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = ["duration_s" if c == "duration" else c for c in table.columns]
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for row in table.rows:
            writer.writerow(["" if row.get(c) is None else _csv_value(row.get(c)) for c in table.columns])
    return path


def _csv_value(value: Any) -> Any:
    return format_value(value) if isinstance(value, tuple) else value


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
