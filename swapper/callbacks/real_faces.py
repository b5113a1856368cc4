"""Validation figures for real pairs, where no ground-truth swap exists: does the swap show the other
person (two independent recognisers), keep the input's expression and pose, and stay sharp?"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import lightning as L
import torch

log = logging.getLogger(__name__)


class RealFaceScore(L.Callback):
    """After each validation, swap up to ``max_faces`` held-out faces of each person (the validation set's
    first items, which a time-split pair set spreads over the held-out frames) both ways and log the
    figures of ``swapper.score.score_crops`` as ``val/a2b/<figure>`` and ``val/b2a/<figure>``: e.g.
    ``val/a2b/identity/sface/closer_to_target``, ``.../called_target``, ``val/a2b/landmarks/dlib68_error``,
    ``val/a2b/expression/eyes_correlation``, ``val/a2b/sharpness/ratio``. Centroids of each person are
    their held-out real faces. ``folder``: a folder of the training crops (its ``faces.jsonl`` tells the
    alignment template); the recognisers run on rank 0 only.
    """

    def __init__(
        self, folder: str, max_faces: int = 64, recognisers: Sequence[str] = ("sface", "dlib")
    ) -> None:
        if max_faces < 4:
            raise ValueError(f"max_faces must be >= 4 (correlations need a few frames), got {max_faces}")
        self.folder, self.max_faces, self.recognisers = folder, max_faces, tuple(recognisers)
        self._judge = None
        self._faces: dict[str, torch.Tensor] = {}
        self._real: dict[str, dict] | None = None

    def judge(self):
        if self._judge is None:
            from swapper.faces.alignment import get_template
            from swapper.score import Judge, crop_geometry

            geometry = crop_geometry(self.folder)
            template = geometry[0] if geometry is not None else get_template("mean_face")
            self._judge = Judge(template, self.recognisers)
        return self._judge

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero or trainer.datamodule is None:
            return
        from swapper.score import score_features, to_uint8

        judge = self.judge()
        if self._real is None:  # the held-out real faces do not change: judge them once
            dataset = trainer.datamodule.val_dataset
            items = [dataset[i] for i in range(min(self.max_faces, len(dataset)))]
            self._faces = {side: torch.stack([item[side] for item in items]) for side in ("a", "b")}
            self._real = {side: judge.features(to_uint8(x)) for side, x in self._faces.items()}
        generator, real = pl_module.swap_generator, self._real
        figures = {}
        with torch.no_grad():
            for direction, side, other in (("a2b", "a", "b"), ("b2a", "b", "a")):
                x = self._faces[side].to(pl_module.device)
                swapped, _ = generator.swap_to(x, generator.target_identity(direction=direction))
                judged = judge.features(to_uint8(swapped.float().cpu()))
                scored = score_features(judged, real[side], real[other], inputs=real[side])
                figures.update({f"val/{direction}/{k}": v for k, v in scored.items() if k != "faces"})
        for key, value in figures.items():
            pl_module.log(key, float(value), rank_zero_only=True)
        log.info(
            "real faces at step %d: a2b closer to B %.0f %% (SFace) / %.0f %% (dlib), b2a closer to A "
            "%.0f %% / %.0f %%",
            trainer.global_step,
            100 * figures.get("val/a2b/identity/sface/closer_to_target", float("nan")),
            100 * figures.get("val/a2b/identity/dlib/closer_to_target", float("nan")),
            100 * figures.get("val/b2a/identity/sface/closer_to_target", float("nan")),
            100 * figures.get("val/b2a/identity/dlib/closer_to_target", float("nan")),
        )


__all__ = ["RealFaceScore"]
