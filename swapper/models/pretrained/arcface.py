"""ArcFace identity encoder: InsightFace ``arcface_torch`` IResNet backbones.

The module names (hence the state-dict keys) follow ``arcface_torch/backbones/iresnet.py`` so that
its released ``backbone.pth`` files load strictly; ``reference/arcface_iresnet*.tsv`` lists them.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch.nn.functional as F
from torch import Tensor, nn

from swapper.models.pretrained.base import FrozenNetwork, resize_square
from swapper.models.pretrained.loading import read_weights

BLOCKS_PER_STAGE = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 14, 3), 100: (3, 13, 30, 3)}
INPUT_SIZE = 112
EMBEDDING_DIM = 512
WEIGHTS_SOURCE = (
    "InsightFace arcface_torch model zoo (github.com/deepinsight/insightface, recognition/arcface_torch: "
    "a `backbone.pth` of IResNet-18/34/50/100)"
)


class IBasicBlock(nn.Module):
    """Pre-activation residual block: BN, conv3x3, BN, PReLU, conv3x3 (stride here), BN, + shortcut."""

    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_ch, eps=1e-5)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch, eps=1e-5)
        self.prelu = nn.PReLU(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, stride, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_ch, eps=1e-5)
        self.downsample = None
        if stride != 1 or in_ch != out_ch:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), nn.BatchNorm2d(out_ch, eps=1e-5)
            )

    def forward(self, x: Tensor) -> Tensor:
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        return out + (x if self.downsample is None else self.downsample(x))


class IResNet(nn.Module):
    """(B, 3, 112, 112) in [-1, 1] -> (B, 512) un-normalised embedding."""

    def __init__(self, depth: int = 50) -> None:
        super().__init__()
        if depth not in BLOCKS_PER_STAGE:
            raise ValueError(f"IResNet depth must be one of {sorted(BLOCKS_PER_STAGE)}, got {depth}")
        self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64, eps=1e-5)
        self.prelu = nn.PReLU(64)
        widths, in_ch = (64, 128, 256, 512), 64
        for i, (width, n) in enumerate(zip(widths, BLOCKS_PER_STAGE[depth], strict=True)):
            blocks = [IBasicBlock(in_ch, width, 2)] + [IBasicBlock(width, width, 1) for _ in range(n - 1)]
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))  # each stage halves: 112 -> 7
            in_ch = width
        self.bn2 = nn.BatchNorm2d(512, eps=1e-5)
        self.fc = nn.Linear(512 * 7 * 7, EMBEDDING_DIM)
        self.features = nn.BatchNorm1d(EMBEDDING_DIM, eps=1e-5)

    def forward(self, x: Tensor) -> Tensor:
        x = self.prelu(self.bn1(self.conv1(x)))  # (B, 64, 112, 112)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))  # (B, 512, 7, 7)
        x = self.bn2(x).flatten(1)  # (B, 25088); the reference's Dropout(p=0) is a no-op
        return self.features(self.fc(x))  # (B, 512)


def _checkpoint_depth(state_dict: dict[str, Tensor]) -> int | None:
    """The IResNet depth whose block counts match the checkpoint's keys, if any."""
    counts = [0, 0, 0, 0]
    for key in state_dict:
        m = re.match(r"layer([1-4])\.(\d+)\.", key)
        if m:
            stage, block = int(m[1]) - 1, int(m[2])
            counts[stage] = max(counts[stage], block + 1)
    return next((d for d, c in BLOCKS_PER_STAGE.items() if tuple(counts) == c), None)


class ArcFace(FrozenNetwork):
    """Frozen ArcFace: aligned face crops -> L2-normalised 512-d identity embeddings."""

    def __init__(
        self, depth: int = 50, weights: str | Path | None = None, allow_random_weights: bool = False
    ) -> None:
        super().__init__()
        if depth not in BLOCKS_PER_STAGE:
            raise ValueError(f"ArcFace depth must be one of {sorted(BLOCKS_PER_STAGE)}, got {depth}")
        state = read_weights(weights, source_hint=WEIGHTS_SOURCE, allow_missing=allow_random_weights)
        if state is not None:
            found = _checkpoint_depth(state)
            if found is not None and found != depth:
                raise ValueError(f"'{weights}' is an IResNet-{found} checkpoint; pass depth={found}")
        self.depth = depth
        self.net = self._build(
            lambda: IResNet(depth),
            state,
            allow_random_weights=allow_random_weights,
            how_to_get=f"pass weights=<path to an IResNet-{depth} backbone.pth> from the {WEIGHTS_SOURCE}",
        )

    def embed(self, images: Tensor) -> Tensor:
        """(B, 3, H, W) RGB in [0, 1], aligned crops of any size -> (B, 512) unit vectors."""
        return F.normalize(self.net(resize_square(images, INPUT_SIZE) * 2 - 1), dim=1)

    def forward(self, images: Tensor) -> Tensor:
        return self.embed(images)
