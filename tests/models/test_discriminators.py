"""Contracts of the PatchGAN discriminators, and parity with reference/simswap_patch_discriminator.tsv."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from helpers import REFERENCE
from hydra.utils import instantiate
from omegaconf import OmegaConf

from swapper.models.discriminators import MultiScalePatchDiscriminator, PatchDiscriminator

REPO = Path(__file__).resolve().parents[2]
DISCRIMINATOR_CONFS = sorted((REPO / "conf" / "discriminator").glob("*.yaml"))


@pytest.fixture(scope="module")
def reference() -> dict:
    shapes = {}
    for line in (REFERENCE / "simswap_patch_discriminator.tsv").read_text().splitlines():
        if line and not line.startswith("#"):
            key, shape = line.split("\t")
            shapes[key] = () if shape == "scalar" else tuple(int(s) for s in shape.split("x"))
    summary = json.loads((REFERENCE / "summary.json").read_text())["simswap_patch_discriminator"]
    return {"shapes": shapes, **summary}


def _n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_simswap_patch_matches_reference_keys_and_shapes(reference):
    state = PatchDiscriminator()  # the defaults are SimSwap's paper settings
    got = {k: tuple(v.shape) for k, v in state.state_dict().items()}
    assert got == reference["shapes"]
    assert len(got) == reference["state_dict_entries"]


def test_simswap_patch_param_count_and_feature_shapes_at_224(reference):
    d = PatchDiscriminator(in_channels=3, base_channels=64, num_layers=3, norm="batch")
    assert _n_params(d) == reference["params"] == 6_962_369
    batch = reference["feature_shapes_at_224"][0][0]
    with torch.no_grad():
        logits, features = d(torch.rand(batch, 3, 224, 224))
    assert [list(f.shape) for f in features[0]] == reference["feature_shapes_at_224"]
    assert len(logits) == 1 and logits[0] is features[0][-1]


def test_multiscale_simswap_is_two_reference_patchgans(reference):
    d = MultiScalePatchDiscriminator(num_scales=2)
    assert _n_params(d) == 2 * reference["params"]
    for i in range(2):
        scale = {
            k.removeprefix(f"scales.{i}."): tuple(v.shape)
            for k, v in d.state_dict().items()
            if k.startswith(f"scales.{i}.")
        }
        assert scale == reference["shapes"]


def test_multiscale_returns_one_entry_per_scale_with_halved_sizes():
    d = MultiScalePatchDiscriminator(num_scales=3, base_channels=8, num_layers=1, norm="instance")
    x = torch.rand(2, 3, 64, 64)
    logits, features = d(x)
    assert len(logits) == len(features) == 3
    assert [f[0].shape[-1] for f in features] == [32, 16, 8]  # first conv halves each scale's input
    assert [tuple(lg.shape) for lg in logits] == [(2, 1, 14, 14), (2, 1, 6, 6), (2, 1, 2, 2)]
    # scale 1 is the same kind of PatchGAN run on the 3x3/2 average-pooled image
    pooled = torch.nn.functional.avg_pool2d(x, 3, 2, 1, count_include_pad=False)
    expected, _ = d.scales[1](pooled)
    torch.testing.assert_close(logits[1], expected[0])


@pytest.mark.parametrize("norm", ["batch", "instance", "spectral", "none"])
def test_norm_choices_build_run_and_pass_gradients_to_input(norm):
    d = PatchDiscriminator(base_channels=8, num_layers=2, norm=norm)
    x = torch.rand(2, 3, 32, 32, requires_grad=True)
    logits, features = d(x)
    assert len(features[0]) == 2 + 3  # down1, two normalised downs, conv1, conv2 (logits)
    assert logits[0].shape == (2, 1, 2, 2)
    assert torch.isfinite(logits[0]).all()
    logits[0].sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    has_norm_layer = any(isinstance(m, torch.nn.BatchNorm2d | torch.nn.InstanceNorm2d) for m in d.modules())
    assert has_norm_layer == (norm in ("batch", "instance"))


def test_max_channels_caps_the_width():
    d = PatchDiscriminator(base_channels=16, num_layers=4, max_channels=32, norm="none")
    widths = [block[0].out_channels for block in d.children()]
    assert widths == [16, 32, 32, 32, 32, 32, 1]


@pytest.mark.parametrize(
    ("cls", "kwargs"),
    [
        (PatchDiscriminator, {"norm": "group"}),
        (PatchDiscriminator, {"num_layers": -1}),
        (MultiScalePatchDiscriminator, {"num_scales": 0}),
    ],
)
def test_bad_options_raise(cls, kwargs):
    with pytest.raises(ValueError):
        cls(**kwargs)


@pytest.mark.parametrize("path", DISCRIMINATOR_CONFS, ids=lambda p: p.stem)
def test_discriminator_configs_instantiate(path):
    cfg = OmegaConf.load(path)
    if "discriminator" in cfg:  # a `# @package _global_` file sets the node itself
        cfg = cfg.discriminator
    if cfg is None:
        assert path.stem == "none"
        return
    d = instantiate(cfg)
    logits, features = d(torch.rand(1, 3, 128, 128))
    assert len(logits) == len(features) == cfg.get("num_scales", 1)
    if path.stem == "simswap_patch":
        assert _n_params(d) == 2 * 6_962_369
