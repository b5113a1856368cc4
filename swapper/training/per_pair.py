"""The per-pair paradigm (Deepfakes, faceswap-GAN, CycleGAN-style): a per-pair generator (shared
encoder, a decoder per identity), optionally a discriminator per identity. Holds no layers, only wiring."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn
from torchmetrics import MeanAbsoluteError
from torchmetrics.image import PeakSignalNoiseRatio

from swapper.models.generators import TwoIdentityGenerator
from swapper.training.adversarial import AdversarialModule
from swapper.training.common import OptimizerFactory, SchedulerFactory

SIDES = ("a", "b")
OTHER = {"a": "b", "b": "a"}


class PerPairModule(AdversarialModule):
    """Train ``decoder_X(encoder(augment(x))) ≈ x`` for both identities; swap = the other decoder.

    ``augmentation`` maps a batch of faces to (generator input, target), e.g. the random warp on the
    input only (``conf/augmentation``); from step ``random_warp_until`` on (None: never) the input is
    the unwarped target, DeepFaceLab's finishing phase for detail. With discriminators, each step runs
    the shared GAN step of :class:`AdversarialModule`. ``adversarial_on`` chooses what the discriminator
    of identity X sees as fake: X's own reconstructions (faceswap-GAN) or the other identity's faces
    translated into X (CycleGAN-style). ``cycle`` adds the A→B→A and B→A→B round trips that a
    cycle-consistency term reads as ``cycled``. At a step where a term's ``reads_translation`` is true
    (e.g. the expression loss) the swaps are made as ``translated`` too, with the source faces'
    ``expression`` measures as ``translated_expression``. ``morph`` (e.g. the
    expression morph of ``conf/morph``) first bends each side's faces (and their mask and weights)
    towards the other side's expressions, from the batch's ``<side>_landmarks`` and ``<side>_landmarks_mean``;
    the expression measures of the faces it morphed become NaN (the expression loss leaves them out).
    """

    def __init__(
        self,
        generator: TwoIdentityGenerator,
        losses: Mapping[str, nn.Module],
        optimizer: OptimizerFactory,
        augmentation: nn.Module,
        discriminator_a: nn.Module | None = None,
        discriminator_b: nn.Module | None = None,
        discriminator_optimizer: OptimizerFactory | None = None,
        scheduler: SchedulerFactory | None = None,
        adversarial_on: str = "reconstruction",
        cycle: bool = False,
        gradient_clip_val: float | None = None,
        ema_decay: float | None = None,
        seed: int | None = None,
        random_warp_until: int | None = None,
        morph: nn.Module | None = None,
    ) -> None:
        if random_warp_until is not None and random_warp_until < 0:
            raise ValueError(f"random_warp_until must be a step >= 0 or null, got {random_warp_until}")
        if adversarial_on not in ("reconstruction", "swap"):
            raise ValueError(f"adversarial_on must be 'reconstruction' or 'swap', got {adversarial_on!r}")
        if (discriminator_a is None) != (discriminator_b is None):
            raise ValueError("give a discriminator for both identities or for neither")
        discriminators = {"a": discriminator_a, "b": discriminator_b} if discriminator_a is not None else None
        super().__init__(
            generator, losses, optimizer, discriminators, discriminator_optimizer, scheduler,
            gradient_clip_val, ema_decay, seed,
        )  # fmt: skip
        self.augmentation = augmentation
        self.morph = morph
        self.random_warp_until = random_warp_until
        self.adversarial_on = adversarial_on
        self.cycle = cycle
        self.val_rec_l1 = MeanAbsoluteError()
        self.val_swap_l1 = MeanAbsoluteError()
        self.val_swap_psnr = PeakSignalNoiseRatio(data_range=1.0)
        self.val_baseline_l1 = MeanAbsoluteError()
        self.val_baseline_psnr = PeakSignalNoiseRatio(data_range=1.0)

    def decode(self, faces: Tensor, identity: str) -> tuple[Tensor, Tensor | None]:
        """The evaluation generator (the EMA copy in eval mode) drawing ``faces`` as ``identity``."""
        return self.swap_generator.decode(faces, identity)

    def preview_rows(self, batch: Mapping[str, Tensor]) -> list[tuple[str, Tensor]]:
        """Labelled rows of the preview grid for a fixed batch (see SwapPreview)."""
        a, b = batch["a"], batch["b"]
        return [
            ("A", a),
            ("A→A", self.decode(a, "a")[0]),
            ("A→B", self.decode(a, "b")[0]),
            ("B", b),
            ("B→B", self.decode(b, "b")[0]),
            ("B→A", self.decode(b, "a")[0]),
        ]

    # ---- training ---------------------------------------------------------------------------
    def _steps(self, batch: Mapping[str, Tensor]) -> dict[str, dict[str, object]]:
        """Forward both identities and collect the named tensors that the loss terms read."""
        steps: dict[str, dict[str, object]] = {}
        # DeepFaceLab's finishing phase: from `random_warp_until` on, the input is the (jittered) target
        options = (
            {"warp": False}
            if self.random_warp_until is not None and self.global_step >= self.random_warp_until
            else {}
        )
        if self.morph is not None and not all(f"{side}_landmarks" in batch for side in SIDES):
            raise ValueError(
                "module.morph needs each face's 68 landmarks in the batch: "
                "set data.train.with_landmarks=true (real pairs, data=pairs)"
            )
        for side in SIDES:
            # region weights and the landmark face mask (real data with masks) follow the target's geometry
            keys = [key for key in ("weights", "mask") if f"{side}_{key}" in batch]
            moved: dict[str, Tensor] = {}
            with torch.no_grad():
                faces = batch[side]
                maps = torch.cat([batch[f"{side}_{key}"] for key in keys], dim=1) if keys else None
                expression = batch.get(f"{side}_expression")
                if self.morph is not None:
                    other = OTHER[side]
                    faces, maps, morphed = self.morph(
                        faces, batch[f"{side}_landmarks"], batch[f"{side}_landmarks_mean"],
                        batch[f"{other}_landmarks"], batch[f"{other}_landmarks_mean"], maps,
                    )  # fmt: skip
                    if expression is not None and morphed.any():  # its measures are the unmorphed face's
                        expression = expression.masked_fill(morphed[:, None], float("nan"))  # left out
                if maps is not None:
                    warped, target, maps = self.augmentation(faces, maps, **options)
                    moved = dict(zip(keys, maps.split(1, dim=1), strict=True))
                else:
                    warped, target = self.augmentation(faces, **options)
            fake, mask = self.generator.decode(warped, side)
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
                "weights": moved.get("weights"),
                "face_mask": moved.get("mask"),
                "expression": expression,
                "step": self.global_step,
            }
        if (
            self.cycle
            or (self.discriminators is not None and self.adversarial_on == "swap")
            or any(term.reads_translation(self.global_step) for term in self.losses.values())
        ):
            for side in SIDES:
                other = OTHER[side]
                translated = self.generator.decode(steps[side]["real"], other)[0]  # side → other
                steps[other]["translated"] = translated  # a face of `other` made from `side`
                steps[other]["translated_expression"] = steps[side]["expression"]  # what it should show
                if self.cycle:
                    steps[side]["cycled"] = self.generator.decode(translated, side)[0]
        return steps

    def training_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> None:
        fake_key = "translated" if self.adversarial_on == "swap" else "fake"
        with self.step_randomness():
            self.train_generator_step(self._steps(batch), fake_key, batch_size=len(batch["a"]))

    # ---- validation ----------------------------------------------------------------------
    def validation_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> None:
        a, b = batch["a"], batch["b"]
        self.val_rec_l1.update(torch.cat([self.decode(a, "a")[0], self.decode(b, "b")[0]]), torch.cat([a, b]))
        self.log("val/rec_l1", self.val_rec_l1, prog_bar=True)
        if "a2b_truth" in batch:
            swapped = torch.cat([self.decode(a, "b")[0], self.decode(b, "a")[0]])
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
