"""Small face networks for the synthetic faces, trained here: a recogniser (``experiment=face_embedder``)
and a pose/expression estimator (``experiment=attribute_estimator``).

Public recognisers (ArcFace, SFace) are trained on photographs; on the procedural faces of
``swapper.data.synthetic`` they react more to pose and light than to who is drawn (SFace rates a
perfect synthetic swap closer to the target than to the source). This network learns the
renderer's identities with an additive angular margin (ArcFace's training objective) so
identity-injection runs on synthetic data get a real identity signal. Layout: a ResNet of
pre-activation-free basic blocks with BatchNorm and PReLU, then ArcFace's "E" output head
(BN, dropout-free flatten, linear, BN1d).

The attribute estimator is the same network with six outputs: the renderer's yaw, pitch, roll (degrees)
and mouth-open, smile, blink (0..1), each divided by ``ATTRIBUTE_SCALE`` so all are of order one. It
measures what SimSwap's evaluation measures with a head-pose and an expression network: whether a
swap kept the target's pose and expression.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from swapper.attributes import ATTRIBUTE_SCALE
from swapper.models.pretrained.base import FrozenNetwork, resize_square
from swapper.models.pretrained.loading import read_weights


class BasicBlock(nn.Module):
    """conv3x3 (stride) - BN - PReLU - conv3x3 - BN, plus a (strided 1x1) shortcut."""

    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.PReLU(out_ch),
            nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=False),
            nn.BatchNorm2d(out_ch),
        )
        self.shortcut = (
            nn.Identity()
            if stride == 1 and in_ch == out_ch
            else nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), nn.BatchNorm2d(out_ch))
        )
        self.act = nn.PReLU(out_ch)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.body(x) + self.shortcut(x))


class FaceResNet(nn.Module):
    """(B, 3, input_size, input_size) in [-1, 1] -> (B, embedding_dim) un-normalised embedding.

    The network of both the recogniser and the attribute estimator (sizes: conf/face_resnet/). A 3x3
    stem, then one stride-2 stage per entry of ``channels`` with ``blocks_per_stage`` blocks each; the
    final map of ``input_size / 2**len(channels)`` pixels is flattened into the head.
    ``output_norm`` ends with ArcFace's BatchNorm1d, right for an embedding; a regressor goes
    without it (batch statistics would force every output to a fixed spread, informative or not).
    """

    def __init__(
        self,
        input_size: int = 64,
        channels: Sequence[int] = (32, 64, 128, 256),
        blocks_per_stage: int = 1,
        embedding_dim: int = 128,
        output_norm: bool = True,
    ) -> None:
        super().__init__()
        if input_size % 2 ** len(channels):
            raise ValueError(f"input_size {input_size} must be divisible by 2**{len(channels)}")
        if blocks_per_stage < 1:
            raise ValueError(f"blocks_per_stage must be >= 1, got {blocks_per_stage}")
        self.input_size = input_size
        self.embedding_dim = embedding_dim
        self.stem = nn.Sequential(
            nn.Conv2d(3, channels[0], 3, 1, 1, bias=False), nn.BatchNorm2d(channels[0]), nn.PReLU(channels[0])
        )
        stages, in_ch = [], channels[0]
        for out_ch in channels:
            blocks = [BasicBlock(in_ch, out_ch, 2)] + [
                BasicBlock(out_ch, out_ch, 1) for _ in range(blocks_per_stage - 1)
            ]
            stages.append(nn.Sequential(*blocks))
            in_ch = out_ch
        self.stages = nn.ModuleList(stages)
        side = input_size // 2 ** len(channels)
        self.bn = nn.BatchNorm2d(in_ch)
        self.fc = nn.Linear(in_ch * side * side, embedding_dim)
        self.features_bn = nn.BatchNorm1d(embedding_dim) if output_norm else nn.Identity()

    def stage_features(self, x: Tensor) -> list[Tensor]:
        """The output of every stage, shallow to deep."""
        x = self.stem(x)
        out = []
        for stage in self.stages:
            x = stage(x)
            out.append(x)
        return out

    def forward(self, x: Tensor) -> Tensor:
        x = self.stage_features(x)[-1]
        return self.features_bn(self.fc(self.bn(x).flatten(1)))


def _to_input(images: Tensor, size: int) -> Tensor:
    """[0, 1] RGB of any size -> [-1, 1] at ``size``."""
    return resize_square(images, size) * 2 - 1


def on_images(net: nn.Module, images: Tensor) -> Tensor:
    """Run ``net`` (a ``FaceResNet``, or any module with ``input_size`` that takes [-1, 1]) on
    (B, 3, H, W) RGB in [0, 1] of any size: what training modules and frozen wrappers share."""
    return net(_to_input(images, net.input_size))


class _TrainedHere(FrozenNetwork):
    """A frozen ``FaceResNet`` whose weights file ``experiment=<experiment>`` of this project writes.

    The architecture arguments must be those the file was trained with (the strict load lists any
    mismatch); a missing file's error names the command that makes it.
    """

    def __init__(
        self,
        weights: str | Path | None,
        experiment: str,
        filename: str,
        input_size: int,
        channels: Sequence[int],
        blocks_per_stage: int,
        outputs: int,
        output_norm: bool,
        allow_random_weights: bool,
    ) -> None:
        super().__init__()
        how_to_get = (
            f"train it on synthetic faces with `python train.py experiment={experiment}` "
            f"(a few minutes on CPU; it writes pretrained/{filename})"
        )
        state = read_weights(weights, source_hint=how_to_get, allow_missing=allow_random_weights)
        self.net = self._build(
            lambda: FaceResNet(input_size, tuple(channels), blocks_per_stage, outputs, output_norm),
            state,
            allow_random_weights=allow_random_weights,
            how_to_get=how_to_get,
        )


class FaceEmbedder(_TrainedHere):
    """Frozen recogniser from ``experiment=face_embedder``: ``embed(images)`` maps (B, 3, H, W) RGB in
    [0, 1] to (B, embedding_dim) unit vectors, the interface of ``ArcFace``/``SFace``."""

    def __init__(
        self,
        weights: str | Path | None,
        input_size: int = 64,
        channels: Sequence[int] = (32, 64, 128, 256),
        blocks_per_stage: int = 1,
        embedding_dim: int = 128,
        allow_random_weights: bool = False,
    ) -> None:
        architecture = {"input_size": input_size, "channels": channels, "blocks_per_stage": blocks_per_stage}
        super().__init__(
            weights, "face_embedder", "synthetic_face_embedder.pt", **architecture,
            outputs=embedding_dim, output_norm=True, allow_random_weights=allow_random_weights,
        )  # fmt: skip

    @property
    def embedding_dim(self) -> int:
        return self.net.embedding_dim

    def embed(self, images: Tensor) -> Tensor:
        return F.normalize(on_images(self.net, images), dim=1)

    def features(self, images: Tensor) -> list[Tensor]:
        """Every stage's output (for perceptual losses)."""
        return self.net.stage_features(_to_input(images, self.net.input_size))


