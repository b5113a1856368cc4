"""Encoders of the per-pair (Deepfakes-family) models."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from swapper.models.blocks import DenseCode, DownConv, Upscale


class DeepfakesEncoder(nn.Module):
    """The shared encoder of the original Deepfakes model (SYSTEMS.md §2).

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
        factor = 2 ** len(widths)
        if image_size <= 0 or image_size % factor:
            raise ValueError(
                f"image_size {image_size} cannot be encoded: it must be a positive multiple of {factor} "
                f"({len(widths)} stride-2 convolutions)"
            )
        self.image_size = image_size
        self.in_channels = in_channels
        self.latent_size = latent_size
        self.latent_channels = latent_channels
        self.out_channels = out_channels
        chans = [in_channels, *widths]
        self.convs = nn.Sequential(*(DownConv(i, o) for i, o in zip(chans[:-1], chans[1:], strict=True)))
        flat = widths[-1] * (image_size // factor) ** 2
        self.dense = DenseCode(flat, bottleneck, latent_size, latent_channels)
        self.upscale = Upscale(latent_channels, out_channels)

    @property
    def output_size(self) -> int:
        return self.latent_size * 2

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4 or x.shape[1:] != (self.in_channels, self.image_size, self.image_size):
            raise ValueError(
                f"{type(self).__name__} was built for (B, {self.in_channels}, {self.image_size}, "
                f"{self.image_size}) inputs, got {tuple(x.shape)}; set image_size in the encoder config "
                "(and data.image_size) to the size of your face crops"
            )
        h = self.convs(x)  # (B, 1024, s/16, s/16)
        z = self.dense(h)  # (B, 1024, 4, 4)
        return self.upscale(z)  # (B, 512, 8, 8)
