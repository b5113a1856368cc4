"""Contracts of the identity-injection module (SimSwap) and smoke runs of its experiments."""

from __future__ import annotations

import csv
import time

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from helpers import compose_train, train_tiny_on_two_cpu_processes
from hydra.utils import instantiate
from test_configs import allow_random_weights
from torch import nn
from torch.utils.data import DataLoader

from swapper.data.identities import SyntheticIdentityPairs
from swapper.losses.adversarial import AdversarialLoss
from swapper.losses.feature_matching import FeatureMatchingLoss
from swapper.losses.identity import IdentityLoss
from swapper.losses.reconstruction import L1Loss
from swapper.losses.regularizers import GradientPenalty
from swapper.metrics.attribute import edge_map
from swapper.models.discriminators import MultiScalePatchDiscriminator
from swapper.models.generators import IdentityInjectionGenerator
from swapper.models.injection import IdentityInjectionBlocks
from swapper.models.simswap import SimSwapDecoder, SimSwapEncoder, SimSwapGenerator
from swapper.train import run
from swapper.training.identity_injection import IdentityInjectionModule

SIZE, LATENT = 32, 16
G_TERMS = {"identity", "reconstruction", "adversarial", "weak_feature_matching"}
D_TERMS = {"adversarial", "gradient_penalty"}


