"""Discriminator feature matching (pix2pixHD), and SimSwap's weak variant on deep layers only."""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor

from swapper.losses.base import LossTerm


class FeatureMatchingLoss(LossTerm):
    """L1 between discriminator features of ``fake`` and ``real`` (real detached).

    ``layers`` picks, per scale, which of the features (logits excluded unless indexed) count:
    ``"all"`` every feature before the logits (pix2pixHD); an int ``k`` the last ``k`` before
    the logits (SimSwap's *weak* feature matching: deep layers only, shallow ones carry the
    target's texture and identity); a list explicit indices into the scale's feature list.
    Per scale the chosen layers' mean absolute differences are summed, then scales are averaged
    (pix2pixHD's 1/num_D; its 4/(n_layers+1) factor is 1 for the default depth).
    Reads ``fake_features`` and ``real_features``.
    """

    def __init__(self, weight: float = 1.0, layers: str | int | Sequence[int] = "all") -> None:
        super().__init__(weight)
        if isinstance(layers, str):
            if layers != "all":
                raise ValueError(f"layers must be 'all', an int or a list of indices, got {layers!r}")
        elif isinstance(layers, int):
            if layers < 1:
                raise ValueError(f"layers as a count must be >= 1, got {layers}")
        else:
            layers = [int(i) for i in layers]
            if not layers:
                raise ValueError("layers as a list must name at least one index")
        self.layers = layers

    def _select(self, features: list[Tensor]) -> list[Tensor]:
        before_logits = len(features) - 1
        if self.layers == "all":
            return features[:-1]
        if isinstance(self.layers, int):
            if self.layers > before_logits:
                raise ValueError(
                    f"layers={self.layers} but the scale has {before_logits} features before its logits"
                )
            return features[before_logits - self.layers : before_logits]
        try:
            return [features[i] for i in self.layers]
        except IndexError:
            raise ValueError(
                f"layer indices {self.layers} out of range for {len(features)} features"
            ) from None

    def generator_loss(
        self, fake_features: list[list[Tensor]], real_features: list[list[Tensor]], **_
    ) -> Tensor:
        if len(fake_features) != len(real_features):
            raise ValueError(f"{len(fake_features)} fake vs {len(real_features)} real feature scales")
        per_scale = [
            sum(F.l1_loss(f, r.detach()) for f, r in zip(self._select(fs), self._select(rs), strict=True))
            for fs, rs in zip(fake_features, real_features, strict=True)
        ]
        return sum(per_scale) / len(per_scale)

    def extra_repr(self) -> str:
        return f"weight={self.weight}, layers={self.layers!r}"


__all__ = ["FeatureMatchingLoss"]
