"""The per-pair paradigm (Deepfakes, faceswap-GAN, CycleGAN-style): one shared encoder, a decoder
per identity, optionally a discriminator per identity. Holds no layers, only wiring."""

from __future__ import annotations

from collections.abc import Mapping

import lightning as L
import torch
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torchmetrics import MeanAbsoluteError
from torchmetrics.image import PeakSignalNoiseRatio

from swapper.data.augmentation import PairAugmentation
from swapper.models.decoders import split_rgba
from swapper.training.common import (
    ManualOptimizationHooks,
    OptimizerFactory,
    SchedulerFactory,
    loss_dict,
    weighted_sum,
    with_schedulers,
)

SIDES = ("a", "b")
OTHER = {"a": "b", "b": "a"}


class PerPairAutoencoder(ManualOptimizationHooks, L.LightningModule):
    """Train ``decoder_X(encoder(warp(x))) ≈ x`` for both identities; swap = the other decoder.

    Manual optimization: when discriminators are given, each step runs a discriminator phase
    (on detached fakes) and then a generator phase. ``adversarial_on`` chooses what the
    discriminator of identity X sees as fake: X's own reconstructions (faceswap-GAN) or the
    other identity's faces translated into X (CycleGAN-style). ``cycle`` adds the A→B→A and
    B→A→B round trips that a cycle-consistency term reads as ``cycled``.
    """

    def __init__(
        self,
        encoder: nn.Module,
        decoder_a: nn.Module,
        decoder_b: nn.Module,
        losses: Mapping[str, nn.Module],
        optimizer: OptimizerFactory,
        augmentation: nn.Module | None = None,
        discriminator_a: nn.Module | None = None,
        discriminator_b: nn.Module | None = None,
        discriminator_optimizer: OptimizerFactory | None = None,
        scheduler: SchedulerFactory | None = None,
        adversarial_on: str = "reconstruction",
        cycle: bool = False,
        gradient_clip_val: float | None = None,
        ema_decay: float | None = None,
    ) -> None:
        super().__init__()
        if adversarial_on not in ("reconstruction", "swap"):
            raise ValueError(f"adversarial_on must be 'reconstruction' or 'swap', got {adversarial_on!r}")
        if (discriminator_a is None) != (discriminator_b is None):
            raise ValueError("give a discriminator for both identities or for neither")
        if discriminator_a is not None and discriminator_optimizer is None:
            raise ValueError("discriminators need a discriminator_optimizer")
        if ema_decay is not None and not 0.0 < ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in (0, 1), got {ema_decay}")
        self.automatic_optimization = False
        self.encoder = encoder
        self.decoders = nn.ModuleDict({"a": decoder_a, "b": decoder_b})
        self.discriminators = (
            nn.ModuleDict({"a": discriminator_a, "b": discriminator_b})
            if discriminator_a is not None
            else None
        )
        self.losses = loss_dict(losses)
        self.augmentation = augmentation if augmentation is not None else PairAugmentation()
        self.optimizer_factory = optimizer
        self.discriminator_optimizer_factory = discriminator_optimizer
        self.scheduler_factory = scheduler
        self.adversarial_on = adversarial_on
        self.cycle = cycle
        self.gradient_clip_val = gradient_clip_val
        # An exponential moving average of the generator (encoder + decoders): smoother results,
        # used for validation, previews and inference whenever the module is in eval mode.
        self.ema = None
        if ema_decay is not None:
            generator = nn.ModuleDict({"encoder": self.encoder, "decoders": self.decoders})
            self.ema = AveragedModel(
                generator, multi_avg_fn=get_ema_multi_avg_fn(ema_decay), use_buffers=True
            )
            self.ema.requires_grad_(False)
        self.val_rec_l1 = MeanAbsoluteError()
        self.val_swap_l1 = MeanAbsoluteError()
        self.val_swap_psnr = PeakSignalNoiseRatio(data_range=1.0)
        self.val_baseline_l1 = MeanAbsoluteError()
        self.val_baseline_psnr = PeakSignalNoiseRatio(data_range=1.0)

    # ---- the model as users call it -------------------------------------------------------
    def decode(
        self, faces: Tensor, identity: str, background: Tensor | None = None
    ) -> tuple[Tensor, Tensor | None]:
        """Encode ``faces`` and decode them as ``identity``; an RGBA decoder's mask composites the
        colour over ``background`` (default: the input faces). Returns (image, mask or None)."""
        encoder, decoders = self.encoder, self.decoders
        if self.ema is not None and not self.training:
            encoder, decoders = self.ema.module["encoder"], self.ema.module["decoders"]
        rgb, mask = split_rgba(decoders[identity](encoder(faces)))
        if mask is None:
            return rgb, None
        background = faces if background is None else background
        return mask * rgb + (1 - mask) * background, mask

    def swap(self, faces: Tensor, direction: str = "a2b") -> Tensor:
        """Swap aligned faces of one identity into the other (``a2b`` or ``b2a``)."""
        if direction not in ("a2b", "b2a"):
            raise ValueError(f"direction must be 'a2b' or 'b2a', got {direction!r}")
        return self.decode(faces, direction[-1])[0]

    def forward(self, faces: Tensor, direction: str = "a2b") -> Tensor:
        return self.swap(faces, direction)

    def preview_rows(self, batch: Mapping[str, Tensor]) -> list[tuple[str, Tensor]]:
        """Labelled rows of the preview grid for a fixed batch (see SwapPreview)."""
        a, b = batch["a"], batch["b"]
        return [
            ("A", a),
            ("A→A", self.decode(a, "a")[0]),
            ("A→B", self.swap(a, "a2b")),
            ("B", b),
            ("B→B", self.decode(b, "b")[0]),
            ("B→A", self.swap(b, "b2a")),
        ]

    # ---- training ---------------------------------------------------------------------------
    def _steps(self, batch: Mapping[str, Tensor]) -> dict[str, dict[str, object]]:
        """Forward both identities and collect the named tensors that the loss terms read."""
        steps: dict[str, dict[str, object]] = {}
        for side in SIDES:
            with torch.no_grad():
                warped, target = self.augmentation(batch[side])
            fake, mask = self.decode(warped, side)
            if fake.shape != target.shape:
                raise ValueError(
                    f"the decoder makes {tuple(fake.shape[-2:])} images from "
                    f"{tuple(target.shape[-2:])} faces: "
                    "encoder latent_size × 2 × the decoder's upsampling must equal image_size"
                )
            steps[side] = {
                "fake": fake,
                "real": target,
                "input": target,
                "mask": mask,
                "step": self.global_step,
            }
        if self.cycle or (self.discriminators is not None and self.adversarial_on == "swap"):
            for side in SIDES:
                other = OTHER[side]
                translated = self.decode(steps[side]["real"], other)[0]  # side → other
                steps[other]["translated"] = translated  # a face of `other` made from `side`
                if self.cycle:
                    steps[side]["cycled"] = self.decode(translated, side)[0]
        return steps

    def _adversarial_fake(self, step: Mapping[str, object]) -> Tensor:
        return step["translated"] if self.adversarial_on == "swap" else step["fake"]

    def training_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> None:
        optimizers = self.optimizers()
        optimizers = optimizers if isinstance(optimizers, list) else [optimizers]
        opt_g = optimizers[0]
        steps = self._steps(batch)

        if self.discriminators is not None:
            opt_d = optimizers[1]
            d_steps = []
            for side in SIDES:
                disc = self.discriminators[side]
                real, fake = steps[side]["real"], self._adversarial_fake(steps[side]).detach()
                real_logits, _ = disc(real)
                fake_logits, _ = disc(fake)
                d_steps.append(
                    {
                        "real": real,
                        "fake": fake,
                        "real_logits": real_logits,
                        "fake_logits": fake_logits,
                        "discriminator": disc,
                        "step": self.global_step,
                    }
                )
            d_total, d_values = weighted_sum(self.losses, "discriminator", d_steps)
            if d_total is not None:
                self._update(opt_d, d_total, counted=False, toggle=True)
                self._log_phase("d", d_total, d_values)
            # how well D separates real from fake (mean logit over scales and both identities)
            self.log("train/d/real_score", _mean_logit(s["real_logits"] for s in d_steps))
            self.log("train/d/fake_score", _mean_logit(s["fake_logits"] for s in d_steps))
            for side in SIDES:  # the generator phase needs D's view of the (attached) fakes
                disc = self.discriminators[side]
                fake_logits, fake_features = disc(self._adversarial_fake(steps[side]))
                with torch.no_grad():
                    real_logits, real_features = disc(steps[side]["real"])
                steps[side].update(
                    fake_logits=fake_logits,
                    fake_features=fake_features,
                    real_logits=real_logits,
                    real_features=real_features,
                )

        g_total, g_values = weighted_sum(self.losses, "generator", steps.values())
        if g_total is None:
            raise RuntimeError("no configured loss term produced a generator loss")
        self._log_phase("g", g_total, g_values, prog_bar=True)
        if (
            self._update(opt_g, g_total, counted=True, toggle=self.discriminators is not None)
            and self.ema is not None
        ):
            self.ema.update_parameters(nn.ModuleDict({"encoder": self.encoder, "decoders": self.decoders}))
        for scheduler in self._schedulers():
            scheduler.step()

    def _log_phase(
        self, phase: str, total: Tensor, values: dict[str, Tensor], prog_bar: bool = False
    ) -> None:
        self.log(f"train/{phase}/total", total.detach(), prog_bar=prog_bar)
        for name, value in values.items():
            self.log(f"train/{phase}/{name}", value)

    # ---- validation ----------------------------------------------------------------------
    def validation_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> None:
        a, b = batch["a"], batch["b"]
        self.val_rec_l1.update(torch.cat([self.decode(a, "a")[0], self.decode(b, "b")[0]]), torch.cat([a, b]))
        self.log("val/rec_l1", self.val_rec_l1, prog_bar=True)
        if "a2b_truth" in batch:
            swapped = torch.cat([self.swap(a, "a2b"), self.swap(b, "b2a")])
            truth = torch.cat([batch["a2b_truth"], batch["b2a_truth"]])
            unchanged = torch.cat([a, b])  # the no-swap baseline: return the input as it is
            self.val_swap_l1.update(swapped, truth)
            self.val_swap_psnr.update(swapped, truth)
            self.val_baseline_l1.update(unchanged, truth)
            self.val_baseline_psnr.update(unchanged, truth)
            self.log("val/swap_l1", self.val_swap_l1, prog_bar=True)
            self.log("val/swap_psnr", self.val_swap_psnr)
            self.log("val/baseline_l1", self.val_baseline_l1)
            self.log("val/baseline_psnr", self.val_baseline_psnr)

    def configure_optimizers(self):
        params = list(self.encoder.parameters()) + list(self.decoders.parameters())
        optimizers = [self.optimizer_factory(params)]
        if self.discriminators is not None:
            optimizers.append(self.discriminator_optimizer_factory(self.discriminators.parameters()))
        return with_schedulers(optimizers, self.scheduler_factory)


def _mean_logit(per_step_logits) -> Tensor:
    return torch.stack([logits.detach().mean() for scales in per_step_logits for logits in scales]).mean()