class AttributeEstimator(_TrainedHere):
    """Frozen pose/expression estimator from ``experiment=attribute_estimator``: ``predict(images)``
    maps (B, 3, H, W) RGB in [0, 1] to (B, 6) ``[yaw, pitch, roll, mouth_open, smile, blink]`` in
    the renderer's units (``swapper.attributes.ATTRIBUTE_NAMES``)."""

    def __init__(
        self,
        weights: str | Path | None,
        input_size: int = 64,
        channels: Sequence[int] = (32, 64, 128, 256),
        blocks_per_stage: int = 1,
        allow_random_weights: bool = False,
    ) -> None:
        architecture = {"input_size": input_size, "channels": channels, "blocks_per_stage": blocks_per_stage}
        super().__init__(
            weights, "attribute_estimator", "synthetic_attribute_estimator.pt", **architecture,
            outputs=len(ATTRIBUTE_SCALE), output_norm=False, allow_random_weights=allow_random_weights,
        )  # fmt: skip
        self.register_buffer("scale", torch.tensor(ATTRIBUTE_SCALE), persistent=False)

    def predict(self, images: Tensor) -> Tensor:
        return on_images(self.net, images) * self.scale


__all__ = ["AttributeEstimator", "FaceEmbedder", "FaceResNet", "on_images"]
