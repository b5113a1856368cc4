"""The latest-state checkpoint, written at every validation and when training ends."""

from __future__ import annotations

import logging
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint

log = logging.getLogger(__name__)


class LatestCheckpoint(ModelCheckpoint):
    """``<dirpath>/<filename>.ckpt`` with the latest state: at every validation (as a ``ModelCheckpoint``
    without a monitor) and also when training ends, so a run whose last steps come after its last
    validation (or that never validates) still leaves the file ``infer.py`` and ``ckpt_path=last`` read.

    Not written at the end under ``fast_dev_run``, after a guard stopped the run on a non-finite loss
    (``NaNGuard`` freezes the checkpoints: ``save_top_k=0``), after a pre-emption checkpoint was just
    written, or when this step is saved already. Lightning's own ``save_last`` writes only when a
    top-k file was written, hence this class.
    """

    def __init__(self, dirpath: str, filename: str = "last", **kwargs: Any) -> None:
        super().__init__(
            dirpath=dirpath,
            filename=filename,
            monitor=None,
            save_top_k=1,
            enable_version_counter=False,
            **kwargs,
        )

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_end(trainer, pl_module)
        stopped_by = [
            getattr(cb, "tripped", None) or getattr(cb, "saved_path", None) for cb in trainer.callbacks
        ]
        if self.save_top_k == 0 or any(stopped_by) or self._should_skip_saving_checkpoint(trainer):
            return
        self._save_topk_checkpoint(trainer, self._monitor_candidates(trainer))
        log.info("saved %s at the end of training (step %d)", self.best_model_path, trainer.global_step)
