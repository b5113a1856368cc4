"""Pixel reconstruction terms: L1 and L2 between ``fake`` and ``real``."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from swapper.losses.base import LossTerm


def _masked_mean(per_sample: Tensor, same_identity: Tensor | None) -> Tensor:
    """Mean over samples; with a same-identity flag, only over flagged samples (0 if none)."""
    if same_identity is None:
        return per_sample.mean()
    keep = same_identity.to(per_sample.dtype)
    return (per_sample * keep).sum() / keep.sum().clamp_min(1.0)


class L1Loss(LossTerm):
    """Mean absolute error. With ``same_identity_only`` it counts only same-person pairs (SimSwap)."""

    def __init__(self, weight: float = 1.0, same_identity_only: bool = False) -> None:
        super().__init__(weight)
        self.same_identity_only = same_identity_only

    def generator_loss(self, fake: Tensor, real: Tensor, same_identity: Tensor | None = None, **_) -> Tensor:
        per_sample = (fake - real.detach()).abs().flatten(1).mean(1)  # the target is data, never trained
        return _masked_mean(per_sample, same_identity if self.same_identity_only else None)


class L2Loss(LossTerm):
    """Mean squared error, with the same same-identity option as :class:`L1Loss`."""

    def __init__(self, weight: float = 1.0, same_identity_only: bool = False) -> None:
        super().__init__(weight)
        self.same_identity_only = same_identity_only

    def generator_loss(self, fake: Tensor, real: Tensor, same_identity: Tensor | None = None, **_) -> Tensor:
        per_sample = F.mse_loss(fake, real.detach(), reduction="none").flatten(1).mean(1)
        return _masked_mean(per_sample, same_identity if self.same_identity_only else None)


__all__ = ["L1Loss", "L2Loss"]
