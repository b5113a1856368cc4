"""The identity-injection paradigm (SimSwap): one generator puts any source identity on any target.
Holds no layers, only wiring."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn
from torchmetrics import MeanAbsoluteError, MeanMetric
from torchmetrics.image import PeakSignalNoiseRatio

from swapper.losses.identity import IdentityLoss
from swapper.metrics.attribute import edge_map
from swapper.metrics.identity import IdentityRetrieval, cosine_similarity
from swapper.models.generators import IdentityInjectionGenerator
from swapper.training.adversarial import AdversarialModule
from swapper.training.common import OptimizerFactory, SchedulerFactory


class IdentityInjectionModule(AdversarialModule):
    """Train ``G(target, embed(source))`` to show the source's identity with the target's attributes.

    Batch: ``source``, ``target`` (B, 3, H, W) in [0, 1], ``same_identity`` (B,) bool,
    ``source_id``/``target_id`` (B,) labels, and on synthetic data ``truth`` (the exact swap).

    Each step embeds the source once with the generator's frozen identity network (no grad; the
    vector is injected and is the identity loss's target) and runs the generator once; the shared
    GAN step (:class:`AdversarialModule`) runs the discriminator phase on the detached result and the
    generator phase on the attached one. Loss terms read the step keys of ``swapper.losses.base``;
    ``real`` is the target (the reconstruction terms count only same-identity pairs when so configured).

    An identity loss without a network of its own (``network: null``, the configured default) is given
    the generator's identity network: one network, built once, embeds for injection and for the loss.
    ``eval_identity_network`` (default: the injection network) measures the validation identity
    metrics; the paper uses a network other than the loss's. ``attribute_network``
    (``predict(images) -> (B, 6)`` pose/expression, e.g. ``AttributeEstimator``) scores, where the batch
    carries ``target_attributes``, how far the result's pose (mean |error| of yaw, pitch, roll in degrees)
    and expression (mouth-open, smile, blink) are from the target's, as the paper's pose and expression
    evaluation; beside the source's (what ignoring the target gives) and the ground truth's (the
    estimator's own error).
    """

    def __init__(
        self,
        generator: IdentityInjectionGenerator,
        losses: Mapping[str, nn.Module],
        optimizer: OptimizerFactory,
        discriminator: nn.Module | None = None,
        discriminator_optimizer: OptimizerFactory | None = None,
        scheduler: SchedulerFactory | None = None,
        eval_identity_network: nn.Module | None = None,
        attribute_network: nn.Module | None = None,
        gradient_clip_val: float | None = None,
        ema_decay: float | None = None,
        seed: int | None = None,
    ) -> None:
        if not isinstance(generator, IdentityInjectionGenerator):
            raise TypeError(
                f"identity injection trains an IdentityInjectionGenerator, got {type(generator).__name__}"
            )
        discriminators = {"target": discriminator} if discriminator is not None else None
        super().__init__(
            generator, losses, optimizer, discriminators, discriminator_optimizer, scheduler,
            gradient_clip_val, ema_decay, seed,
        )  # fmt: skip
        identity_network = generator.identity_network
        for term in self.losses.values():
            if isinstance(term, IdentityLoss) and term.network is None:
                term.network = identity_network
        # The injected vector doubles as the identity loss's target only if that loss embeds with the
        # very same network; a loss given a network of its own embeds the source itself.
        self.share_source_embedding = all(
            term.network is identity_network
            for term in self.losses.values()
            if isinstance(term, IdentityLoss)
        )
        self.eval_identity_network = (
            eval_identity_network.requires_grad_(False) if eval_identity_network is not None else None
        )
        self.attribute_network = (
            attribute_network.requires_grad_(False) if attribute_network is not None else None
        )

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
        self.val_edge_l1 = MeanAbsoluteError()
        self.val_edge_baseline_l1 = MeanAbsoluteError()
        self.val_edge_source_l1 = MeanAbsoluteError()
        self.val_pose = nn.ModuleDict({k: MeanMetric() for k in ("result", "source", "truth")})
        self.val_expression = nn.ModuleDict({k: MeanMetric() for k in ("result", "source", "truth")})

    @property
    def identity_network(self) -> nn.Module:
        return self.generator.identity_network

    def embed(self, source: Tensor) -> Tensor:
        """(B, 3, H, W) source faces -> (B, D) unit identity vectors of the injection network."""
        return self.generator.embed(source)

    def generate(self, target: Tensor, source_embedding: Tensor) -> Tensor:
        """The evaluation generator (the EMA copy in eval mode) on targets and identity vectors."""
        return self.swap_generator.swap(target, source_embedding)

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
        with self.step_randomness():
            self._train_step(batch)

    def _train_step(self, batch: Mapping[str, Tensor]) -> None:
        source, target = batch["source"], batch["target"]
        source_embedding = self.embed(source)  # (B, D), no graph
        fake = self.generator.swap(target, source_embedding)  # the only generator forward of the step
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
        self.train_generator_step({"target": step}, batch_size=source.shape[0])

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
            self.val_edge_l1.update(edge_map(swapped), truth_edges)
            self.val_edge_baseline_l1.update(edge_map(unchanged), truth_edges)
            self.val_edge_source_l1.update(edge_map(source[cross]), truth_edges)
        self.log("val/swap_l1", self.val_swap_l1, prog_bar=True, **log)
        self.log("val/swap_psnr", self.val_swap_psnr, **log)
        self.log("val/baseline_l1", self.val_baseline_l1, **log)
        self.log("val/baseline_psnr", self.val_baseline_psnr, **log)
        self.log("val/edge_l1", self.val_edge_l1, **log)
        self.log("val/edge_baseline_l1", self.val_edge_baseline_l1, **log)
        self.log("val/edge_source_l1", self.val_edge_source_l1, **log)

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


__all__ = ["IdentityInjectionModule"]
