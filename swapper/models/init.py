"""Weight initialisation schemes of the per-pair generators.

``torch``: PyTorch's layer defaults (Kaiming-uniform with a = √5, i.e. weights of variance 1/(3·fan_in)).

``he_icnr``: what faceswap offers for its Deepfakes-family models: He-uniform kernels for the
LeakyReLU(0.1) convolutions and dense layers, zero biases, and ICNR for the convolution in front of
every pixel shuffle (Aitken et al. 2017, "Checkerboard artifact free sub-pixel convolution"): the
r² sub-pixel filters of each output channel start equal, so an untrained upscale is a nearest-neighbour
upsampling of one He-initialised convolution instead of a checkerboard. Activations keep their scale
through the ~12 layers of a Deepfakes generator, which makes the first thousands of steps count.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from swapper.models.blocks import Upscale

SCHEMES = ("torch", "he_icnr")
LEAKY_SLOPE = 0.1  # the Deepfakes blocks' LeakyReLU


def _he_uniform_(weight: torch.Tensor, slope: float = LEAKY_SLOPE) -> torch.Tensor:
    return nn.init.kaiming_uniform_(weight, a=slope, nonlinearity="leaky_relu")


@torch.no_grad()
def icnr_(weight: torch.Tensor, scale: int = 2) -> torch.Tensor:
    """ICNR: fill a (C·r², in, k, k) kernel so that PixelShuffle(r) of its output is a nearest-neighbour
    upsampling of a (C, in, k, k) He-initialised convolution. PixelShuffle reads output channel c at
    sub-pixel i from input channel c·r² + i, hence the repeat along dim 0."""
    out_channels = weight.shape[0]
    groups = scale * scale
    if out_channels % groups:
        raise ValueError(f"ICNR needs out_channels divisible by {groups}, got {out_channels}")
    base = torch.empty(out_channels // groups, *weight.shape[1:], dtype=weight.dtype, device=weight.device)
    _he_uniform_(base)
    weight.copy_(base.repeat_interleave(groups, dim=0))
    return weight


@torch.no_grad()
def initialise_(module: nn.Module, scheme: str = "torch") -> nn.Module:
    """Re-initialise ``module``'s convolutions and dense layers in place by ``scheme`` (see module doc)."""
    if scheme not in SCHEMES:
        raise ValueError(f"init must be one of {', '.join(SCHEMES)}, got {scheme!r}")
    if scheme == "torch":
        return module
    shuffled: set[int] = set()
    for block in module.modules():
        if isinstance(block, Upscale):  # conv → LeakyReLU → PixelShuffle: ICNR on the conv
            conv, shuffle = block[0], block[2]
            icnr_(conv.weight, shuffle.upscale_factor)
            if conv.bias is not None:
                conv.bias.zero_()
            shuffled.add(id(conv))
    for sub in module.modules():
        if isinstance(sub, (nn.Conv2d, nn.Linear)) and id(sub) not in shuffled:
            _he_uniform_(sub.weight)
            if sub.bias is not None:
                sub.bias.zero_()
    return module


def fan_in_std(layer: nn.Conv2d | nn.Linear) -> float:
    """The standard deviation He-uniform gives ``layer``'s weights (for tests)."""
    fan_in = layer.weight[0].numel()
    gain = math.sqrt(2.0 / (1 + LEAKY_SLOPE**2))
    return gain / math.sqrt(fan_in)


__all__ = ["SCHEMES", "fan_in_std", "icnr_", "initialise_"]
