"""SimSwap's ID Injection Module: residual blocks normalised by identity-conditioned AdaIN."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

_PADDINGS = {"reflect": nn.ReflectionPad2d, "replicate": nn.ReplicationPad2d, "zero": nn.ZeroPad2d}


class AdaIN(nn.Module):
    """Instance-normalise, then scale and shift each channel by values projected from the id vector.

    ``out = IN(x) * (1 + scale) + shift`` with ``(scale, shift) = proj(id)``: a zero projection is
    the plain instance norm, so training starts from an identity-neutral block.
    """

    def __init__(self, num_features: int, latent_dim: int = 512, eps: float = 1e-8) -> None:
        super().__init__()
        self.num_features = num_features
        self.eps = eps  # SimSwap's own InstanceNorm uses 1e-8, not PyTorch's 1e-5
        self.proj = nn.Linear(latent_dim, 2 * num_features)

    def forward(self, x: Tensor, id_vector: Tensor) -> Tensor:
        # x (B, C, H, W), id_vector (B, latent)
        x = F.instance_norm(x, eps=self.eps)  # biased variance, no affine
        style = self.proj(id_vector).view(-1, 2, self.num_features, 1, 1)  # (B, 2, C, 1, 1)
        scale, shift = style[:, 0], style[:, 1]  # (B, C, 1, 1) each; scale first, as SimSwap
        return x * (scale + 1.0) + shift


def _pad_conv(channels: int, padding: str) -> nn.Sequential:
    # The pad is a module (never the conv's own padding) so the conv sits at index 1 whatever
    # the padding mode, as in SimSwap's checkpoint keys.
    if padding not in _PADDINGS:
        raise ValueError(f"padding must be one of {sorted(_PADDINGS)}, got {padding!r}")
    return nn.Sequential(_PADDINGS[padding](1), nn.Conv2d(channels, channels, 3))


class IDBlock(nn.Module):
    """Residual block ``x + [pad, conv3x3, AdaIN, ReLU, pad, conv3x3, AdaIN](x, id)``."""

    def __init__(
        self, channels: int, latent_dim: int = 512, padding: str = "reflect", eps: float = 1e-8
    ) -> None:
        super().__init__()
        self.conv1 = _pad_conv(channels, padding)
        self.adain1 = AdaIN(channels, latent_dim, eps)
        self.act = nn.ReLU(inplace=True)
        self.conv2 = _pad_conv(channels, padding)
        self.adain2 = AdaIN(channels, latent_dim, eps)

    def forward(self, x: Tensor, id_vector: Tensor) -> Tensor:  # (B, C, H, W) -> (B, C, H, W)
        y = self.act(self.adain1(self.conv1(x), id_vector))
        y = self.adain2(self.conv2(y), id_vector)
        return x + y


class IdentityInjectionBlocks(nn.Module):
    """A stack of ``num_blocks`` IDBlocks, all conditioned on the same id vector."""

    def __init__(
        self, channels: int = 512, latent_dim: int = 512, num_blocks: int = 9, padding: str = "reflect"
    ) -> None:
        super().__init__()
        self.channels = channels
        self.latent_dim = latent_dim
        self.blocks = nn.ModuleList(IDBlock(channels, latent_dim, padding) for _ in range(num_blocks))

    def forward(self, x: Tensor, id_vector: Tensor) -> Tensor:  # (B, C, h, w) -> (B, C, h, w)
        for block in self.blocks:
            x = block(x, id_vector)
        return x
