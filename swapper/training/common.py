"""Wiring shared by the training modules: loss bookkeeping and optimizer construction."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import torch
from torch import Tensor, nn

from swapper.losses.base import LossTerm

OptimizerFactory = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]
SchedulerFactory = Callable[[torch.optim.Optimizer], torch.optim.lr_scheduler.LRScheduler]


def step_uncounted(optimizer) -> None:
    """Step a Lightning optimizer without advancing ``trainer.global_step``.

    Under manual optimization Lightning counts every optimizer step, so a discriminator step plus
    a generator step would advance ``global_step`` by 2 per batch and silently halve
    ``max_steps``, checkpoint and preview intervals. Only the generator step counts here, so one
    batch is one step whatever the number of optimizers. (Uses Lightning's step hooks.)
    """
    hooks = optimizer._on_before_step, optimizer._on_after_step
    optimizer._on_before_step = optimizer._on_after_step = _nothing
    try:
        optimizer.step()
    finally:
        optimizer._on_before_step, optimizer._on_after_step = hooks


def _nothing() -> None:
    return None


MAX_NONFINITE_IN_A_ROW = 20


class ManualOptimizationHooks:
    """What both GAN-capable LightningModules share under manual optimization."""

    gradient_clip_val: float | None
    _nonfinite_in_a_row: int = 0

    def _update(self, optimizer, loss: Tensor, counted: bool, toggle: bool) -> bool:
        """Backward and step one network's optimizer (with ``toggle``, the other network's
        parameters are switched off). A non-finite loss never reaches the weights: the step is
        skipped and NaNGuard, which sees the logged value, stops the run with the last good
        checkpoint intact. ``counted=False`` keeps ``global_step`` at one per batch."""
        if not torch.isfinite(loss):
            self._nonfinite_in_a_row += 1
            if self._nonfinite_in_a_row > MAX_NONFINITE_IN_A_ROW:  # no NaNGuard configured: do not spin
                raise FloatingPointError(
                    f"{self._nonfinite_in_a_row} non-finite losses in a row at step {self.global_step}"
                )
            return False
        self._nonfinite_in_a_row = 0
        if toggle:
            self.toggle_optimizer(optimizer)
        optimizer.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        if counted:
            optimizer.step()
        else:
            step_uncounted(optimizer)
        if toggle:
            self.untoggle_optimizer(optimizer)
        return True

    def on_before_optimizer_step(self, optimizer) -> None:
        # Lightning calls this after unscaling 16-mixed gradients, so the clip sees true norms
        if self.gradient_clip_val:
            self.clip_gradients(
                optimizer, gradient_clip_val=self.gradient_clip_val, gradient_clip_algorithm="norm"
            )

    def _schedulers(self) -> list:
        schedulers = self.lr_schedulers()
        if schedulers is None:
            return []
        return schedulers if isinstance(schedulers, list) else [schedulers]


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
