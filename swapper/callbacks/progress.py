"""Training progress for a terminal (Lightning's bar) or for a log file (plain lines, e.g. a cluster job)."""

from __future__ import annotations

import logging
import math
import sys
import time
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ProgressBar, RichProgressBar, TQDMProgressBar
from lightning.pytorch.callbacks.progress.rich_progress import _RICH_AVAILABLE
from lightning.pytorch.utilities.data import extract_batch_size

from swapper.ops.progress import format_duration

log = logging.getLogger(__name__)


class LogProgressBar(ProgressBar):
    """Lightning's progress bar as log lines, one every ``interval_s`` seconds of training and one at the end:

    ``step 1200/2000 (60%) | train/g/total 0.1234 | 48.2 img/s | elapsed 0:04:10, ETA 0:02:46``

    The losses are those the module shows on the bar (``prog_bar=True``); img/s counts batch items
    (a per-pair sample counts once) over all ranks, and the rate and ETA are over the last interval.
    After each validation, one line with its bar metrics. Only rank 0 writes.
    """

    def __init__(self, interval_s: float = 30.0) -> None:
        super().__init__()
        self.interval_s = interval_s
        self._enabled = True
        self._start = self._last_time = 0.0
        self._last_step = self._start_step = 0
        self._items = 0

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = self._last_time = time.monotonic()
        self._start_step = self._last_step = trainer.global_step
        self._items = 0

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        try:
            self._items += extract_batch_size(batch) * trainer.world_size
        except Exception:  # a batch without tensors only loses the img/s figure
            pass
        if self._enabled and time.monotonic() - self._last_time >= self.interval_s:
            self._log_step(trainer, pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self._enabled:
            return
        if trainer.global_step != self._last_step:
            self._log_step(trainer, pl_module)
        log.info(
            "training ended at step %d after %s (%d steps in this run)",
            trainer.global_step,
            format_duration(time.monotonic() - self._start),
            trainer.global_step - self._start_step,
        )

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self._enabled or trainer.sanity_checking:
            return
        metrics = {k: v for k, v in self.get_metrics(trainer, pl_module).items() if k.startswith("val/")}
        log.info("validation at step %d%s", trainer.global_step, _format_metrics(metrics, prefix=" | "))

    def _log_step(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        now, step = time.monotonic(), trainer.global_step
        total = trainer.max_steps if trainer.max_steps > 0 else trainer.estimated_stepping_batches
        seconds = max(now - self._last_time, 1e-9)
        steps_per_s = (step - self._last_step) / seconds
        remaining = (total - step) / steps_per_s if steps_per_s > 0 and math.isfinite(total) else math.inf
        count = f"{step}/{total} ({100 * step / total:.0f}%)" if math.isfinite(total) else str(step)
        metrics = self.get_metrics(trainer, pl_module)
        metrics = {k: v for k, v in metrics.items() if k != "v_num" and not k.startswith("val/")}
        log.info(
            "step %s%s | %.3g img/s | elapsed %s, ETA %s",
            count,
            _format_metrics(metrics, prefix=" | "),
            self._items / seconds,
            format_duration(now - self._start),
            format_duration(remaining),
        )
        self._last_time, self._last_step, self._items = now, step, 0


def _format_metrics(metrics: dict[str, Any], prefix: str) -> str:
    if not metrics:
        return ""
    items = (f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.items())
    return prefix + " ".join(items)


def progress_bar(enabled: bool = True, interval_s: float = 30.0) -> ProgressBar | None:
    """The progress bar for this process: Lightning's own on a terminal, ``LogProgressBar`` when stdout is
    a file or a pipe; ``None`` when disabled (``trainer.enable_progress_bar=false``: Lightning refuses
    a bar callback then)."""
    if not enabled:
        return None
    if sys.stdout.isatty():
        return RichProgressBar() if _RICH_AVAILABLE else TQDMProgressBar()  # Lightning's default choice
    return LogProgressBar(interval_s)
