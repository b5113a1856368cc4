"""Supervision of a predicted alpha mask by the landmark face hull (DeepFaceLab's learned mask)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from swapper.losses.base import LossTerm

DISTANCES = ("l1", "l2", "bce")


class LearnedMaskLoss(LossTerm):
    """Distance between the decoder's ``mask`` and the data's ``face_mask``, both (B, 1, H, W) in [0, 1].

    ``l2`` is DeepFaceLab's (mean squared error, weight 10 in SAEHD), ``l1`` the mean absolute error,
    ``bce`` the binary cross-entropy. Unlike the ``mask`` regulariser (small, smooth masks, no target) this
    says where the face is. Both keys are required: a step without ``mask`` has an RGB decoder, one without
    ``face_mask`` data without landmarks.
    """

    def __init__(self, weight: float = 1.0, distance: str = "l2") -> None:
        super().__init__(weight)
        if distance not in DISTANCES:
            raise ValueError(f"distance must be one of {DISTANCES}, got {distance!r}")
        self.distance = distance

    def generator_loss(self, mask: Tensor | None = None, face_mask: Tensor | None = None, **_) -> Tensor:
        if mask is None:
            raise ValueError(
                "learned_mask supervises a predicted mask, but this generator predicts none: use an RGBA "
                "decoder (e.g. decoder=deepfakes_rgba_lite, or liae_rgba_lite with module=liae)"
            )
        if face_mask is None:
            raise ValueError(
                "learned_mask needs the landmark face mask (face_mask) of the data: train on extracted faces "
                "whose landmarks are recorded (data=pairs), or drop the term"
            )
        if face_mask.shape != mask.shape:
            raise ValueError(
                f"face_mask {tuple(face_mask.shape)} and mask {tuple(mask.shape)} differ in shape"
            )
        target = face_mask.detach().to(mask.dtype)  # data: never trained
        if self.distance == "l1":
            return (mask - target).abs().mean()
        if self.distance == "l2":
            return (mask - target).square().mean()
        # BCE on probabilities is refused under autocast: compute it in float32
        with torch.autocast(device_type=mask.device.type, enabled=False):
            return F.binary_cross_entropy(mask.float(), target.float())

    def extra_repr(self) -> str:
        return f"weight={self.weight}, distance={self.distance}"


__all__ = ["LearnedMaskLoss"]
