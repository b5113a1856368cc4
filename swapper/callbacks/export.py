"""Writes one submodule's weights as a plain state dict when training ends (e.g. a trained identity
network that other runs load as a frozen pretrained network)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import lightning as L
import torch

log = logging.getLogger(__name__)


class ExportWeights(L.Callback):
    """At the end of ``fit``, save ``module.<attribute>.state_dict()`` to every path in ``paths``.

    The file holds tensors only (``torch.load(weights_only=True)`` reads it) and is written
    atomically (temporary file, then rename), so a killed run never leaves half a file where a
    previous good one was. Only rank 0 writes. Nothing is written when a guard stopped the run
    (``NaNGuard``), under ``fast_dev_run``, or when a weight is not finite: a diverged run never
    replaces a good file.
    """

    def __init__(self, attribute: str, paths: list[str]) -> None:
        if not paths:
            raise ValueError("ExportWeights needs at least one path")
        self.attribute = attribute
        self.paths = [Path(p) for p in paths]

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not hasattr(pl_module, self.attribute):  # fail before hours of training, not after
            raise AttributeError(f"ExportWeights: {type(pl_module).__name__} has no '{self.attribute}'")

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        if trainer.fast_dev_run:  # a smoke test's weights must not replace a trained file
            log.info("ExportWeights: fast_dev_run, %s not exported", self.attribute)
            return
        tripped = [cb.tripped for cb in trainer.callbacks if getattr(cb, "tripped", None)]
        state = {
            k: v.detach().cpu().clone() for k, v in getattr(pl_module, self.attribute).state_dict().items()
        }
        broken = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
        if tripped or broken:
            log.error(
                "ExportWeights: %s not exported (%s); %s left as they were",
                self.attribute,
                tripped[0] if tripped else f"non-finite weights in {broken[:5]}",
                ", ".join(map(str, self.paths)),
            )
            return
        for path in self.paths:
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_name(path.name + ".partial")
            torch.save(state, partial)
            os.replace(partial, path)
            log.info("exported %s weights to %s", self.attribute, path)


__all__ = ["ExportWeights"]
