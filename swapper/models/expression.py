"""A small expression estimator trained alongside a per-pair model (``loss=expression``).

It reads an aligned face crop and predicts the six expression measures of
``swapper.metrics.real_faces.expression_features`` (eye and mouth openness, mouth width, smile, brows,
jaw), each centred on the pictured person's own mean (``PairFolderDataset(with_expression=True)``): 0 is
that person's usual face. Being relative to the person, the same prediction means "the same change of
expression" on A's face and on B's.
"""

from __future__ import annotations

from torch import Tensor, nn


class ExpressionEstimator(nn.Module):
    """``depth`` stride-2 3×3 convolutions (LeakyReLU 0.2; no normalisation: its batches mix real faces
    and decoder output), the second level followed by a stride-1 one, global average pooling, a linear
    head. About 6 M multiply-adds per 64 px face at the defaults: cheap beside the generator.

    (B, 3, H, W) in [0, 1] → (B, ``features``).
    """

    def __init__(self, features: int = 6, width: int = 16, depth: int = 4) -> None:
        super().__init__()
        if features < 1 or width < 1 or depth < 2:
            raise ValueError(f"need features >= 1, width >= 1, depth >= 2; got {features}, {width}, {depth}")
        layers: list[nn.Module] = []
        channels = 3
        for i in range(depth):
            out = width * 2 ** min(i, 2)
            layers += [nn.Conv2d(channels, out, 3, 2, 1), nn.LeakyReLU(0.2)]
            if i == 1:
                layers += [nn.Conv2d(out, out, 3, 1, 1), nn.LeakyReLU(0.2)]
            channels = out
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(channels, features)

    def forward(self, images: Tensor) -> Tensor:
        return self.head(self.features(images * 2 - 1))


__all__ = ["ExpressionEstimator"]
