"""Alpha-mask regulariser (faceswap-GAN): keep the mask small and smooth."""

from __future__ import annotations

from kornia.losses import total_variation
from torch import Tensor

from swapper.losses.base import LossTerm


class MaskLoss(LossTerm):
    """``mean_weight · mean|mask| + tv_weight · TV(mask)``, TV averaged per pixel.

    The L1 term pushes the decoder to change only what it must; the total variation (mean
    absolute difference between vertical and horizontal neighbours, summed over the two
    directions) keeps the mask free of speckle. Reads ``mask`` (B, 1, H, W); ``None`` → no term.
    """

    def __init__(self, weight: float = 1.0, mean_weight: float = 1.0, tv_weight: float = 0.1) -> None:
        super().__init__(weight)
        self.mean_weight = float(mean_weight)
        self.tv_weight = float(tv_weight)

    def generator_loss(self, mask: Tensor | None = None, **_) -> Tensor | None:
        if mask is None:
            return None
        tv = total_variation(mask, reduction="mean").mean()  # (B, C) per-pixel means → scalar
        return self.mean_weight * mask.abs().mean() + self.tv_weight * tv

    def extra_repr(self) -> str:
        return f"weight={self.weight}, mean_weight={self.mean_weight}, tv_weight={self.tv_weight}"


__all__ = ["MaskLoss"]
