"""Small building blocks shared by the encoders and decoders."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn


class DownConv(nn.Sequential):
    """Deepfakes ``conv(f)``: Conv2d(k=5, stride 2, "same") + LeakyReLU(0.1); halves H and W."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 5, slope: float = 0.1) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size, stride=2, padding=kernel_size // 2),
            nn.LeakyReLU(slope),
        )


class DownStack(nn.Sequential):
    """``len(widths)`` Deepfakes ``conv(w)`` in a row: (B, in_channels, S, S) → (B, widths[-1], S/2^n, S/2^n).

    Built for one crop size, which it checks (a wrong size fails here, naming both sizes, instead of
    deep inside a dense layer).
    """

    def __init__(self, image_size: int, in_channels: int, widths: Sequence[int]) -> None:
        factor = 2 ** len(widths)
        if image_size <= 0 or image_size % factor:
            raise ValueError(
                f"image_size {image_size} cannot be encoded: it must be a positive multiple of {factor} "
                f"({len(widths)} stride-2 convolutions)"
            )
        chans = [in_channels, *widths]
        super().__init__(*(DownConv(i, o) for i, o in zip(chans[:-1], chans[1:], strict=True)))
        self.image_size, self.in_channels, self.output_size = image_size, in_channels, image_size // factor

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4 or x.shape[1:] != (self.in_channels, self.image_size, self.image_size):
            raise ValueError(
                f"the encoder was built for (B, {self.in_channels}, {self.image_size}, {self.image_size}) "
                f"inputs, got {tuple(x.shape)}; set image_size to the size of your face crops"
            )
        return super().forward(x)


class Upscale(nn.Sequential):
    """Deepfakes ``upscale(f)``: Conv2d(4f, k=3, same) + LeakyReLU(0.1) + PixelShuffle(2).

    The pixel shuffle (depth-to-space) doubles H and W and divides channels by 4; the article's
    ablation shows that a transposed conv or a resize here turns the model into a plain
    auto-encoder that stops swapping.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, slope: float = 0.1) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels * 4, kernel_size, padding=kernel_size // 2),
            nn.LeakyReLU(slope),
            nn.PixelShuffle(2),
        )

    def forward(self, x: Tensor) -> Tensor:  # (B, C, H, W) -> (B, out, 2H, 2W)
        return super().forward(x)


class DenseCode(nn.Sequential):
    """Deepfakes' dense bottleneck: ``Flatten → Dense(bottleneck) → Dense(size² · channels) → Reshape``.

    No activation between the two dense layers (as in the original); flattening the whole feature map
    removes every spatial shortcut from the code. The Deepfakes encoder's tail and LIAE's inter blocks.
    """

    def __init__(self, in_features: int, bottleneck: int, size: int, channels: int) -> None:
        super().__init__(
            nn.Flatten(),
            nn.Linear(in_features, bottleneck),
            nn.Linear(bottleneck, size * size * channels),
            nn.Unflatten(1, (channels, size, size)),
        )

    def forward(self, x: Tensor) -> Tensor:  # (B, C, H, W) -> (B, channels, size, size)
        return super().forward(x)
