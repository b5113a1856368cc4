"""The per-pair model presets: each encoder/decoder pair draws faces of its crop size, with the parameter
counts the README quotes."""

from __future__ import annotations

import pytest
import torch
from helpers import compose_train
from hydra.utils import instantiate

PRESETS = {  # overrides → (crop size, parameters of the generator for two identities)
    "deepfakes_lite": (["encoder=deepfakes_lite", "decoder=deepfakes_lite"], 64, 1_574_406),
    "deepfakes_wide": (["encoder=deepfakes_wide", "decoder=deepfakes_wide"], 64, 6_283_270),
    "deepfakes_128": (["encoder=deepfakes_128", "decoder=deepfakes_128", "image_size=128"], 128, 6_747_334),
    "liae_lite": (["module=liae"], 64, 2_302_227),
    "liae_rgba_lite": (["module=liae", "decoder=liae_rgba_lite"], 64, 2_302_628),
}


@pytest.mark.parametrize("name", PRESETS)
def test_preset_draws_faces_of_its_crop_size(name, tmp_path):
    overrides, size, params = PRESETS[name]
    cfg = compose_train(overrides, tmp_path)
    assert cfg.image_size == size
    generator = instantiate(cfg.module.generator)
    assert sum(p.numel() for p in generator.parameters()) == params
    faces = torch.rand(1, 3, size, size)
    with torch.no_grad():
        for direction in ("a2b", "b2a"):
            assert generator.swap(faces, direction).shape == faces.shape
