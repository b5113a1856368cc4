"""The identity-injection paradigm (SimSwap): one generator puts any source identity on any target.
Holds no layers, only wiring."""

from __future__ import annotations

import copy
from collections.abc import Mapping

import lightning as L
import torch
from torch import Tensor, nn
from torchmetrics import MeanAbsoluteError, MeanMetric
from torchmetrics.image import PeakSignalNoiseRatio

from swapper.losses.identity import IdentityLoss
from swapper.metrics.attribute import edge_map
from swapper.metrics.identity import IdentityRetrieval, cosine_similarity
from swapper.training.common import (
    ManualOptimizationHooks,
    OptimizerFactory,
    SchedulerFactory,
    loss_dict,
    weighted_sum,
    with_schedulers,
)


def same_network(a: nn.Module, b: nn.Module) -> bool:
    """Whether two frozen networks compute the same function: same class, same state tensors."""
    if type(a) is not type(b):
        return False
    state_a, state_b = a.state_dict(), b.state_dict()
    return state_a.keys() == state_b.keys() and all(
        state_a[k].shape == state_b[k].shape and torch.equal(state_a[k], state_b[k]) for k in state_a
    )


class IdentityInjection(ManualOptimizationHooks, L.LightningModule):
    """Train ``G(target, embed(source))`` to show the source's identity with the target's attributes.

    Batch: ``source``, ``target`` (B, 3, H, W) in [0, 1], ``same_identity`` (B,) bool,
    ``source_id``/``target_id`` (B,) labels, and on synthetic data ``truth`` (the exact swap).

    Each step embeds the source once with the frozen ``identity_network`` (no grad; the vector is
    injected and, when the identity loss uses the same network, reused as its target) and runs
    the generator once; the discriminator phase sees the detached result, the generator phase
    the attached one. Loss terms read the step keys of ``swapper.losses.base`` plus
    ``source_embedding``; ``real`` is the target (the reconstruction terms count only
    same-identity pairs when so configured).

    ``identity_network=None`` takes the identity loss's network (the paper's setting); an identity
    loss or evaluation network equal to it (``same_network``: two copies built from the same YAML)
    shares the one copy. ``eval_identity_network`` (default: the injection network) measures the
    validation identity metrics; the paper uses a network other than the loss's.
    ``attribute_network`` (``predict(images) -> (B, 6)`` pose/expression, e.g. ``AttributeEstimator``)
    scores, where the batch carries ``target_attributes``, how far the result's pose (mean |error| of
    yaw, pitch, roll in degrees) and expression (mouth-open, smile, blink) are from the target's, as
    the paper's pose and expression evaluation; beside the source's (what ignoring the target gives)
    and the ground truth's (the estimator's own error). ``ema_decay``
    keeps an exponential moving average of the generator for validation and previews.
    """

    def __init__(
        self,
        generator: nn.Module,
        losses: Mapping[str, nn.Module],
        optimizer: OptimizerFactory,
        identity_network: nn.Module | None = None,
        discriminator: nn.Module | None = None,
        discriminator_optimizer: OptimizerFactory | None = None,
        scheduler: SchedulerFactory | None = None,
        eval_identity_network: nn.Module | None = None,
        attribute_network: nn.Module | None = None,
        gradient_clip_val: float | None = None,
        ema_decay: float | None = None,
    ) -> None:
        super().__init__()
        if discriminator is not None and discriminator_optimizer is None:
            raise ValueError("a discriminator needs a discriminator_optimizer")
        if ema_decay is not None and not 0.0 < ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in (0, 1), got {ema_decay}")
        self.automatic_optimization = False
        self.generator = generator
        self.discriminator = discriminator
        self.losses = loss_dict(losses)
        identity_terms = [term for term in self.losses.values() if isinstance(term, IdentityLoss)]
        if identity_network is None:
            networks = {id(term.network): term.network for term in identity_terms}
            if len(networks) != 1:
                raise ValueError(
                    "identity injection needs an identity network: configure one identity loss "
                    "(e.g. loss=[identity_sface,...]) or set module.identity_network"
                )
            identity_network = next(iter(networks.values()))
        self.identity_network = identity_network.requires_grad_(False)
        for term in identity_terms:  # one copy of a network built twice from the same YAML
            if term.network is not identity_network and same_network(term.network, identity_network):
                term.network = identity_network
        if eval_identity_network is not None and same_network(eval_identity_network, identity_network):
            eval_identity_network = None
        self.eval_identity_network = (
            eval_identity_network.requires_grad_(False) if eval_identity_network is not None else None
        )
        # The injected vector doubles as the identity loss's target only if that loss embeds with
        # the very same network; otherwise each identity term embeds the source itself.
        self.attribute_network = (
            attribute_network.requires_grad_(False) if attribute_network is not None else None
        )
        self.share_source_embedding = all(term.network is self.identity_network for term in identity_terms)
        self.ema_decay = ema_decay
        self.generator_ema = copy.deepcopy(generator).requires_grad_(False) if ema_decay is not None else None
        self.optimizer_factory = optimizer
        self.discriminator_optimizer_factory = discriminator_optimizer
        self.scheduler_factory = scheduler
        self.gradient_clip_val = gradient_clip_val

        self.val_rec_l1 = MeanAbsoluteError()
        self.val_id_sim_source = MeanMetric()
        self.val_id_sim_target = MeanMetric()
        self.val_id_retrieval = IdentityRetrieval()
        # References that make the identity figures readable: the unchanged target's similarity to
        # the source (the no-op), and on synthetic data the ground truth's (what a perfect swap gets;
        # a recognition network also reacts to pose and light, so it is below 1).
        self.val_id_sim_source_baseline = MeanMetric()
        self.val_id_sim_source_truth = MeanMetric()
        self.val_id_retrieval_truth = IdentityRetrieval()
        self.val_swap_l1 = MeanAbsoluteError()
        self.val_swap_psnr = PeakSignalNoiseRatio(data_range=1.0)
        self.val_baseline_l1 = MeanAbsoluteError()  # the no-swap baseline: the target unchanged
        self.val_baseline_psnr = PeakSignalNoiseRatio(data_range=1.0)
        self.val_attribute_l1 = MeanAbsoluteError()
        self.val_attribute_baseline_l1 = MeanAbsoluteError()
        self.val_attribute_source_l1 = MeanAbsoluteError()
        self.val_pose = nn.ModuleDict({k: MeanMetric() for k in ("result", "source", "truth")})
        self.val_expression = nn.ModuleDict({k: MeanMetric() for k in ("result", "source", "truth")})

    # ---- the model as users call it -------------------------------------------------------
    def embed(self, source: Tensor) -> Tensor:
        """(B, 3, H, W) source faces -> (B, D) unit identity vectors of the injection network."""
        with torch.no_grad():
            embedding = self.identity_network.embed(source)
        latent = getattr(getattr(self.generator, "injection", None), "latent_dim", None)
        if latent is not None and embedding.shape[1] != latent:
            raise ValueError(
                f"the identity network gives {embedding.shape[1]}-d embeddings but the generator injects "
                f"{latent}-d vectors: pair ArcFace (512) with generator=simswap/simswap_deep and SFace (128) "
                "with generator=simswap_lite, or set generator.injection.latent_dim"
            )
        return embedding

    def generate(self, target: Tensor, source_embedding: Tensor) -> Tensor:
        """The evaluation generator (the EMA copy when kept) on a target and identity vectors."""
        generator = self.generator_ema if self.generator_ema is not None else self.generator
        return generator(target, source_embedding)

    def swap(self, source: Tensor, target: Tensor) -> Tensor:
        """Put each source's identity on the matching target: (B, 3, H, W) x 2 -> (B, 3, H, W)."""
        return self.generate(target, self.embed(source))

    def forward(self, source: Tensor, target: Tensor) -> Tensor:
        return self.swap(source, target)

    def preview_rows(self, batch: Mapping[str, Tensor]) -> list[tuple[str, Tensor]]:
        """The K×K source × target grid as K + 1 rows of K + 1 images (see SwapPreview).

        Row 0: a blank cell, then the K sources. Row k: target k, then every source swapped onto
        it. So column j + 1 holds source j's identity throughout and row k + 1 target k's attributes.
        """
        sources, targets = batch["source"], batch["target"]  # (K, 3, H, W) each
        k = len(sources)
        embeddings = self.embed(sources)  # (K, D)
        rows = [("sources", torch.cat([torch.ones_like(sources[:1]), sources]))]
        for i in range(k):
            swaps = self.generate(targets[i : i + 1].expand(k, -1, -1, -1), embeddings)  # (K, 3, H, W)
            rows.append((f"target {i}", torch.cat([targets[i : i + 1], swaps])))
        return rows

    # ---- training ---------------------------------------------------------------------------
    def training_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> None:
        optimizers = self.optimizers()
        optimizers = optimizers if isinstance(optimizers, list) else [optimizers]
        opt_g = optimizers[0]
        source, target = batch["source"], batch["target"]
        batch_size = source.shape[0]
        source_embedding = self.embed(source)  # (B, D), no graph
        fake = self.generator(target, source_embedding)  # the only generator forward of the step
        step: dict[str, object] = {
            "fake": fake,
            "real": target,
            "input": target,
            "source": source,
            "same_identity": batch["same_identity"].bool(),
            "step": self.global_step,
        }
        if self.share_source_embedding:
            step["source_embedding"] = source_embedding

        if self.discriminator is not None:
            disc, opt_d = self.discriminator, optimizers[1]
            detached = fake.detach()
            real_logits, real_features = disc(target)
            fake_logits, fake_features = disc(detached)
            d_step = {
                **step,
                "fake": detached,
                "real_logits": real_logits,
                "fake_logits": fake_logits,
                "real_features": real_features,
                "fake_features": fake_features,
                "discriminator": disc,
            }
            d_total, d_values = weighted_sum(self.losses, "discriminator", [d_step])
            if d_total is not None:
                self._update(opt_d, d_total, counted=False, toggle=True)
                self._log_phase("d", d_total, d_values, batch_size)
            # how well D separates real from fake (mean logit over scales)
            self.log("train/d/real_score", _mean_logit(real_logits), batch_size=batch_size)
            self.log("train/d/fake_score", _mean_logit(fake_logits), batch_size=batch_size)
            # The generator phase needs the updated D's view of the attached result.
            fake_logits, fake_features = disc(fake)
            with torch.no_grad():
                real_logits, real_features = disc(target)
            step.update(
                fake_logits=fake_logits,
                fake_features=fake_features,
                real_logits=real_logits,
                real_features=real_features,
                discriminator=disc,
            )

        g_total, g_values = weighted_sum(self.losses, "generator", [step])
        if g_total is None:
            raise RuntimeError("no configured loss term produced a generator loss")
        self._log_phase("g", g_total, g_values, batch_size, prog_bar=True)
        # D gets no gradients from the generator phase (toggled off)
        if self._update(opt_g, g_total, counted=True, toggle=self.discriminator is not None):
            self._update_ema()
        for scheduler in self._schedulers():
            scheduler.step()

    @torch.no_grad()
    def _update_ema(self) -> None:
        if self.generator_ema is None:
            return
        for averaged, current in zip(
            self.generator_ema.parameters(), self.generator.parameters(), strict=True
        ):
            averaged.lerp_(current, 1.0 - self.ema_decay)
        # BatchNorm statistics are running averages already: copy them.
        for averaged, current in zip(self.generator_ema.buffers(), self.generator.buffers(), strict=True):
            averaged.copy_(current)

    def _log_phase(
        self, phase: str, total: Tensor, values: dict[str, Tensor], batch_size: int, prog_bar: bool = False
    ) -> None:
        self.log(f"train/{phase}/total", total.detach(), prog_bar=prog_bar, batch_size=batch_size)
        for name, value in values.items():
            self.log(f"train/{phase}/{name}", value, batch_size=batch_size)

    # ---- validation ----------------------------------------------------------------------
    def validation_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> None:
        """Reconstruction (the target's own identity injected must return the target), identity
        metrics on different-identity pairs, and with a ground truth (synthetic data) the swap
        error and the attribute error (see ``swapper.metrics.attribute``), each beside the
        do-nothing baseline. Same-identity pairs are left out of the identity and swap figures.

        Every metric is logged on every step, updated or not, so all DDP ranks reduce the same set.
        """
        source, target = batch["source"], batch["target"]
        cross = ~batch["same_identity"].bool()
        source_embedding, target_embedding = self.embed(source), self.embed(target)
        fake = self.generate(target, source_embedding)
        log = {"batch_size": source.shape[0]}

        # Defined for every pair, so a validation set of different-identity pairs still has it.
        self.val_rec_l1.update(self.generate(target, target_embedding), target)
        self.log("val/rec_l1", self.val_rec_l1, **log)

        network = (
            self.eval_identity_network if self.eval_identity_network is not None else self.identity_network
        )
        with torch.no_grad():
            fake_embedding = network.embed(fake)
            source_eval = source_embedding if network is self.identity_network else network.embed(source)
            target_eval = target_embedding if network is self.identity_network else network.embed(target)
        if cross.any():
            self.val_id_sim_source.update(cosine_similarity(fake_embedding[cross], source_eval[cross]))
            self.val_id_sim_target.update(cosine_similarity(fake_embedding[cross], target_eval[cross]))
            self.val_id_sim_source_baseline.update(cosine_similarity(target_eval[cross], source_eval[cross]))
        # Gallery: every validation face seen (sources and targets), so the target's identity competes.
        gallery = torch.cat([source_eval, target_eval])
        gallery_ids = torch.cat([batch["source_id"], batch["target_id"]])
        self.val_id_retrieval.update(fake_embedding[cross], batch["source_id"][cross], gallery, gallery_ids)
        self.log("val/id_sim_source", self.val_id_sim_source, prog_bar=True, **log)
        self.log("val/id_sim_target", self.val_id_sim_target, **log)
        self.log("val/id_sim_source_baseline", self.val_id_sim_source_baseline, **log)
        self.log("val/id_retrieval", self.val_id_retrieval, **log)

        if self.attribute_network is not None and "target_attributes" in batch:
            self._attribute_errors(fake, batch, cross)

        if "truth" not in batch:
            return
        with torch.no_grad():
            truth_eval = network.embed(batch["truth"][cross])
        if cross.any():
            self.val_id_sim_source_truth.update(cosine_similarity(truth_eval, source_eval[cross]))
        self.val_id_retrieval_truth.update(truth_eval, batch["source_id"][cross], gallery, gallery_ids)
        self.log("val/id_sim_source_truth", self.val_id_sim_source_truth, **log)
        self.log("val/id_retrieval_truth", self.val_id_retrieval_truth, **log)
        if cross.any():
            swapped, truth, unchanged = fake[cross], batch["truth"][cross], target[cross]
            self.val_swap_l1.update(swapped, truth)
            self.val_swap_psnr.update(swapped, truth)
            self.val_baseline_l1.update(unchanged, truth)
            self.val_baseline_psnr.update(unchanged, truth)
            truth_edges = edge_map(truth)
            self.val_attribute_l1.update(edge_map(swapped), truth_edges)
            self.val_attribute_baseline_l1.update(edge_map(unchanged), truth_edges)
            self.val_attribute_source_l1.update(edge_map(source[cross]), truth_edges)
        self.log("val/swap_l1", self.val_swap_l1, prog_bar=True, **log)
        self.log("val/swap_psnr", self.val_swap_psnr, **log)
        self.log("val/baseline_l1", self.val_baseline_l1, **log)
        self.log("val/baseline_psnr", self.val_baseline_psnr, **log)
        self.log("val/attribute_l1", self.val_attribute_l1, **log)
        self.log("val/attribute_baseline_l1", self.val_attribute_baseline_l1, **log)
        self.log("val/attribute_source_l1", self.val_attribute_source_l1, **log)

    @torch.no_grad()
    def _attribute_errors(self, fake: Tensor, batch: Mapping[str, Tensor], cross: Tensor) -> None:
        """Pose and expression errors of the result on different-identity pairs, with references."""
        wanted = batch["target_attributes"][cross]
        images = {"result": fake[cross], "source": batch["source"][cross]}
        if "truth" in batch:
            images["truth"] = batch["truth"][cross]
        log = {"batch_size": len(cross)}
        for name, image in images.items():
            if len(image):
                error = (self.attribute_network.predict(image) - wanted).abs()  # (N, 6)
                self.val_pose[name].update(error[:, :3].mean(1))
                self.val_expression[name].update(error[:, 3:].mean(1))
            suffix = "" if name == "result" else f"_{name}"
            self.log(f"val/pose_error{suffix}", self.val_pose[name], prog_bar=name == "result", **log)
            self.log(f"val/expression_error{suffix}", self.val_expression[name], **log)

    def configure_optimizers(self):
        optimizers = [self.optimizer_factory(self.generator.parameters())]
        if self.discriminator is not None:
            optimizers.append(self.discriminator_optimizer_factory(self.discriminator.parameters()))
        return with_schedulers(optimizers, self.scheduler_factory)


def _mean_logit(logits: list[Tensor]) -> Tensor:
    return torch.stack([scale.detach().mean() for scale in logits]).mean()


__all__ = ["IdentityInjection", "same_network"]
