"""Training the synthetic-face pose/expression estimator: exact metrics, convergence, the experiment."""

from __future__ import annotations

import pytest
import torch
from helpers import compose_train
from hydra.utils import instantiate
from torch import nn
from torch.utils.data import DataLoader

from swapper.attributes import ATTRIBUTE_NAMES
from swapper.data.identities import SyntheticIdentityImages
from swapper.models.face_embedder import AttributeEstimator, FaceResNet
from swapper.train import run
from swapper.training.attribute_estimator import AttributeEstimatorModule


class Constant(nn.Module):
    input_size = 8

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.full((len(x), 6), 0.5)  # x scale: 15 deg yaw, 10 pitch, 7.5 roll, 0.5 expressions


def test_validation_errors_are_in_the_renderers_units() -> None:
    module = AttributeEstimatorModule(Constant(), optimizer=torch.optim.Adam)
    attributes = torch.tensor([[0.0, 0.0, 0.0, 0.0, 0.0, 0.0], [15.0, -10.0, 7.5, 1.0, 0.5, 0.25]])
    module.validation_step({"image": torch.rand(2, 3, 8, 8), "attributes": attributes}, 0)
    expected = {"yaw": 7.5, "pitch": 15.0, "roll": 3.75, "mouth_open": 0.5, "smile": 0.25, "blink": 0.375}
    for name in ATTRIBUTE_NAMES:
        assert module.val_errors[name].compute().item() == pytest.approx(expected[name]), name
    assert module.val_pose_error.compute().item() == pytest.approx((7.5 + 15.0 + 3.75) / 3)
    assert module.val_expression_error.compute().item() == pytest.approx((0.5 + 0.25 + 0.375) / 3)


def pose_error(module: AttributeEstimatorModule, faces: SyntheticIdentityImages) -> float:
    batch = next(iter(DataLoader(faces, batch_size=len(faces))))
    module.eval()
    with torch.no_grad():
        error = (module.predict(batch["image"]) - batch["attributes"]).abs()[:, :3].mean().item()
    module.train()
    return error


def test_a_short_training_reads_the_pose_of_people_it_never_saw() -> None:
    torch.manual_seed(0)
    faces = SyntheticIdentityImages(num_identities=200, image_size=32, length=32 * 100, seed=0)
    held_out = SyntheticIdentityImages(
        num_identities=20, image_size=32, length=128, seed=1, first_identity=9000
    )
    network = FaceResNet(input_size=32, channels=(16, 32, 64), embedding_dim=6, output_norm=False)
    module = AttributeEstimatorModule(network, optimizer=torch.optim.Adam)
    before = pose_error(module, held_out)
    optimizer = torch.optim.Adam(network.parameters(), lr=2e-3)
    for batch in DataLoader(faces, batch_size=32):
        loss = module.training_step(batch, 0)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = pose_error(module, held_out)
    # predicting 0 for everything errs by ~ (15 + 10 + 7.5) / 3 = 10.8 degrees on uniform poses;
    # 100 small steps measured 8.0 (the experiment's 300 large ones reach 2.1)
    assert after < 9.0 and after < 0.8 * before, (before, after)


def test_experiment_exports_what_simswap_lite_loads(tmp_path) -> None:
    pretrained = tmp_path / "pretrained"
    overrides = [
        "logger=none",
        "trainer.max_steps=2",
        "trainer.val_check_interval=2",
        "scheduler.warmup_steps=1",
    ]
    overrides += ["data.batch_size=8", "data.train.num_identities=16", "data.val.length=16"]
    cfg = compose_train(
        ["experiment=attribute_estimator", *overrides, f"paths.pretrained_dir={pretrained}"], tmp_path / "run"
    )
    metrics = run(cfg)
    assert {"train/loss", "val/pose_error", "val/expression_error", "val/yaw_error"} <= set(metrics)
    assert (pretrained / "synthetic_attribute_estimator.pt").is_file()
    lite = compose_train(["experiment=simswap_lite", f"paths.pretrained_dir={pretrained}"], tmp_path / "s")
    estimator = instantiate(lite.module.attribute_network)  # strict load: the same architecture
    assert isinstance(estimator, AttributeEstimator)
    assert estimator.predict(torch.rand(2, 3, 64, 64)).shape == (2, 6)
