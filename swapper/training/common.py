"""Wiring shared by every training module: loss bookkeeping and optimizer construction."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import torch
from torch import Tensor, nn

from swapper.losses.base import LossTerm

OptimizerFactory = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]
SchedulerFactory = Callable[[torch.optim.Optimizer], torch.optim.lr_scheduler.LRScheduler]


def with_schedulers(optimizers: list[torch.optim.Optimizer], scheduler: SchedulerFactory | None):
    """``configure_optimizers``' return value: the optimizers, each with the scheduler stepped every
    training step when one is configured."""
    if scheduler is None:
        return optimizers
    return optimizers, [{"scheduler": scheduler(opt), "interval": "step"} for opt in optimizers]


def loss_dict(losses: Mapping[str, nn.Module] | None) -> nn.ModuleDict:
    """Validate the configured loss terms (a name → :class:`LossTerm` mapping from YAML)."""
    terms = dict(losses or {})
    if not terms:
        raise ValueError("no loss terms configured: select at least one, e.g. `loss=l1`")
    for name, term in terms.items():
        if not isinstance(term, LossTerm):
            raise TypeError(f"loss {name!r} is a {type(term).__name__}, not a swapper LossTerm")
    return nn.ModuleDict(terms)


def weighted_sum(
    losses: nn.ModuleDict, phase: str, steps: Iterable[Mapping[str, object]]
) -> tuple[Tensor | None, dict[str, Tensor]]:
    """Run every term's ``phase`` ("generator" or "discriminator") over the steps (one per side).

    Returns the weighted total (``None`` when no term contributes) and each term's raw value,
    summed over the steps, for logging.
    """
    steps = list(steps)
    total: Tensor | None = None
    values: dict[str, Tensor] = {}
    for name, term in losses.items():
        fn = term.generator_loss if phase == "generator" else term.discriminator_loss
        parts = [v for v in (fn(**step) for step in steps) if v is not None]
        if not parts:
            continue
        value = torch.stack(parts).sum()
        values[name] = value.detach()
        total = term.weight * value if total is None else total + term.weight * value
    return total, values