class TinyEmbedder(nn.Module):
    """A stand-in identity network: strided conv features, pooled, unit length. Counts its calls."""

    def __init__(self, dim: int = LATENT, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.conv = nn.Conv2d(3, dim, 4, stride=4)
        self.calls = 0

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return F.normalize(self.conv(images).mean((2, 3)), dim=1)  # (B, dim)


def tiny_generator(latent: int = LATENT) -> SimSwapGenerator:
    return SimSwapGenerator(
        SimSwapEncoder(base_channels=8, max_channels=16),
        IdentityInjectionBlocks(channels=16, latent_dim=latent, num_blocks=1),
        SimSwapDecoder(base_channels=8, max_channels=16, output="sigmoid"),
    )


def make_module(network: nn.Module | None = None, loss_network: nn.Module | None = None, **kwargs):
    """``loss_network=None``: the identity loss uses the generator's network (the configured default)."""
    torch.manual_seed(0)
    network = network if network is not None else TinyEmbedder()
    return IdentityInjectionModule(
        generator=IdentityInjectionGenerator(tiny_generator(), network),
        discriminator=MultiScalePatchDiscriminator(
            num_scales=2, base_channels=8, num_layers=1, norm="spectral"
        ),
        losses={
            "identity": IdentityLoss(loss_network, weight=10.0),
            "reconstruction": L1Loss(weight=10.0, same_identity_only=True),
            "adversarial": AdversarialLoss(form="hinge"),
            "gradient_penalty": GradientPenalty(weight=1e-5),
            "weak_feature_matching": FeatureMatchingLoss(weight=10.0, layers=2),
        },
        optimizer=lambda params: torch.optim.Adam(params, lr=1e-3, betas=(0.0, 0.99)),
        discriminator_optimizer=lambda params: torch.optim.Adam(params, lr=1e-3, betas=(0.0, 0.99)),
        **kwargs,
    )


def swap(module: IdentityInjectionModule, source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """What a user sees: the evaluation generator puts each source's identity on its target."""
    return module.generate(target, module.embed(source))


def loader(length: int = 8, batch_size: int = 4, ratio: float = 0.5) -> DataLoader:
    ds = SyntheticIdentityPairs(
        num_identities=4, image_size=SIZE, length=length, seed=0, same_identity_ratio=ratio, with_truth=True
    )
    return DataLoader(ds, batch_size=batch_size)


def trainer(max_steps: int, callbacks=(), limit_val_batches: float = 0) -> L.Trainer:
    return L.Trainer(
        accelerator="cpu",
        max_steps=max_steps,
        limit_val_batches=limit_val_batches,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        log_every_n_steps=1,
        callbacks=list(callbacks),
    )


class PhaseRecorder(L.Callback):
    """Counts generator forwards per batch and records which parameters each optimizer step changed."""

    def __init__(self) -> None:
        self.forwards: list[int] = []
        self.changed: list[tuple[str, bool, bool]] = []  # (optimizer, generator changed, D changed)

    def on_train_start(self, trainer, module) -> None:
        module.generator.network.register_forward_hook(lambda *_: self._count())
        for name, opt in zip(("g", "d"), trainer.optimizers, strict=True):
            opt.register_step_pre_hook(lambda *_: self._snapshot(module))
            opt.register_step_post_hook(lambda *_, name=name: self._compare(name, module))

    def _count(self) -> None:
        self.forwards[-1] += 1

    def _snapshot(self, module) -> None:
        self.before = [
            p.detach().clone() for p in (*module.generator.parameters(), *module.discriminators.parameters())
        ]
        self.split = len(list(module.generator.parameters()))

    def _compare(self, name: str, module) -> None:
        after = [*module.generator.parameters(), *module.discriminators.parameters()]
        moved = [not torch.equal(b, a) for b, a in zip(self.before, after, strict=True)]
        self.changed.append((name, any(moved[: self.split]), any(moved[self.split :])))

    def on_train_batch_start(self, *_) -> None:
        self.forwards.append(0)


def test_one_generator_forward_and_separate_phases_per_step() -> None:
    module, recorder = make_module(), PhaseRecorder()
    fit = trainer(max_steps=2, callbacks=[recorder])
    fit.fit(module, train_dataloaders=loader())
    assert recorder.forwards == [1, 1]  # the public loop runs it twice per iteration
    # D step first, moving only D; then the G step, moving only G.
    assert recorder.changed == [("d", False, True), ("g", True, False)] * 2
    assert fit.global_step == 2  # the D step does not count as a step
    logged = set(fit.logged_metrics)
    assert {f"train/g/{t}" for t in G_TERMS} | {"train/g/total"} <= logged
    assert {f"train/d/{t}" for t in D_TERMS} | {
        "train/d/total",
        "train/d/real_score",
        "train/d/fake_score",
    } <= logged
    assert all(torch.isfinite(v) for v in fit.logged_metrics.values())


def test_generator_phase_computes_no_discriminator_gradients() -> None:
    module = make_module()
    accumulated = []
    for param in module.discriminators.parameters():
        param.register_post_accumulate_grad_hook(lambda p: accumulated.append(p))
    trainer(max_steps=2).fit(module, train_dataloaders=loader())
    n = len(list(module.discriminators.parameters()))
    assert len(accumulated) == 2 * n  # once per step, in the discriminator phase only
    assert all(p.requires_grad for p in module.discriminators.parameters())  # switched back on


def test_source_is_embedded_once_and_reused_by_the_identity_loss() -> None:
    module = make_module()
    assert module.share_source_embedding and module.identity_network is module.losses["identity"].network
    assert module.identity_network is module.generator.identity_network  # one network, built once
    network = module.identity_network
    trainer(max_steps=1).fit(module, train_dataloaders=loader(length=4))
    assert network.calls == 2  # embed(source) for injection and the loss, embed(fake) for the loss


def test_a_loss_with_its_own_network_embeds_the_source_itself() -> None:
    injection, other = TinyEmbedder(seed=0), TinyEmbedder(seed=1)
    module = make_module(network=injection, loss_network=other)
    assert module.losses["identity"].network is other and not module.share_source_embedding
    injection.calls = other.calls = 0
    trainer(max_steps=1).fit(module, train_dataloaders=loader(length=4))
    assert injection.calls == 1 and other.calls == 2  # the loss embeds the source with its own network


def test_configuration_errors() -> None:
    with pytest.raises(TypeError, match="IdentityInjectionGenerator"):
        IdentityInjectionModule(
            generator=tiny_generator(), losses={"l1": L1Loss()}, optimizer=torch.optim.Adam
        )
    with pytest.raises(ValueError, match="discriminator_optimizer"):
        IdentityInjectionModule(
            generator=IdentityInjectionGenerator(tiny_generator(), TinyEmbedder()),
            losses={"l1": L1Loss()},
            optimizer=torch.optim.Adam,
            discriminator=MultiScalePatchDiscriminator(),
        )
    module = make_module(network=TinyEmbedder(dim=8))
    with pytest.raises(ValueError, match="gives 8-d embeddings but the generator injects 16-d"):
        swap(module, torch.rand(1, 3, SIZE, SIZE), torch.rand(1, 3, SIZE, SIZE))
    with pytest.raises(ValueError, match="IdentityLoss has no network"):
        IdentityLoss().generator_loss(fake=torch.rand(1, 3, SIZE, SIZE), source=torch.rand(1, 3, SIZE, SIZE))


def test_validation_metrics_have_the_exact_values() -> None:
    module = make_module()
    batch = next(iter(loader(length=8, batch_size=8)))
    fit = trainer(max_steps=1, limit_val_batches=1.0)
    metrics = fit.validate(module, dataloaders=loader(length=8, batch_size=8), verbose=False)[0]
    module.eval()
    same, cross = batch["same_identity"], ~batch["same_identity"]
    assert same.any() and cross.any()
    with torch.no_grad():
        fake = swap(module, batch["source"], batch["target"])
        network = module.identity_network
        sim_source = F.cosine_similarity(network.embed(fake), network.embed(batch["source"])).numpy()
        sim_target = F.cosine_similarity(network.embed(fake), network.embed(batch["target"])).numpy()
        sim_noop = F.cosine_similarity(network.embed(batch["target"]), network.embed(batch["source"])).numpy()
        sim_truth = F.cosine_similarity(network.embed(batch["truth"]), network.embed(batch["source"])).numpy()
    truth, target = batch["truth"][cross], batch["target"][cross]
    expected = {
        "val/rec_l1": (swap(module, batch["target"], batch["target"]) - batch["target"]).abs().mean(),
        "val/id_sim_source": sim_source[cross.numpy()].mean(),
        "val/id_sim_target": sim_target[cross.numpy()].mean(),
        "val/id_sim_source_baseline": sim_noop[cross.numpy()].mean(),
        "val/id_sim_source_truth": sim_truth[cross.numpy()].mean(),
        "val/swap_l1": (fake[cross] - truth).abs().mean(),
        "val/baseline_l1": (target - truth).abs().mean(),
        "val/baseline_psnr": -10 * torch.log10((target - truth).square().mean()),
        "val/edge_l1": (edge_map(fake[cross]) - edge_map(truth)).abs().mean(),
        "val/edge_baseline_l1": (edge_map(target) - edge_map(truth)).abs().mean(),
        "val/edge_source_l1": (edge_map(batch["source"][cross]) - edge_map(truth)).abs().mean(),
    }
    for key, value in expected.items():
        assert metrics[key] == pytest.approx(float(value), rel=1e-4, abs=1e-6), key
    assert 0.0 <= metrics["val/id_retrieval"] <= 1.0 and 0.0 <= metrics["val/id_retrieval_truth"] <= 1.0
    assert "val/swap_psnr" in metrics


class MeanBrightness(nn.Module):
    """A stand-in pose/expression estimator: every attribute is the image's mean brightness."""

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        return images.mean((1, 2, 3))[:, None].expand(-1, 6) * torch.tensor([30.0, 20.0, 15.0, 1.0, 1.0, 1.0])


def test_pose_and_expression_errors_have_the_exact_values() -> None:
    module = make_module(attribute_network=MeanBrightness())
    batch = next(iter(loader(length=8, batch_size=8)))
    metrics = trainer(max_steps=1, limit_val_batches=1.0).validate(
        module, dataloaders=loader(length=8, batch_size=8), verbose=False
    )[0]
    cross = ~batch["same_identity"]
    wanted = batch["target_attributes"][cross]
    module.eval()
    with torch.no_grad():
        images = {
            "": swap(module, batch["source"], batch["target"])[cross],
            "_source": batch["source"][cross],
            "_truth": batch["truth"][cross],
        }
    for suffix, image in images.items():
        error = (MeanBrightness().predict(image) - wanted).abs()
        assert metrics[f"val/pose_error{suffix}"] == pytest.approx(error[:, :3].mean().item(), rel=1e-5)
        assert metrics[f"val/expression_error{suffix}"] == pytest.approx(error[:, 3:].mean().item(), rel=1e-5)


def test_preview_is_a_source_by_target_grid() -> None:
    module = make_module().eval()
    batch = next(iter(loader(length=3, batch_size=3)))
    with torch.no_grad():
        rows = module.preview_rows(batch)
        assert [label for label, _ in rows] == ["sources", "target 0", "target 1", "target 2"]
        assert all(images.shape == (4, 3, SIZE, SIZE) for _, images in rows)
        assert torch.equal(rows[0][1][0], torch.ones(3, SIZE, SIZE))  # blank corner
        torch.testing.assert_close(rows[0][1][1:], batch["source"])
        for k in range(3):
            torch.testing.assert_close(rows[k + 1][1][0], batch["target"][k])
            for j in range(3):
                single = swap(module, batch["source"][j : j + 1], batch["target"][k : k + 1])[0]
                torch.testing.assert_close(rows[k + 1][1][j + 1], single, rtol=1e-4, atol=1e-5)


def test_ema_generator_averages_and_serves_evaluation() -> None:
    module = make_module(ema_decay=0.75)
    network = module.generator.network  # the averaged part: the frozen recogniser needs no average
    trainer(max_steps=2).fit(module, train_dataloaders=loader(length=4, batch_size=2))
    averaged = module.generator_ema.module
    assert module.generator_ema.n_averaged.item() == 2
    assert not any(p.requires_grad for p in averaged.parameters())
    # the first update copies the weights, the second moves them a quarter of the way
    moved = [not torch.equal(a, p) for a, p in zip(averaged.parameters(), network.parameters(), strict=True)]
    assert any(moved)
    module.eval()
    batch = next(iter(loader(length=2, batch_size=2)))
    with torch.no_grad():
        expected = averaged(batch["target"], module.embed(batch["source"]))
        torch.testing.assert_close(swap(module, batch["source"], batch["target"]), expected)
    with pytest.raises(ValueError, match="ema_decay"):
        make_module(ema_decay=1.0)


def test_identity_loss_falls_when_training_on_one_pair() -> None:
    torch.manual_seed(0)
    module = make_module()
    batch = next(iter(loader(length=4)))
    optimizer = torch.optim.Adam(module.generator.parameters(), lr=2e-3)
    identity = module.losses["identity"]

    def loss() -> torch.Tensor:
        embedding = module.embed(batch["source"])
        return identity.generator_loss(
            module.generator.swap(batch["target"], embedding), source_embedding=embedding
        )

    first = loss().item()
    for _ in range(40):
        optimizer.zero_grad()
        value = loss()
        value.backward()
        optimizer.step()
    assert loss().item() < 0.5 * first


# ---- configs and runs ---------------------------------------------------------------------
EXPERIMENTS = {
    # experiment: (overrides keeping a CPU smoke run short, expected image size)
    "simswap_lite": (["data.batch_size=2"], 64),
    "simswap_224": (["data.batch_size=1"], 224),
    # the real deep generator at 256 px: 512 px takes minutes per step on 2 CPU cores
    "simswap_512": (["data.batch_size=1", "image_size=256"], 512),
}


@pytest.mark.parametrize("experiment", sorted(EXPERIMENTS))
def test_experiment_composes_with_its_recipe(experiment, tmp_path) -> None:
    cfg = compose_train([f"experiment={experiment}"], tmp_path)
    assert cfg.name == experiment
    assert cfg.image_size == EXPERIMENTS[experiment][1]
    assert cfg.module._target_ == "swapper.training.identity_injection.IdentityInjectionModule"
    assert "encoder" not in cfg and "decoder" not in cfg and "augmentation" not in cfg  # nothing ignored
    assert cfg.optimizer.generator.lr == 4e-4 and list(cfg.optimizer.generator.betas) == [0.0, 0.99]
    assert list(cfg.optimizer.discriminator.betas) == [0.0, 0.99]
    weights = {name: node.weight for name, node in cfg.loss.items()}
    assert weights == {
        "identity": 10.0,
        "reconstruction_same_identity": 10.0,
        "adversarial": 1.0,
        "gradient_penalty": 1e-5,
        "weak_feature_matching": 10.0,
    }
    assert cfg.loss.reconstruction_same_identity.same_identity_only
    assert cfg.loss.gradient_penalty.interval == 4  # lazy: every 4th step, scaled by 4
    assert cfg.loss.identity.network is None  # the generator's identity network, one node built once
    network = "FaceEmbedder" if experiment == "simswap_lite" else "ArcFace"
    assert cfg.module.generator.identity_network._target_.endswith(network)
    assert cfg.generator.encoder.deep == (experiment == "simswap_512")


@pytest.mark.parametrize("option", ["arcface", "sface", "synthetic"])
def test_every_identity_network_option_builds_and_is_the_generators(option, tmp_path) -> None:
    cfg = compose_train(["experiment=simswap_lite", f"identity_network={option}"], tmp_path)
    assert cfg.module.generator.identity_network == cfg.identity_network
    allow_random_weights(cfg.identity_network)
    network = instantiate(cfg.identity_network)
    embedding = network.embed(torch.rand(2, 3, 64, 64))
    assert embedding.shape == (2, 512 if option == "arcface" else 128)
    torch.testing.assert_close(embedding.norm(dim=1), torch.ones(2))


@pytest.mark.parametrize("option", ["synthetic", "sface"])  # random weights (no file here) / the real file
def test_the_identity_network_is_one_object_whatever_its_weights(option, tmp_path) -> None:
    cfg = compose_train(
        ["experiment=simswap_lite", f"identity_network={option}", "module.attribute_network=null"], tmp_path
    )
    allow_random_weights(cfg)
    module = instantiate(cfg.module)
    assert module.losses["identity"].network is module.generator.identity_network
    assert module.share_source_embedding


def test_generator_group_is_selectable_on_the_command_line(tmp_path) -> None:
    cfg = compose_train(["experiment=simswap_lite", "generator=simswap_deep"], tmp_path)
    assert cfg.generator.encoder.deep and cfg.module.generator.network.encoder.deep


@pytest.mark.parametrize(
    "experiment",
    [pytest.param(e, marks=[pytest.mark.slow] if e != "simswap_lite" else []) for e in sorted(EXPERIMENTS)],
)
def test_fast_dev_run_of_every_simswap_experiment(experiment, tmp_path) -> None:
    overrides, _ = EXPERIMENTS[experiment]
    cfg = compose_train(
        [
            f"experiment={experiment}",
            "debug=fdr",
            "logger=none",
            "callbacks.preview.num_samples=2",
            *overrides,
        ],
        tmp_path,
    )
    allow_random_weights(cfg)
    start = time.time()
    metrics = run(cfg)
    assert time.time() - start < 120
    assert cfg.monitor in metrics and cfg.optimized_metric in metrics  # checkpoints can follow it
    assert {"train/g/total", "train/d/total", "val/id_sim_source", "val/swap_l1"} <= set(metrics)
    if experiment == "simswap_lite":
        assert {"val/pose_error", "val/expression_error", "val/pose_error_truth"} <= set(metrics)
    assert all(torch.isfinite(torch.tensor(v)) for v in metrics.values())


@pytest.mark.ddp
def test_simswap_lite_on_two_cpu_processes(tmp_path, synthetic_embedder) -> None:
    out = tmp_path / "ddp"
    result = train_tiny_on_two_cpu_processes(out, "experiment=simswap_lite")
    assert result.returncode == 0, result.stderr[-3000:]
    saved = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert saved["global_step"] == 4
    with open(out / "csv" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    for key in ("train/g/identity", "train/d/adversarial", "val/id_retrieval", "val/swap_l1"):
        assert any(r.get(key) for r in rows), key
    assert (out / "previews" / "latest.png").is_file()
