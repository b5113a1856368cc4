"""Discriminator gradient penalties: WGAN-GP on interpolates and R1 on reals, both lazy-capable.

With ``interval = k`` a penalty is computed only when ``step % k == 0`` and then returned times
``k``, so its average strength is unchanged (StyleGAN2's lazy regularisation); on other steps it
returns ``None``. Both re-run ``discriminator`` and build the graph of the input gradient
(``create_graph=True``) so the penalty back-propagates into D's parameters. With a BatchNorm
discriminator the per-sample gradients mix across the batch; the penalty is then approximate
(SimSwap uses it this way).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from swapper.losses.base import LossTerm


def _logit_sum(discriminator: nn.Module, x: Tensor) -> Tensor:
    """Sum of every logit of every scale: its input gradient is the sum of the per-logit gradients."""
    logits, _ = discriminator(x)
    if isinstance(logits, Tensor):
        logits = [logits]
    return sum(scale.sum() for scale in logits)


def _input_gradient(discriminator: nn.Module, x: Tensor) -> Tensor:
    x = x.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(_logit_sum(discriminator, x), x, create_graph=True)
    return grad.flatten(1)  # (B, C·H·W)


class _LazyPenalty(LossTerm):
    def __init__(self, weight: float, interval: int) -> None:
        super().__init__(weight)
        if interval < 1:
            raise ValueError(f"interval must be >= 1, got {interval}")
        self.interval = int(interval)

    def _due(self, step: int | None) -> bool:
        if self.interval == 1:
            return True
        if step is None:
            raise ValueError(f"{type(self).__name__} with interval={self.interval} needs the `step`")
        return int(step) % self.interval == 0

    def extra_repr(self) -> str:
        return f"weight={self.weight}, interval={self.interval}"


class GradientPenalty(_LazyPenalty):
    """WGAN-GP: E[(‖∇ₓ D(x̂)‖₂ − target)²], x̂ = α·real + (1 − α)·fake, α ~ U(0, 1) per sample.

    Reads ``real``, ``fake`` (both detached here), ``discriminator`` and ``step``.
    """

    def __init__(self, weight: float = 1.0, interval: int = 1, target: float = 1.0) -> None:
        super().__init__(weight, interval)
        self.target = float(target)

    def discriminator_loss(
        self, real: Tensor, fake: Tensor, discriminator: nn.Module, step: int | None = None, **_
    ) -> Tensor | None:
        if not self._due(step):
            return None
        real, fake = real.detach(), fake.detach()
        alpha = torch.rand(real.shape[0], *([1] * (real.dim() - 1)), device=real.device, dtype=real.dtype)
        mixed = alpha * real + (1 - alpha) * fake  # (B, C, H, W)
        grad_norm = _input_gradient(discriminator, mixed).norm(dim=1)  # (B,)
        return self.interval * (grad_norm - self.target).square().mean()


class R1Penalty(_LazyPenalty):
    """R1: E[‖∇ₓ D(real)‖₂²] (Mescheder et al. 2018), returned without the γ/2 factor.

    Set ``weight = γ / 2`` in YAML (StyleGAN2's γ = 10 → weight 5). Reads ``real``,
    ``discriminator`` and ``step``.
    """

    def __init__(self, weight: float = 1.0, interval: int = 1) -> None:
        super().__init__(weight, interval)

    def discriminator_loss(
        self, real: Tensor, discriminator: nn.Module, step: int | None = None, **_
    ) -> Tensor | None:
        if not self._due(step):
            return None
        return self.interval * _input_gradient(discriminator, real).square().sum(dim=1).mean()


__all__ = ["GradientPenalty", "R1Penalty"]
