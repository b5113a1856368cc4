"""Additive angular margin loss (ArcFace, Deng et al. 2019) for training face-recognition embeddings."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class AdditiveAngularMarginLoss(nn.Module):
    """Cross-entropy over ``scale * cos(theta + margin)`` for the true class, ``scale * cos(theta)``
    for the others, where theta is the angle between the normalised embedding and each class's
    learnable normalised centre.

    Holds the (num_classes, embedding_dim) class centres, so it is trained together with the
    embedder. Past theta = pi - margin the margin would make the logit grow again; there the
    true-class logit is ``cos(theta) - margin * sin(margin)`` (the public recipe's
    "easy margin off" fallback), which keeps it monotone. ``margin=0`` is the plain normalised
    softmax (cosine) loss.
    """

    def __init__(
        self, embedding_dim: int, num_classes: int, margin: float = 0.5, scale: float = 32.0
    ) -> None:
        super().__init__()
        if not 0.0 <= margin < math.pi / 2:
            raise ValueError(f"margin must be in [0, pi/2) radians, got {margin}")
        if scale <= 0:
            raise ValueError(f"scale must be positive, got {scale}")
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        self.margin, self.scale, self.num_classes = margin, scale, num_classes
        self.centres = nn.Parameter(torch.empty(num_classes, embedding_dim))
        nn.init.normal_(self.centres, std=0.01)

    def logits(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        """(B, D), (B,) -> (B, num_classes) scaled logits with the margin on each true class."""
        if labels.min() < 0 or labels.max() >= self.num_classes:
            raise ValueError(f"labels must be in [0, {self.num_classes}), got {labels.min()}..{labels.max()}")
        cosine = F.linear(F.normalize(embeddings, dim=1), F.normalize(self.centres, dim=1))
        true = cosine.gather(1, labels[:, None]).clamp(-1 + 1e-7, 1 - 1e-7)
        sin = torch.sqrt(1 - true * true)
        with_margin = true * math.cos(self.margin) - sin * math.sin(self.margin)  # cos(theta + m)
        fallback = true - self.margin * math.sin(self.margin)
        with_margin = torch.where(true > math.cos(math.pi - self.margin), with_margin, fallback)
        return self.scale * cosine.scatter(1, labels[:, None], with_margin)

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        return F.cross_entropy(self.logits(embeddings, labels), labels)


__all__ = ["AdditiveAngularMarginLoss"]
