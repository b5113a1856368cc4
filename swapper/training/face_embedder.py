"""Training a face-recognition embedder (identity network) on labelled faces. Holds no layers, only wiring.

Validation measures what an identity loss needs from the network, on held-out people:
    val/auroc             same vs different person from the cosine of two faces (verification)
    val/sim_same, val/sim_different   the mean cosines behind it
and on synthetic data with exact swaps (``truth``: the source person with the target's pose,
expression, light and background)
    val/truth_preference  share of swaps whose truth is closer to the source than to the target;
                          a network that reacts more to pose and light than to identity scores
                          below 0.5 (SFace on the synthetic faces: 0.25), a perfect one 1.0.
"""

from __future__ import annotations

from collections.abc import Mapping

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import MeanMetric
from torchmetrics.classification import BinaryAUROC, MulticlassAccuracy

from swapper.models.face_embedder import on_images
from swapper.training.common import OptimizerFactory, SchedulerFactory, with_schedulers


class FaceEmbedderModule(L.LightningModule):
    """Fit ``embedder`` (images in [-1, 1] -> embeddings) with a classification ``loss`` that holds
    the class centres (``AdditiveAngularMarginLoss``). Batches: ``image`` (B, 3, H, W) in [0, 1]
    and ``identity`` (B,) class indices for training; validation takes identity pairs
    (``source``, ``target``, ``same_identity``, optionally ``truth``).
    """

    def __init__(
        self,
        embedder: nn.Module,
        loss: nn.Module,
        optimizer: OptimizerFactory,
        scheduler: SchedulerFactory | None = None,
    ) -> None:
        super().__init__()
        self.embedder = embedder
        self.loss = loss
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        num_classes = getattr(loss, "num_classes", None)
        self.train_accuracy = MulticlassAccuracy(num_classes, average="micro") if num_classes else None
        self.val_auroc = BinaryAUROC()
        self.val_sim_same = MeanMetric()
        self.val_sim_different = MeanMetric()
        self.val_truth_preference = MeanMetric()

    def embed(self, images: Tensor) -> Tensor:
        """(B, 3, H, W) in [0, 1] -> (B, D) unit vectors."""
        return F.normalize(on_images(self.embedder, images), dim=1)

    def forward(self, images: Tensor) -> Tensor:
        return self.embed(images)

    def training_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> Tensor:
        images, labels = batch["image"], batch["identity"]
        embeddings = on_images(self.embedder, images)
        loss = self.loss(embeddings, labels)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(labels))
        if self.train_accuracy is not None:  # nearest class centre, without the margin
            with torch.no_grad():
                cosine = F.linear(F.normalize(embeddings, dim=1), F.normalize(self.loss.centres, dim=1))
            self.train_accuracy(cosine, labels)
            self.log("train/accuracy", self.train_accuracy, batch_size=len(labels))
        return loss

    def validation_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> None:
        same = batch["same_identity"].bool()
        source, target = self.embed(batch["source"]), self.embed(batch["target"])
        similarity = (source * target).sum(1)
        self.val_auroc.update(similarity, same.long())
        if same.any():
            self.val_sim_same.update(similarity[same])
        if (~same).any():
            self.val_sim_different.update(similarity[~same])
        log = {"batch_size": len(same)}
        self.log("val/auroc", self.val_auroc, prog_bar=True, **log)
        self.log("val/sim_same", self.val_sim_same, **log)
        self.log("val/sim_different", self.val_sim_different, **log)
        if "truth" in batch:
            cross = ~same
            truth = self.embed(batch["truth"][cross])
            closer = ((truth * source[cross]).sum(1) > (truth * target[cross]).sum(1)).float()
            if len(closer):
                self.val_truth_preference.update(closer)
            self.log("val/truth_preference", self.val_truth_preference, prog_bar=True, **log)

    def configure_optimizers(self):
        return with_schedulers([self.optimizer_factory(self.parameters())], self.scheduler_factory)


__all__ = ["FaceEmbedderModule"]
