"""Structural dissimilarity between ``fake`` and ``real``."""

from __future__ import annotations

from kornia.losses import ssim_loss
from torch import Tensor

from swapper.losses.base import LossTerm


class SSIMLoss(LossTerm):
    """kornia's DSSIM, mean of (1 − SSIM) / 2 over a Gaussian window: 0 for identical images.

    Images are in [0, 1] (``max_val = 1``). Reads ``fake`` and ``real``.
    """

    def __init__(self, weight: float = 1.0, window_size: int = 11) -> None:
        super().__init__(weight)
        if window_size < 1 or window_size % 2 == 0:
            raise ValueError(f"window_size must be a positive odd number, got {window_size}")
        self.window_size = int(window_size)

    def generator_loss(self, fake: Tensor, real: Tensor, **_) -> Tensor:
        return ssim_loss(fake, real.detach(), self.window_size, max_val=1.0)

    def extra_repr(self) -> str:
        return f"weight={self.weight}, window_size={self.window_size}"


__all__ = ["SSIMLoss"]
