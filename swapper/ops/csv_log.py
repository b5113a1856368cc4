"""A CSV logger that never deletes an earlier log of the same run directory.

Lightning's ``CSVLogger`` deletes ``metrics.csv`` when its folder exists, so resuming in the same run
directory (``hydra.run.dir=<run> ckpt_path=last``, a requeued job) lost the log up to the resume
point. Here the first start writes ``csv/metrics.csv`` and every later one ``csv/<n>/metrics.csv``
(n = 1, 2, ...); ``swapper.ops.runs.read_metrics`` merges them oldest first.
"""

from __future__ import annotations

from pathlib import Path

from lightning.pytorch.loggers import CSVLogger

__all__ = ["next_csv_version", "resumable_csv_logger"]


def next_csv_version(save_dir: str | Path, name: str = "csv") -> str:
    """Empty (csv/metrics.csv) for the first start of a run directory, else the next free number."""
    root = Path(save_dir) / name
    if not (root / "metrics.csv").is_file():
        return ""
    used = [int(p.parent.name) for p in root.glob("*/metrics.csv") if p.parent.name.isdigit()]
    return str(max(used, default=0) + 1)


def resumable_csv_logger(save_dir: str, name: str = "csv", flush_logs_every_n_steps: int = 100) -> CSVLogger:
    """Lightning's CSVLogger writing into the first unused ``csv/[<n>/]metrics.csv`` of ``save_dir``."""
    return CSVLogger(
        save_dir,
        name=name,
        version=next_csv_version(save_dir, name),
        flush_logs_every_n_steps=flush_logs_every_n_steps,
    )
