"""The one GAN training step that both face-swap paradigms use.

A subclass builds the step tensors of each side it trains (per-pair: identities ``a`` and ``b``;
identity injection: one side) and calls :meth:`AdversarialModule.train_generator_step`. With
discriminators, that runs a discriminator phase on the detached fakes, then the generator phase
against the updated discriminators; every loss term is logged and the weighted totals too.
Lazy regularisers (gradient penalty, R1) are loss terms that read ``step`` and fire every k-th
step (``swapper.losses.regularizers``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import lightning as L
import numpy as np
import torch
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from swapper.models.generators import SwapGenerator
from swapper.training.common import (
    OptimizerFactory,
    SchedulerFactory,
    loss_dict,
    weighted_sum,
    with_schedulers,
)

MAX_NONFINITE_IN_A_ROW = 20


class AdversarialModule(L.LightningModule):
    """A generator, optional discriminators (one per side), loss terms and optimizers; nothing else.

    Manual optimization: the discriminator phase updates D on detached fakes; the generator phase
    runs with D's weights switched off (``requires_grad`` False: no discriminator weight gradients
    are computed) and reuses the D phase's pass over the real batch. One batch is one
    ``global_step`` whatever the number of optimizers: the discriminator's update goes through the
    strategy's public ``optimizer_step`` (precision plugin, gradient scaling and
    ``on_before_optimizer_step`` included) without Lightning's step counter, which under manual
    optimization counts every ``LightningOptimizer.step`` and would otherwise advance twice per
    batch, halving ``max_steps`` and every step interval.

    ``ema_decay`` keeps an exponential moving average of the generator (``torch.optim.swa_utils``,
    parameters and buffers); :attr:`swap_generator` is the EMA copy whenever the module is in eval
    mode, so validation, previews and exported weights use it.

    ``seed``: every random draw of a training step (augmentation, penalty interpolation) comes from
    a stream seeded by (seed, step, rank) instead of the process's running stream, so a run resumed
    from a checkpoint draws exactly what the uninterrupted run drew (with the step-indexed sampler of
    the data module: bit-identical resume on CPU). ``None``: the running stream.
    """

    def __init__(
        self,
        generator: SwapGenerator,
        losses: Mapping[str, nn.Module],
        optimizer: OptimizerFactory,
        discriminators: Mapping[str, nn.Module] | None = None,
        discriminator_optimizer: OptimizerFactory | None = None,
        scheduler: SchedulerFactory | None = None,
        gradient_clip_val: float | None = None,
        ema_decay: float | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        if discriminators and discriminator_optimizer is None:
            raise ValueError("discriminators need a discriminator_optimizer (optimizer.discriminator)")
        if ema_decay is not None and not 0.0 < ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in (0, 1), got {ema_decay}")
        if gradient_clip_val is not None and gradient_clip_val <= 0:
            raise ValueError(f"gradient_clip_val must be > 0 or null, got {gradient_clip_val}")
        self.automatic_optimization = False
        self.generator = generator
        self.discriminators = nn.ModuleDict(dict(discriminators)) if discriminators else None
        self.losses = loss_dict(losses)
        self.optimizer_factory = optimizer
        self.discriminator_optimizer_factory = discriminator_optimizer
        self.scheduler_factory = scheduler
        self.gradient_clip_val = gradient_clip_val
        self.generator_ema: AveragedModel | None = None
        if ema_decay is not None:
            self.generator_ema = AveragedModel(
                generator.averaged_part(), multi_avg_fn=get_ema_multi_avg_fn(ema_decay), use_buffers=True
            )
            self.generator_ema.requires_grad_(False)
            # the whole generator around the averaged part; a view, not a registered submodule (its
            # weights are the EMA's and the generator's already)
            object.__setattr__(self, "_ema_view", generator.with_averaged(self.generator_ema.module))
        self._nonfinite_in_a_row = 0
        self.seed = seed

    @property
    def swap_generator(self) -> SwapGenerator:
        """The generator to evaluate with: the EMA copy in eval mode when one is kept."""
        if self.generator_ema is not None and not self.training:
            return self._ema_view
        return self.generator

    # ---- the step ----------------------------------------------------------------------------
    @contextmanager
    def step_randomness(self) -> Iterator[None]:
        """Random draws inside come from (seed, step, rank) (see the class docstring)."""
        if self.seed is None:
            yield
            return
        device = self.device
        devices = [device] if device.type == "cuda" else []
        state = np.random.SeedSequence([self.seed, self.global_step, self.global_rank]).generate_state(2)
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(int(state[0]) << 32 | int(state[1]))
            yield

    def train_generator_step(
        self, steps: Mapping[str, dict[str, object]], adversarial_fake: str = "fake", batch_size: int = 1
    ) -> None:
        """Discriminator phase (when there are discriminators), then generator phase, then EMA and
        schedulers. ``steps`` maps each side to its step tensors (``swapper.losses.base``); the
        side's discriminator judges ``step[adversarial_fake]`` against ``step["real"]``."""
        optimizers = self.optimizers()
        optimizers = optimizers if isinstance(optimizers, list) else [optimizers]
        if self.discriminators is not None:
            self._discriminator_phase(steps, adversarial_fake, optimizers[1], batch_size)
        g_total, g_values = weighted_sum(self.losses, "generator", steps.values())
        if g_total is None:
            raise RuntimeError("no configured loss term produced a generator loss")
        self._log_phase("g", g_total, g_values, batch_size, prog_bar=True)
        try:
            updated = self._update(optimizers[0], g_total, counted=True, toggle=False)
        finally:
            if self.discriminators is not None:  # frozen for the generator phase (see _discriminator_phase)
                self.discriminators.requires_grad_(True)
        if updated and self.generator_ema is not None:
            self.generator_ema.update_parameters(self.generator.averaged_part())
        for scheduler in self._schedulers():
            scheduler.step()

    def _discriminator_phase(
        self, steps: Mapping[str, dict[str, object]], adversarial_fake: str, optimizer, batch_size: int
    ) -> None:
        d_steps = []
        for side, step in steps.items():
            disc = self.discriminators[side]
            real, fake = step["real"], step[adversarial_fake].detach()
            real_logits, real_features = disc(real)
            fake_logits, fake_features = disc(fake)
            d_steps.append(
                {
                    **step,
                    "fake": fake,
                    "real_logits": real_logits,
                    "fake_logits": fake_logits,
                    "real_features": real_features,
                    "fake_features": fake_features,
                    "discriminator": disc,
                }
            )
        d_total, d_values = weighted_sum(self.losses, "discriminator", d_steps)
        if d_total is not None:
            self._update(optimizer, d_total, counted=False, toggle=True)
            self._log_phase("d", d_total, d_values, batch_size)
        # how well D separates real from fake: mean logit over scales and sides
        self.log("train/d/real_score", _mean_logit(s["real_logits"] for s in d_steps), batch_size=batch_size)
        self.log("train/d/fake_score", _mean_logit(s["fake_logits"] for s in d_steps), batch_size=batch_size)
        # The generator phase: the updated D's view of the attached fakes. D's weights are switched off
        # before that forward, so its backward computes no discriminator weight gradients at all; the
        # real side reuses the D phase's pass (detached: constant targets for feature matching).
        self.discriminators.requires_grad_(False)
        for (side, step), d_step in zip(steps.items(), d_steps, strict=True):
            disc = self.discriminators[side]
            fake_logits, fake_features = disc(step[adversarial_fake])
            step.update(
                fake_logits=fake_logits,
                fake_features=fake_features,
                real_logits=_detached(d_step["real_logits"]),
                real_features=_detached(d_step["real_features"]),
                discriminator=disc,
            )

    def _update(self, optimizer, loss: Tensor, counted: bool, toggle: bool) -> bool:
        """Backward and step one network's optimizer (``toggle``: the other networks' parameters are
        switched off). A non-finite loss never reaches the weights: the step is skipped and
        NaNGuard, which sees the logged value, stops the run with the last good checkpoint intact."""
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
        else:  # the same path as LightningOptimizer.step, minus the step counter (see the class docstring)
            self.trainer.strategy.optimizer_step(optimizer.optimizer, _no_closure, self)
        if toggle:
            self.untoggle_optimizer(optimizer)
        return True

    def on_before_optimizer_step(self, optimizer) -> None:
        # Lightning calls this after unscaling 16-mixed gradients, so the clip sees true norms
        if self.gradient_clip_val:
            self.clip_gradients(
                optimizer, gradient_clip_val=self.gradient_clip_val, gradient_clip_algorithm="norm"
            )

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["nonfinite_in_a_row"] = self._nonfinite_in_a_row

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self._nonfinite_in_a_row = int(checkpoint.get("nonfinite_in_a_row", 0))

    def _schedulers(self) -> list:
        schedulers = self.lr_schedulers()
        if schedulers is None:
            return []
        return schedulers if isinstance(schedulers, list) else [schedulers]

    def _log_phase(
        self, phase: str, total: Tensor, values: dict[str, Tensor], batch_size: int, prog_bar: bool = False
    ) -> None:
        self.log(f"train/{phase}/total", total.detach(), prog_bar=prog_bar, batch_size=batch_size)
        for name, value in values.items():
            self.log(f"train/{phase}/{name}", value, batch_size=batch_size)

    def configure_optimizers(self):
        # a loss term may train a network of its own with the generator (e.g. the expression estimator);
        # frozen networks (VGGFace, ArcFace) have requires_grad off and stay out
        trained_by_losses = [p for p in self.losses.parameters() if p.requires_grad]
        optimizers = [self.optimizer_factory([*self.generator.parameters(), *trained_by_losses])]
        if self.discriminators is not None:
            optimizers.append(self.discriminator_optimizer_factory(self.discriminators.parameters()))
        return with_schedulers(optimizers, self.scheduler_factory)


def _detached(value):
    """A nested list of tensors (per scale, per layer), detached."""
    if isinstance(value, list | tuple):
        return [_detached(v) for v in value]
    return value.detach()


def _no_closure() -> None:
    return None


def _mean_logit(per_side_logits) -> Tensor:
    return torch.stack([scale.detach().mean() for scales in per_side_logits for scale in scales]).mean()


__all__ = ["MAX_NONFINITE_IN_A_ROW", "AdversarialModule"]
