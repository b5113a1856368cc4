"""Perceptual loss: weighted feature distances in a frozen network."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from swapper.losses.base import LossTerm

DISTANCES = ("l1", "l2")


class PerceptualLoss(LossTerm):
    """Σ_l w_l · dist(φ_l(fake), φ_l(real)) over ``layers`` of a frozen ``network``.

    ``network`` exposes ``features(images01, layers) -> list[Tensor]`` (VGGFace, SFace wrappers).
    ``dist`` is the mean absolute (``l1``) or squared (``l2``) difference. ``normalize=True``
    instance-normalises each feature map first, as faceswap-GAN does (after MUNIT), so the term
    compares feature patterns rather than activation scale. Reads ``fake`` and ``real``.
    """

    def __init__(
        self,
        network: nn.Module,
        layers: Sequence[str],
        layer_weights: Sequence[float] | None = None,
        weight: float = 1.0,
        distance: str = "l1",
        normalize: bool = False,
    ) -> None:
        super().__init__(weight)
        layers = [str(layer) for layer in layers]
        if not layers:
            raise ValueError("PerceptualLoss needs at least one layer")
        layer_weights = [1.0] * len(layers) if layer_weights is None else [float(w) for w in layer_weights]
        if len(layer_weights) != len(layers):
            raise ValueError(f"{len(layers)} layers but {len(layer_weights)} layer_weights")
        if distance not in DISTANCES:
            raise ValueError(f"unknown distance {distance!r}; choose one of {DISTANCES}")
        # Frozen here too, so no optimizer built from the module's parameters can touch it.
        self.network = network.requires_grad_(False)
        self.layers = layers
        self.layer_weights = layer_weights
        self.distance = distance
        self.normalize = normalize

    def _dist(self, a: Tensor, b: Tensor) -> Tensor:
        if self.normalize:
            a, b = F.instance_norm(a), F.instance_norm(b)
        return F.l1_loss(a, b) if self.distance == "l1" else F.mse_loss(a, b)

    def generator_loss(self, fake: Tensor, real: Tensor, **_) -> Tensor:
        fake_features = self.network.features(fake, self.layers)
        with torch.no_grad():  # the target side needs no graph
            real_features = self.network.features(real, self.layers)
        pairs = zip(self.layer_weights, fake_features, real_features, strict=True)
        return sum(w * self._dist(f, r) for w, f, r in pairs)

    def extra_repr(self) -> str:
        return (
            f"weight={self.weight}, layers={self.layers}, layer_weights={self.layer_weights}, "
            f"distance={self.distance!r}, normalize={self.normalize}"
        )


__all__ = ["PerceptualLoss"]
