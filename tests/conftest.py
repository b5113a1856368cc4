"""Shared fixtures."""

from __future__ import annotations

import os

# Idle OpenMP threads spin and starve the busy ones on small shared machines (measured: 10x slower).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from pathlib import Path  # noqa: E402

import pytest
from helpers import SHARED, compose_train


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
