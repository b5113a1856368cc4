"""Encoders of the per-pair (Deepfakes-family) models."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from swapper.models.blocks import DenseCode, DownStack, Upscale


class DeepfakesEncoder(nn.Module):
    """The shared encoder of the original Deepfakes model (the original 2017 Deepfakes autoencoder).

    ``conv(128) → conv(256) → conv(512) → conv(1024) → Flatten → Dense(bottleneck) →
    Dense(latent_size² · latent_channels) → Reshape → upscale(out_channels)``. The defaults
    are the original 64 px model (69,662,976 parameters); the dense bottleneck deliberately
    removes every spatial shortcut.
    """

    def __init__(
        self,
        image_size: int = 64,
        in_channels: int = 3,
        widths: Sequence[int] = (128, 256, 512, 1024),
        bottleneck: int = 1024,
        latent_size: int = 4,
        latent_channels: int = 1024,
        out_channels: int = 512,
    ) -> None:
        super().__init__()
        self.image_size = image_size
        self.in_channels = in_channels
        self.latent_size = latent_size
        self.latent_channels = latent_channels
        self.out_channels = out_channels
        self.convs = DownStack(image_size, in_channels, widths)
        flat = widths[-1] * self.convs.output_size**2
        self.dense = DenseCode(flat, bottleneck, latent_size, latent_channels)
        self.upscale = Upscale(latent_channels, out_channels)

    @property
    def output_size(self) -> int:
        return self.latent_size * 2

    def forward(self, x: Tensor) -> Tensor:
        h = self.convs(x)  # (B, 1024, s/16, s/16)
        z = self.dense(h)  # (B, 1024, 4, 4)
        return self.upscale(z)  # (B, 512, 8, 8)
