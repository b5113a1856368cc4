import json

import pytest
import torch
from helpers import REFERENCE
from torch import nn

from swapper.models.blocks import Upscale
from swapper.models.decoders import DeepfakesDecoder, split_rgba
from swapper.models.encoders import DeepfakesEncoder


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_original_parameter_counts_match_reference():
    summary = json.loads((REFERENCE / "summary.json").read_text())
    with torch.device("meta"):
        encoder, decoder = DeepfakesEncoder(), DeepfakesDecoder()
    assert n_params(encoder) == summary["deepfakes_original_encoder_64"]["params"] == 69_662_976
    assert n_params(decoder) == summary["deepfakes_original_decoder_64"]["params"] == 6_199_747


def test_original_shapes():
    encoder, decoder = DeepfakesEncoder(), DeepfakesDecoder()
    z = encoder(torch.rand(2, 3, 64, 64))
    assert z.shape == (2, 512, 8, 8)
    out = decoder(z)
    assert out.shape == (2, 3, 64, 64)
    assert out.min() >= 0 and out.max() <= 1  # sigmoid


def test_upscale_is_pixel_shuffle_depth_to_space():
    up = Upscale(8, 2)
    assert isinstance(up[2], nn.PixelShuffle)
    x = torch.randn(1, 8, 5, 7)
    assert up(x).shape == (1, 2, 10, 14)
    # depth-to-space: output pixel (c, 2i+di, 2j+dj) is conv channel c*4 + 2*di + dj at (i, j)
    conv_out = up[1](up[0](x))
    y = up(x)
    for c, di, dj in [(0, 0, 0), (1, 1, 0), (1, 0, 1), (0, 1, 1)]:
        torch.testing.assert_close(y[0, c, di::2, dj::2], conv_out[0, c * 4 + 2 * di + dj])


def test_encoder_rejects_wrong_image_size_clearly():
    encoder = DeepfakesEncoder(
        image_size=64, widths=(8, 8, 8, 8), bottleneck=8, latent_channels=8, out_channels=8
    )
    with pytest.raises(ValueError, match=r"built for \(B, 3, 64, 64\).*got \(1, 3, 128, 128\)"):
        encoder(torch.rand(1, 3, 128, 128))
    with pytest.raises(ValueError, match="multiple of 16"):
        DeepfakesEncoder(image_size=70)


def test_rgba_decoder_and_split():
    decoder = DeepfakesDecoder(in_channels=16, widths=(8, 8, 8), out_channels=4)
    rgb, mask = split_rgba(decoder(torch.randn(2, 16, 8, 8)))
    assert rgb.shape == (2, 3, 64, 64) and mask.shape == (2, 1, 64, 64)
    assert split_rgba(torch.zeros(1, 3, 4, 4))[1] is None
    with pytest.raises(ValueError, match="out_channels"):
        DeepfakesDecoder(out_channels=5)


def test_dense_bottleneck_removes_spatial_shortcut():
    # every output pixel depends on every input pixel (the bottleneck is a dense layer)
    encoder = DeepfakesEncoder(widths=(8, 8, 8, 8), bottleneck=8, latent_channels=8, out_channels=8)
    x = torch.rand(1, 3, 64, 64, requires_grad=True)
    encoder(x)[0, :, 0, 0].sum().backward()
    assert x.grad[0, :, 48:, 48:].abs().sum() > 0  # a corner of the output sees the far corner
