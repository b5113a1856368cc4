"""Shared fixtures."""

from __future__ import annotations

import os

# Idle OpenMP threads spin and starve the busy ones on small shared machines (measured: 10x slower).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from pathlib import Path  # noqa: E402

import pytest
from helpers import CONF, SHARED, compose_train


@pytest.fixture
def train_cfg(tmp_path):
    """Factory: overrides → composed train config writing into tmp_path/run."""

    def make(*overrides: str):
        return compose_train(list(overrides), tmp_path / "run")

    return make


@pytest.fixture
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip("../shared is absent")
    return SHARED


@pytest.fixture(scope="session")
def _untrained_embedder_dir(tmp_path_factory) -> Path:
    import torch
    from omegaconf import OmegaConf

    from swapper.models.face_embedder import FaceResNet

    architecture = OmegaConf.to_container(OmegaConf.load(CONF / "face_resnet" / "small.yaml"))
    folder = tmp_path_factory.mktemp("pretrained")
    torch.manual_seed(0)
    torch.save(FaceResNet(**architecture).state_dict(), folder / "synthetic_face_embedder.pt")
    torch.save(
        FaceResNet(**architecture, embedding_dim=6, output_norm=False).state_dict(),
        folder / "synthetic_attribute_estimator.pt",
    )
    return folder


@pytest.fixture
def synthetic_embedder(_untrained_embedder_dir, monkeypatch) -> Path:
    """A pretrained dir holding synthetic_face_embedder.pt and synthetic_attribute_estimator.pt as
    `experiment=face_embedder|attribute_estimator` write them (untrained weights made here, the architecture
    of conf/face_resnet/small.yaml); SWAPPER_PRETRAINED points there, subprocesses included."""
    monkeypatch.setenv("SWAPPER_PRETRAINED", str(_untrained_embedder_dir))
    return _untrained_embedder_dir
