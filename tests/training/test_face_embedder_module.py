"""Training the synthetic-face identity network: metrics, convergence, export, the experiments' config."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from helpers import CONF, compose_train
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch import nn
from torch.utils.data import DataLoader

from swapper.callbacks.export import ExportWeights
from swapper.data.identities import SyntheticIdentityImages, SyntheticIdentityPairs
from swapper.losses.margin import AdditiveAngularMarginLoss
from swapper.models.face_embedder import FaceEmbedder, FaceResNet
from swapper.train import run
from swapper.training.face_embedder import FaceEmbedderModule


class MeanColour(nn.Module):
    """A stand-in recogniser: the mean colour of the image is the identity."""

    input_size = 4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean((2, 3)) + 1.0  # colour c -> 2c


def flat(*rgb: float) -> torch.Tensor:
    return torch.tensor(rgb).view(1, 3, 1, 1).expand(1, 3, 4, 4).clone()


def test_validation_metrics_have_the_exact_values() -> None:
    module = FaceEmbedderModule(MeanColour(), AdditiveAngularMarginLoss(3, 2), optimizer=torch.optim.Adam)
    red, green, blue = flat(1.0, 0.5, 0.5), flat(0.5, 1.0, 0.5), flat(0.5, 0.5, 1.0)
    batch = {  # pair 0 same person; pairs 1, 2 different people, swap truth = the source's colour
        "source": torch.cat([red, red, green]),
        "target": torch.cat([red, blue, blue]),
        "same_identity": torch.tensor([True, False, False]),
        "truth": torch.cat([red, red, blue]),  # pair 2's truth looks like the target: a miss
    }
    module.validation_step(batch, 0)
    # embeddings (2,1,1), (1,2,1), (1,1,2) up to scale: cos(same colour) = 1, cos(different) = 5/6
    assert module.val_sim_same.compute().item() == pytest.approx(1.0)
    assert module.val_sim_different.compute().item() == pytest.approx(5 / 6)
    assert module.val_auroc.compute().item() == pytest.approx(1.0)
    assert module.val_truth_preference.compute().item() == pytest.approx(0.5)


def held_out_scores(module: FaceEmbedderModule, pairs: SyntheticIdentityPairs) -> tuple[float, float]:
    module.eval()
    with torch.no_grad():
        for batch in DataLoader(pairs, batch_size=64):
            module.validation_step(batch, 0)
    scores = module.val_auroc.compute().item(), module.val_truth_preference.compute().item()
    for metric in (
        module.val_auroc,
        module.val_sim_same,
        module.val_sim_different,
        module.val_truth_preference,
    ):
        metric.reset()
    module.train()
    return scores


def test_a_short_training_separates_people_it_never_saw() -> None:
    torch.manual_seed(0)
    faces = SyntheticIdentityImages(
        num_identities=64, image_size=32, length=32 * 120, seed=0, first_identity=5000
    )
    held_out = SyntheticIdentityPairs(
        8, image_size=32, length=128, seed=1, same_identity_ratio=0.5, with_truth=True, first_identity=9000
    )
    embedder = FaceResNet(input_size=32, channels=(16, 32, 64), embedding_dim=32)
    module = FaceEmbedderModule(
        embedder, AdditiveAngularMarginLoss(32, 64, scale=16.0), optimizer=torch.optim.Adam
    )
    before = held_out_scores(module, held_out)
    optimizer = torch.optim.Adam(module.parameters(), lr=2e-3)
    losses = []
    for batch in DataLoader(faces, batch_size=32):
        embeddings = embedder(batch["image"] * 2 - 1)
        loss = module.loss(embeddings, batch["identity"])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    auroc, preference = held_out_scores(module, held_out)
    assert sum(losses[-10:]) < 0.7 * sum(losses[:10])
    assert auroc > max(0.85, before[0]) and preference > max(0.8, before[1]), (before, auroc, preference)


# ---- export --------------------------------------------------------------------------------
def fake_trainer(*callbacks, fast_dev_run: bool = False) -> SimpleNamespace:
    return SimpleNamespace(is_global_zero=True, fast_dev_run=fast_dev_run, callbacks=list(callbacks))


def test_export_writes_a_weights_only_state_dict(tmp_path) -> None:
    module = nn.Module()
    module.embedder = nn.Linear(3, 2)
    paths = [tmp_path / "run" / "e.pt", tmp_path / "pretrained" / "e.pt"]
    ExportWeights("embedder", [str(p) for p in paths]).on_train_end(fake_trainer(), module)
    for path in paths:
        saved = torch.load(path, weights_only=True)
        torch.testing.assert_close(saved["weight"], module.embedder.weight)
    assert not list(tmp_path.rglob("*.partial"))


@pytest.mark.parametrize("why", ["nan_weights", "guard", "fast_dev_run"])
def test_export_never_replaces_a_good_file(tmp_path, why) -> None:
    module = nn.Module()
    module.embedder = nn.Linear(3, 2)
    path = tmp_path / "e.pt"
    path.write_bytes(b"the good file")
    trainer = fake_trainer(fast_dev_run=why == "fast_dev_run")
    if why == "nan_weights":
        with torch.no_grad():
            module.embedder.weight[0, 0] = math.nan
    if why == "guard":
        trainer.callbacks.append(SimpleNamespace(tripped="NaNGuard: train/loss=nan at step 3"))
    ExportWeights("embedder", [str(path)]).on_train_end(trainer, module)
    assert path.read_bytes() == b"the good file"


def test_export_checks_the_attribute_before_training() -> None:
    with pytest.raises(AttributeError, match="no 'generator'"):
        ExportWeights("generator", ["x.pt"]).on_fit_start(fake_trainer(), nn.Module())
    with pytest.raises(ValueError, match="at least one path"):
        ExportWeights("embedder", [])


# ---- the experiment ------------------------------------------------------------------------
def test_experiment_exports_what_the_identity_loss_loads(tmp_path) -> None:
    pretrained = tmp_path / "pretrained"
    cfg = compose_train(
        [
            "experiment=face_embedder",
            "logger=none",
            "trainer.max_steps=2",
            "trainer.val_check_interval=2",
            "scheduler.warmup_steps=1",
            "data.batch_size=8",
            "data.train.num_identities=16",
            "data.val.length=16",
            f"paths.pretrained_dir={pretrained}",
        ],
        tmp_path / "run",
    )
    metrics = run(cfg)
    assert {"train/loss", "val/auroc", "val/truth_preference"} <= set(metrics)
    exported = pretrained / "synthetic_face_embedder.pt"
    assert exported.is_file() and (tmp_path / "run" / "face_embedder.pt").is_file()

    # identity_network=synthetic describes the architecture the experiment trains (a strict load)
    lite = compose_train(["experiment=simswap_lite", f"paths.pretrained_dir={pretrained}"], tmp_path / "s")
    assert Path(lite.identity_network.weights) == exported
    network = instantiate(lite.identity_network)
    assert isinstance(network, FaceEmbedder) and network.embedding_dim == lite.generator.injection.latent_dim


def test_one_node_sizes_every_network_trained_here(tmp_path) -> None:
    small = OmegaConf.to_container(OmegaConf.load(CONF / "face_resnet" / "small.yaml"))
    assert small == {"input_size": 64, "channels": [32, 64, 128, 256], "blocks_per_stage": 1}
    embedder = compose_train(["experiment=face_embedder"], tmp_path / "e")
    estimator = compose_train(["experiment=attribute_estimator"], tmp_path / "a")
    lite = compose_train(["experiment=simswap_lite"], tmp_path / "s")
    trained = {"embedder": embedder.module.embedder, "estimator": estimator.module.network}
    loaded = {"recogniser": lite.identity_network, "estimator": lite.module.attribute_network}
    for node in [*trained.values(), *loaded.values()]:
        assert OmegaConf.to_container(OmegaConf.masked_copy(node, list(small))) == small
    assert "face_resnet" not in lite  # merged into the nodes that use it: no top-level key to ignore
    assert embedder.module.embedder.embedding_dim == lite.identity_network.embedding_dim == 128
    # both train with optimizer.network: the AdamW settings the experiments have always used
    for cfg in (embedder, estimator):
        assert OmegaConf.to_container(cfg.optimizer, resolve=True) == {
            "network": {
                "_target_": "torch.optim.AdamW",
                "_partial_": True,
                "lr": 2e-3,
                "betas": [0.9, 0.999],
                "weight_decay": 5e-4,
            }
        }
        assert cfg.module.optimizer == cfg.optimizer.network
