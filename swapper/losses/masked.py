"""Pixel reconstruction inside the face: L1 / L2 between ``fake`` and ``real`` weighted per pixel.

The weights come from the data (step key ``weights``, see ``swapper.losses.base``): 1 inside the landmark
face hull, the eyes and mouth multiplied by their priority, a small weight on the background. So the
priority multipliers are data options, and the same term serves any weighting.
"""

from __future__ import annotations

from torch import Tensor

from swapper.losses.base import LossTerm

DISTANCES = ("l1", "l2")


def weighted_mean(values: Tensor, weights: Tensor | None) -> Tensor:
    """Σ w·v / Σ w over the batch for (B, C, H, W) ``values`` and (B, 1, H, W) ``weights`` >= 0 shared by
    the channels; the plain mean when ``weights`` is None. All-zero weights give 0."""
    if weights is None:
        return values.mean()
    b, c, h, w = values.shape
    if weights.shape != (b, 1, h, w):
        raise ValueError(
            f"weights must be (B, 1, H, W) = {(b, 1, h, w)} for these images, got {tuple(weights.shape)}"
        )
    weights = weights.detach().to(values.dtype)  # data: never trained
    return (values * weights).sum() / (weights.sum() * c).clamp_min(1e-8)


class MaskedPixelLoss(LossTerm):
    """Mean absolute (``l1``) or squared (``l2``) error weighted by the step's ``weights``.

    With weights w it is Σ w·|fake − real| / Σ w (each pixel's weight shared by its channels), so the
    value stays on the scale of a plain mean whatever the priorities. A step without ``weights`` (data
    without landmarks, e.g. the synthetic default) gives the plain mean, i.e. :class:`L1Loss`/``L2Loss``.
    Reads ``fake``, ``real`` and ``weights``.
    """

    def __init__(self, weight: float = 1.0, distance: str = "l1") -> None:
        super().__init__(weight)
        if distance not in DISTANCES:
            raise ValueError(f"distance must be one of {DISTANCES}, got {distance!r}")
        self.distance = distance

    def generator_loss(self, fake: Tensor, real: Tensor, weights: Tensor | None = None, **_) -> Tensor:
        error = fake - real.detach()  # the target is data, never trained
        error = error.abs() if self.distance == "l1" else error.square()
        return weighted_mean(error, weights)

    def extra_repr(self) -> str:
        return f"weight={self.weight}, distance={self.distance}"


__all__ = ["MaskedPixelLoss", "weighted_mean"]
