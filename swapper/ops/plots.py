"""PNG figures across runs: metric curves (matplotlib, no pyplot state) and a preview-grid montage (PIL)."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw

from swapper.ops.runs import Run

CAPTION_HEIGHT = 16  # pixels of label band above each preview in the montage


def metric_filename(metric: str) -> str:
    """``val/swap_l1`` → ``val_swap_l1.png``."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", metric).strip("_") + ".png"


def plot_metrics(runs: Sequence[Run], metrics: Sequence[str], out_dir: str | Path) -> list[Path]:
    """One PNG per metric with a curve per run (x: training step); returns the files written."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as error:  # optional: the table and montage work without it
        raise ImportError("plots need matplotlib: pip install matplotlib") from error
    available = sorted({m for run in runs for m in run.metrics})
    missing = [m for m in metrics if not any(run.metrics.get(m) for run in runs)]
    if missing:
        raise ValueError(f"no run logged {', '.join(missing)}; logged metrics: {', '.join(available)}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for metric in metrics:
        figure = Figure(figsize=(7, 4), dpi=100)
        FigureCanvasAgg(figure)
        ax = figure.add_subplot()
        for run in runs:
            history = run.metrics.get(metric)
            if not history:
                continue
            steps, values = zip(*history, strict=True)
            ax.plot(
                steps,
                values,
                marker="o" if len(steps) < 20 else None,
                markersize=3,
                label=run.label or run.path.name,
            )
        ax.set(xlabel="step", ylabel=metric, title=metric)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
        figure.tight_layout()
        path = out_dir / metric_filename(metric)
        figure.savefig(path)
        written.append(path)
    return written


def preview_montage(runs: Sequence[Run], path: str | Path, columns: int | None = None) -> Path | None:
    """Tile each run's ``previews/latest.png`` with its label above; ``None`` when no run has one.

    Cells are as large as the largest preview (smaller ones sit top-left on white), so grids of
    different image sizes keep their pixels unscaled.
    """
    previews = [(run.label or run.path.name, run.path / "previews" / "latest.png") for run in runs]
    previews = [(label, file) for label, file in previews if file.is_file()]
    if not previews:
        return None
    images = [(label, Image.open(file).convert("RGB")) for label, file in previews]
    cell_w = max(im.width for _, im in images)
    cell_h = max(im.height for _, im in images) + CAPTION_HEIGHT
    columns = columns or math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / columns)
    canvas = Image.new("RGB", (columns * cell_w, rows * cell_h), "white")
    draw = ImageDraw.Draw(canvas)
    for i, (label, image) in enumerate(images):
        x, y = (i % columns) * cell_w, (i // columns) * cell_h
        draw.text((x + 2, y + 2), label, fill="black")
        canvas.paste(image, (x, y + CAPTION_HEIGHT))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)
    return path
