"""Cycle consistency (CycleGAN): ‖G_BA(G_AB(a)) − a‖₁."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from swapper.losses.base import LossTerm


class CycleLoss(LossTerm):
    """Mean absolute error between ``cycled`` (A→B→A) and ``input``."""

    def generator_loss(self, cycled: Tensor | None = None, input: Tensor | None = None, **_) -> Tensor:
        if cycled is None or input is None:
            raise ValueError("CycleLoss needs `cycled` and `input`: use it with a module that runs the cycle")
        return F.l1_loss(cycled, input.detach())


__all__ = ["CycleLoss"]
