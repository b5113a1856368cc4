"""Expression kept across the swap, for per-pair models on real faces (``loss=expression``).

A per-pair decoder only ever sees its own person, so fed the other person's face it tends to draw
its person's habitual expression. This term measures the expression of each swap with a small
estimator (``swapper.models.expression``) and pulls it towards the input's: the data gives each crop
its six landmark expression measures standardised over its own person
(``PairFolderDataset(with_expression=True)``), so "A with her eyes wider than usual" asks for "B with
her eyes wider than usual", not for A's eye shape.

The estimator is trained in the same run, on the real crops and on the detached reconstructions
(labelled with their input's measures, so it also reads decoder-drawn faces); the swap term reaches
the generator only: the estimator's weights enter it detached, so it cannot learn to agree with the
generator. Before ``start_step`` the swap term is off while the estimator learns.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from swapper.losses.base import LossTerm


class ExpressionLoss(LossTerm):
    """fit + keep: fit = smooth-L1 of ``network`` on ``real`` and detached ``fake`` vs ``expression``
    (trains the network only); keep = L1 of the frozen-weight ``network`` on ``translated`` vs
    ``translated_expression``, the expression of the face it was made from (trains the generator only).

    Reads ``fake``, ``real``, ``expression``, ``translated``, ``translated_expression`` and ``step``.
    Rows whose expression is NaN (crops without 68 landmarks) are left out.
    """

    def __init__(self, network: nn.Module, weight: float = 1.0, start_step: int = 0) -> None:
        super().__init__(weight)
        if start_step < 0:
            raise ValueError(f"start_step must be >= 0, got {start_step}")
        self.network = network
        self.start_step = int(start_step)

    def reads_translation(self, step: int) -> bool:
        """Whether the module must make the swaps (``translated``) at ``step``: from ``start_step`` on."""
        return step >= self.start_step

    def generator_loss(
        self,
        fake: Tensor,
        real: Tensor,
        expression: Tensor | None = None,
        translated: Tensor | None = None,
        translated_expression: Tensor | None = None,
        step: int = 0,
        **_,
    ) -> Tensor:
        if expression is None:
            raise ValueError(
                "loss=expression needs the crops' expression measures: data.train.with_expression=true "
                "(real crops extracted with 68-point landmarks)"
            )
        expression = expression.detach()  # data: never trained
        known = torch.isfinite(expression).all(1)
        images = torch.cat([real[known], fake[known]]).detach()
        target = expression[known].repeat(2, 1)
        fit = F.smooth_l1_loss(self.network(images), target, beta=0.1) if len(target) else fake.sum() * 0
        if step < self.start_step:
            return fit
        if translated is None or translated_expression is None:
            raise ValueError("ExpressionLoss needs `translated` and `translated_expression` (per-pair)")
        translated_expression = translated_expression.detach()
        known = torch.isfinite(translated_expression).all(1)
        if not known.any():
            return fit
        frozen = {name: p.detach() for name, p in self.network.named_parameters()}
        predicted = functional_call(self.network, frozen, (translated[known],))
        return fit + (predicted - translated_expression[known]).abs().mean()

    def extra_repr(self) -> str:
        return f"weight={self.weight}, start_step={self.start_step}"


__all__ = ["ExpressionLoss"]
