"""Files written when training ends: one submodule's weights as a plain state dict (e.g. a trained
identity network that other runs load as a frozen pretrained network), and the self-contained
generator file that ``infer.py`` accepts instead of a run directory."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import lightning as L
import torch

log = logging.getLogger(__name__)


def why_not_export(trainer: L.Trainer, state: dict[str, torch.Tensor]) -> str | None:
    """Why weights must not be written (a guard stopped the run, a weight is not finite), or None:
    a diverged run never replaces a good file."""
    tripped = [cb.tripped for cb in trainer.callbacks if getattr(cb, "tripped", None)]
    if tripped:
        return str(tripped[0])
    broken = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    return f"non-finite weights in {broken[:5]}" if broken else None


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
        state = {
            k: v.detach().cpu().clone() for k, v in getattr(pl_module, self.attribute).state_dict().items()
        }
        if (refusal := why_not_export(trainer, state)) is not None:
            log.error("ExportWeights: %s not exported (%s); %s left as they were", self.attribute, refusal,
                      ", ".join(map(str, self.paths)))  # fmt: skip
            return
        for path in self.paths:
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_name(path.name + ".partial")
            torch.save(state, partial)
            os.replace(partial, path)
            log.info("exported %s weights to %s", self.attribute, path)


class ExportGenerator(L.Callback):
    """When training ends, write the run's generator as one self-contained file (``<run>/<filename>``):
    its weights (the EMA copy when kept) and, as metadata, the config node that builds it and the crop
    geometry of the training data. ``python infer.py run=<that file>`` swaps with it, no run directory
    needed. Skipped like :class:`ExportWeights` after a guard stop or with non-finite weights."""

    def __init__(self, run_dir: str, filename: str = "generator.safetensors") -> None:
        self.run_dir = Path(run_dir)
        self.filename = filename

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        from swapper.inference.loading import generator_node, load_run_config, run_crop, save_generator_file

        if not trainer.is_global_zero or getattr(pl_module, "swap_generator", None) is None:
            return
        path = self.run_dir / self.filename
        if not (self.run_dir / "config.yaml").is_file():  # a Trainer built by hand, not by train.py
            log.warning("ExportGenerator: %s has no config.yaml; %s not written", self.run_dir, path)
            return
        was_training = pl_module.training
        pl_module.eval()  # the evaluation generator: the EMA copy when one is kept
        try:
            generator = pl_module.swap_generator
            if (refusal := why_not_export(trainer, generator.state_dict())) is not None:
                log.error("ExportGenerator: %s not written (%s)", path, refusal)
                return
            run_cfg = load_run_config(self.run_dir)
            crop = run_crop(run_cfg, generator.default_template)
            save_generator_file(path, generator, generator_node(run_cfg, self.run_dir), crop)
        finally:
            pl_module.train(was_training)
        log.info("exported the generator to %s (infer.py run=%s)", path, path)


__all__ = ["ExportGenerator", "ExportWeights"]
