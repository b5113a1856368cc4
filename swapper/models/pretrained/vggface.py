"""VGG-Face (VGG-16, Oxford VGG, 2622 identities) as a perceptual and identity network.

Layer names (hence the state-dict keys) follow the public PyTorch conversion ``vgg_face_dag.pth``;
``reference/vgg_face_dag.tsv`` lists them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from swapper.models.pretrained.base import FrozenNetwork, resize_square
from swapper.models.pretrained.loading import read_weights

# (block, convs, channels); a 2x2 max-pool follows each block: 224 -> 7
BLOCKS = ((1, 2, 64), (2, 2, 128), (3, 3, 256), (4, 3, 512), (5, 3, 512))
LAYERS = tuple(f"relu{b}_{i}" for b, n, _ in BLOCKS for i in range(1, n + 1))
INPUT_SIZE = 224
MEAN_RGB = (129.186279296875, 104.76238250732422, 93.59396362304688)  # on the 0-255 scale, std 1
WEIGHTS_SOURCE = (
    "the PyTorch conversion of Oxford VGG's VGG-Face (`vgg_face_dag.pth`, "
    "robots.ox.ac.uk/~albanie/pytorch-models.html)"
)


class VGGFaceNet(nn.Module):
    """(B, 3, 224, 224) RGB 0-255 minus ``MEAN_RGB`` -> fc8 logits; convs keep working at any size."""

    def __init__(self) -> None:
        super().__init__()
        in_ch = 3
        for b, n, ch in BLOCKS:
            for i in range(1, n + 1):
                self.add_module(f"conv{b}_{i}", nn.Conv2d(in_ch, ch, 3, 1, 1))
                in_ch = ch
        self.fc6 = nn.Linear(512 * 7 * 7, 4096)
        self.fc7 = nn.Linear(4096, 4096)
        self.fc8 = nn.Linear(4096, 2622)

    def conv_features(self, x: Tensor, layers: Sequence[str]) -> list[Tensor]:
        """Activations after the ReLU of each named conv, in the order asked; stops at the deepest."""
        wanted, out = set(layers), {}
        for b, n, _ in BLOCKS:
            for i in range(1, n + 1):
                x = F.relu(getattr(self, f"conv{b}_{i}")(x))
                if f"relu{b}_{i}" in wanted:
                    out[f"relu{b}_{i}"] = x
                    if len(out) == len(wanted):
                        return [out[name] for name in layers]
            x = F.max_pool2d(x, 2, 2)
        raise AssertionError("unreachable: every requested layer is a conv layer")

    def fc7_features(self, x: Tensor) -> Tensor:
        x = self.conv_features(x, ["relu5_3"])[0]  # (B, 512, 14, 14)
        x = F.max_pool2d(x, 2, 2).flatten(1)  # (B, 25088)
        return F.relu(self.fc7(F.relu(self.fc6(x))))  # (B, 4096); dropout is off in eval

    def forward(self, x: Tensor) -> Tensor:
        return self.fc8(self.fc7_features(x))


class VGGFace(FrozenNetwork):
    """Frozen VGG-Face: multi-layer perceptual features and a 4096-d identity embedding.

    ``feature_size``: side the images are resized to before ``features`` (224, the training size,
    by default; ``None`` keeps the input size, which is cheaper for small faces). ``embed`` always
    uses 224 because fc6 expects a 7x7 map.
    """

    def __init__(
        self,
        weights: str | Path | None = None,
        allow_random_weights: bool = False,
        feature_size: int | None = INPUT_SIZE,
    ) -> None:
        super().__init__()
        self.feature_size = feature_size
        state = read_weights(weights, source_hint=WEIGHTS_SOURCE, allow_missing=allow_random_weights)
        self.net = self._build(
            VGGFaceNet,
            state,
            allow_random_weights=allow_random_weights,
            how_to_get=f"pass weights=<path to vgg_face_dag.pth> from {WEIGHTS_SOURCE}",
        )
        self.register_buffer("mean", torch.tensor(MEAN_RGB).view(1, 3, 1, 1) / 255, persistent=False)

    def _preprocess(self, images: Tensor, size: int | None) -> Tensor:
        if size is not None:
            images = resize_square(images, size)
        return (images - self.mean) * 255

    def features(self, images: Tensor, layers: Sequence[str]) -> list[Tensor]:
        """(B, 3, H, W) RGB in [0, 1] -> the post-ReLU activations of ``layers`` (e.g. ``relu3_3``)."""
        unknown = [name for name in layers if name not in LAYERS]
        if unknown or not layers:
            raise ValueError(f"unknown VGG-Face layers {unknown or list(layers)}; valid: {list(LAYERS)}")
        return self.net.conv_features(self._preprocess(images, self.feature_size), layers)

    def embed(self, images: Tensor) -> Tensor:
        """(B, 3, H, W) RGB in [0, 1] -> (B, 4096) L2-normalised fc7 (after its ReLU) descriptors."""
        return F.normalize(self.net.fc7_features(self._preprocess(images, INPUT_SIZE)), dim=1)

    def forward(self, images: Tensor) -> Tensor:
        return self.embed(images)
