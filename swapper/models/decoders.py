"""Decoders of the per-pair (Deepfakes-family) models: one per identity."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from swapper.models.blocks import Upscale


class DeepfakesDecoder(nn.Module):
    """``upscale(256) → upscale(128) → upscale(64) → Conv2d(k=5) + sigmoid`` (the 2017 Deepfakes model).

    ``out_channels=3`` is the original RGB decoder (6,199,747 parameters at the defaults);
    ``out_channels=4`` is faceswap-GAN's RGBA decoder, whose fourth channel is an alpha mask.
    Output is in [0, 1]; with a mask channel, ``forward`` returns (B, 4, H, W) and
    :func:`split_rgba` separates colour and mask.
    """

    def __init__(
        self,
        in_channels: int = 512,
        widths: Sequence[int] = (256, 128, 64),
        out_channels: int = 3,
        kernel_size: int = 5,
    ) -> None:
        super().__init__()
        if out_channels not in (3, 4):
            raise ValueError(f"out_channels must be 3 (RGB) or 4 (RGB + mask), got {out_channels}")
        self.out_channels = out_channels
        self.upsample_factor = 2 ** len(widths)
        chans = [in_channels, *widths]
        self.upscales = nn.Sequential(*(Upscale(i, o) for i, o in zip(chans[:-1], chans[1:], strict=True)))
        self.to_image = nn.Conv2d(widths[-1], out_channels, kernel_size, padding=kernel_size // 2)

    def forward(self, z: Tensor) -> Tensor:  # (B, 512, 8, 8) -> (B, 3|4, 64, 64)
        return torch.sigmoid(self.to_image(self.upscales(z)))


def split_rgba(output: Tensor) -> tuple[Tensor, Tensor | None]:
    """(B, 3|4, H, W) decoder output → (rgb, mask or None)."""
    if output.shape[1] == 4:
        return output[:, :3], output[:, 3:]
    return output, None
