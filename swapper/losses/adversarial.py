"""Adversarial loss on multi-scale discriminator logits (hinge, LSGAN or non-saturating)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from swapper.losses.base import LossTerm

FORMS = ("hinge", "lsgan", "non_saturating")


def _as_list(logits: Tensor | list[Tensor]) -> list[Tensor]:
    return [logits] if isinstance(logits, Tensor) else list(logits)


def _mean_over_scales(per_scale: list[Tensor]) -> Tensor:
    return sum(per_scale) / len(per_scale)


class AdversarialLoss(LossTerm):
    """GAN loss, each scale's logit map averaged, then averaged over scales.

    hinge (SimSwap):           D: relu(1 − r) + relu(1 + f)     G: −f
    lsgan (faceswap-GAN):      D: (r − 1)² + f²                 G: (f − 1)²
    non_saturating (GAN/R1):   D: softplus(−r) + softplus(f)    G: softplus(−f)
    Reads ``fake_logits`` (G and D phases) and ``real_logits`` (D phase); the D phase expects
    logits of a detached fake.
    """

    def __init__(self, weight: float = 1.0, form: str = "hinge") -> None:
        super().__init__(weight)
        if form not in FORMS:
            raise ValueError(f"unknown adversarial form {form!r}; choose one of {FORMS}")
        self.form = form

    def _generator_term(self, f: Tensor) -> Tensor:
        if self.form == "hinge":
            return -f.mean()
        if self.form == "lsgan":
            return (f - 1).square().mean()
        return F.softplus(-f).mean()

    def _discriminator_term(self, r: Tensor, f: Tensor) -> Tensor:
        if self.form == "hinge":
            return F.relu(1 - r).mean() + F.relu(1 + f).mean()
        if self.form == "lsgan":
            return (r - 1).square().mean() + f.square().mean()
        return F.softplus(-r).mean() + F.softplus(f).mean()

    def generator_loss(self, fake_logits: Tensor | list[Tensor], **_) -> Tensor:
        return _mean_over_scales([self._generator_term(f) for f in _as_list(fake_logits)])

    def discriminator_loss(
        self, real_logits: Tensor | list[Tensor], fake_logits: Tensor | list[Tensor], **_
    ) -> Tensor:
        reals, fakes = _as_list(real_logits), _as_list(fake_logits)
        if len(reals) != len(fakes):
            raise ValueError(f"{len(reals)} real vs {len(fakes)} fake logit scales")
        return _mean_over_scales([self._discriminator_term(r, f) for r, f in zip(reals, fakes, strict=True)])

    def extra_repr(self) -> str:
        return f"weight={self.weight}, form={self.form!r}"


__all__ = ["AdversarialLoss"]
