"""Structural dissimilarity (DSSIM) and multi-scale SSIM, weighted per pixel like the masked losses.

Both take kornia's per-pixel map and average it with the step's ``weights`` (``weighted_mean``): the
SSIM map is masked, not the images. A map pixel sees a window of the images around it, so gradients
reach ``fake`` up to the window's radius outside the weighted region, never further.
"""

from __future__ import annotations

from collections.abc import Sequence

from kornia.losses import MS_SSIMLoss, ssim_loss
from torch import Tensor

from swapper.losses.base import LossTerm
from swapper.losses.masked import weighted_mean
from swapper.losses.ssim import SSIMLoss


class DSSIMLoss(SSIMLoss):
    """kornia's DSSIM map, (1 − SSIM) / 2 over a Gaussian window, averaged with the step's ``weights``.

    Without ``weights`` it equals :class:`~swapper.losses.ssim.SSIMLoss`. Gradients reach ``fake`` at most
    ``window_size // 2`` px outside the weighted region. Reads ``fake``, ``real`` and ``weights``.
    """

    def generator_loss(self, fake: Tensor, real: Tensor, weights: Tensor | None = None, **_) -> Tensor:
        dissimilarity = ssim_loss(fake, real.detach(), self.window_size, max_val=1.0, reduction="none")
        return weighted_mean(dissimilarity, weights)  # (B, C, H, W) map


class MSSSIMLoss(LossTerm):
    """Multi-scale SSIM loss (Zhao et al. 2017, kornia ``MS_SSIMLoss``), weighted by the step's ``weights``.

    The map is ``1 − l_M · Π_j cs_j`` per pixel, one Gaussian of std ``sigmas[j]`` per scale, all at full
    resolution (not Wang's pyramid), so it runs at any crop size (64 px and up, or smaller). kornia zero-pads
    by ``2 · sigmas[-1]`` px, which biases a band that wide along the border; the face weights keep the band
    mostly out of the loss. Gradients reach ``fake`` at most ``int(2 · sigmas[-1])`` px outside the weighted
    region. ``alpha < 1`` mixes in the Gaussian-filtered L1 of the paper: ``alpha · (1 − MS-SSIM) +
    (1 − alpha) · G * |fake − real|`` (the paper's 0.84); 1 is MS-SSIM alone. Reads ``fake``, ``real``,
    ``weights``.
    """

    def __init__(
        self, weight: float = 1.0, sigmas: Sequence[float] = (0.5, 1.0, 2.0, 4.0, 8.0), alpha: float = 1.0
    ) -> None:
        super().__init__(weight)
        if not sigmas or min(sigmas) <= 0:
            raise ValueError(f"sigmas must be positive Gaussian stds, coarsest last, got {list(sigmas)}")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        self.sigmas = tuple(float(s) for s in sigmas)
        self.alpha = float(alpha)
        self.criterion = MS_SSIMLoss(
            self.sigmas, data_range=1.0, alpha=self.alpha, compensation=1.0, reduction="none"
        )

    def generator_loss(self, fake: Tensor, real: Tensor, weights: Tensor | None = None, **_) -> Tensor:
        return weighted_mean(self.criterion(fake, real.detach()).unsqueeze(1), weights)  # (B, 1, H, W) map

    def extra_repr(self) -> str:
        return f"weight={self.weight}, sigmas={list(self.sigmas)}, alpha={self.alpha}"


__all__ = ["DSSIMLoss", "MSSSIMLoss"]
