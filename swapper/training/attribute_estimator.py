"""Training a pose/expression estimator on synthetic faces (their attributes are known). Wiring only.

Training batches: ``image`` (B, 3, H, W) in [0, 1] and ``attributes`` (B, 6) in the renderer's units
(``ATTRIBUTE_NAMES``). Validation also takes identity pairs (``target`` with ``target_attributes``),
so the identity data sets serve both. Logged per attribute: ``val/<name>_error`` (mean absolute
error in degrees or 0..1 units), and ``val/pose_error`` / ``val/expression_error`` (their means).
"""

from __future__ import annotations

from collections.abc import Mapping

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import MeanMetric

from swapper.attributes import ATTRIBUTE_NAMES, ATTRIBUTE_SCALE
from swapper.models.face_embedder import on_images
from swapper.training.common import OptimizerFactory, SchedulerFactory, with_schedulers

POSE, EXPRESSION = slice(0, 3), slice(3, 6)


class AttributeEstimatorModule(L.LightningModule):
    """Fit ``network`` (images in [-1, 1] -> 6 outputs) to the attributes divided by ``ATTRIBUTE_SCALE``
    (the renderer's ranges, which ``AttributeEstimator`` multiplies back), smooth L1."""

    def __init__(
        self,
        network: nn.Module,
        optimizer: OptimizerFactory,
        scheduler: SchedulerFactory | None = None,
    ) -> None:
        super().__init__()
        self.network = network
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.register_buffer("scale", torch.tensor(ATTRIBUTE_SCALE), persistent=False)
        self.val_errors = nn.ModuleDict({name: MeanMetric() for name in ATTRIBUTE_NAMES})
        self.val_pose_error = MeanMetric()
        self.val_expression_error = MeanMetric()

    def predict(self, images: Tensor) -> Tensor:
        """(B, 3, H, W) in [0, 1] -> (B, 6) attributes in the renderer's units."""
        return on_images(self.network, images) * self.scale

    def forward(self, images: Tensor) -> Tensor:
        return self.predict(images)

    def training_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> Tensor:
        images, attributes = batch["image"], batch["attributes"]
        predicted = on_images(self.network, images)
        loss = F.smooth_l1_loss(predicted, attributes / self.scale, beta=0.1)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(images))
        return loss

    def validation_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> None:
        if "image" in batch:
            images, attributes = batch["image"], batch["attributes"]
        else:  # identity pairs: the target and its attributes
            images, attributes = batch["target"], batch["target_attributes"]
        errors = (self.predict(images) - attributes).abs()  # (B, 6)
        log = {"batch_size": len(images)}
        for k, name in enumerate(ATTRIBUTE_NAMES):
            self.val_errors[name].update(errors[:, k])
            self.log(f"val/{name}_error", self.val_errors[name], **log)
        self.val_pose_error.update(errors[:, POSE].mean(1))
        self.val_expression_error.update(errors[:, EXPRESSION].mean(1))
        self.log("val/pose_error", self.val_pose_error, prog_bar=True, **log)
        self.log("val/expression_error", self.val_expression_error, prog_bar=True, **log)

    def configure_optimizers(self):
        return with_schedulers([self.optimizer_factory(self.network.parameters())], self.scheduler_factory)


__all__ = ["AttributeEstimatorModule"]
