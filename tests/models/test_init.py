"""Weight initialisation schemes (swapper/models/init.py)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from swapper.models.blocks import Upscale
from swapper.models.decoders import DeepfakesDecoder
from swapper.models.encoders import DeepfakesEncoder
from swapper.models.generators import PerPairGenerator
from swapper.models.init import fan_in_std, icnr_, initialise_


def test_icnr_upscale_starts_as_nearest_neighbour_upsampling():
    torch.manual_seed(0)
    block = initialise_(Upscale(8, 4), "he_icnr")
    x = torch.randn(2, 8, 5, 5)
    y = block(x)  # (2, 4, 10, 10)
    nearest = nn.functional.interpolate(y[..., 0::2, 0::2], scale_factor=2, mode="nearest")
    assert torch.equal(y, nearest)
    # PyTorch's default init does not have this property (the test can fail)
    torch.manual_seed(0)
    y_default = Upscale(8, 4)(x)
    assert not torch.allclose(
        y_default, nn.functional.interpolate(y_default[..., 0::2, 0::2], scale_factor=2)
    )


def test_icnr_needs_a_multiple_of_the_subpixel_count():
    with pytest.raises(ValueError, match="divisible by 4"):
        icnr_(torch.empty(6, 3, 3, 3), scale=2)


def test_he_icnr_weight_scale_and_zero_biases():
    torch.manual_seed(0)
    encoder = initialise_(
        DeepfakesEncoder(64, widths=(32, 64, 128, 256), bottleneck=256, latent_channels=128, out_channels=64),
        "he_icnr",
    )
    conv = encoder.convs[1][0]  # a plain stride-2 conv: He-uniform
    assert conv.weight.std().item() == pytest.approx(fan_in_std(conv), rel=0.05)
    assert torch.count_nonzero(conv.bias) == 0
    dense = encoder.dense[1]
    assert dense.weight.std().item() == pytest.approx(fan_in_std(dense), rel=0.05)
    # PyTorch's default is √6 / √(2·(1 + 5)) ≈ 0.58 × the He-uniform std: a real difference
    assert DeepfakesEncoder(64).convs[1][0].weight.std().item() < 0.7 * fan_in_std(conv)


def test_generator_init_option_and_its_error():
    def parts():
        enc = DeepfakesEncoder(64, widths=(8, 8, 8, 8), bottleneck=16, latent_channels=8, out_channels=8)
        return enc, DeepfakesDecoder(8, (8, 8, 8)), DeepfakesDecoder(8, (8, 8, 8))

    torch.manual_seed(0)
    default = PerPairGenerator(*parts())
    torch.manual_seed(0)
    he = PerPairGenerator(*parts(), init="he_icnr")
    assert not torch.equal(default.encoder.convs[0][0].weight, he.encoder.convs[0][0].weight)
    assert he(torch.rand(1, 3, 64, 64)).shape == (1, 3, 64, 64)
    with pytest.raises(ValueError, match="init must be one of torch, he_icnr"):
        PerPairGenerator(*parts(), init="xavier")
