"""Batch augmentation for the per-pair models, on the training device (kornia / torch).

``PairAugmentation(x)`` returns ``(input, target)``: the geometric jitter (flip, small affine)
applies to both, the Deepfakes random warp only to the input, so the network learns to restore
any distorted face into its identity. Maps that belong to the target (a face mask, loss weights)
go in as ``extra`` and come out with the target's geometry.
"""

from __future__ import annotations

import kornia.augmentation as K
import torch
import torch.nn.functional as F
from torch import Tensor, nn


class RandomWarp(nn.Module):
    """Deepfakes' random warp: a smooth random distortion of the whole face.

    Offsets drawn at a coarse ``grid_size``² lattice of control points (std ``scale`` of the image
    side, the original's 5 px on a 160 px face ≈ 0.03) are interpolated bicubically into a dense
    flow field, which resamples the image. ``scale=0`` is the identity.
    """

    def __init__(self, grid_size: int = 5, scale: float = 0.03, p: float = 1.0) -> None:
        super().__init__()
        if grid_size < 2:
            raise ValueError(f"grid_size must be >= 2, got {grid_size}")
        if scale < 0 or not 0.0 <= p <= 1.0:
            raise ValueError(f"need scale >= 0 and 0 <= p <= 1, got scale={scale}, p={p}")
        self.grid_size = grid_size
        self.scale = scale
        self.p = p

    def flow(self, batch: int, height: int, width: int, device, dtype) -> Tensor:
        """A random (B, H, W, 2) offset field in normalised [-1, 1] coordinates."""
        coarse = torch.randn(batch, 2, self.grid_size, self.grid_size, device=device, dtype=dtype)
        coarse = coarse * (2.0 * self.scale)  # side length is 2 in normalised coordinates
        if self.p < 1.0:
            coarse = coarse * (torch.rand(batch, 1, 1, 1, device=device) < self.p).to(dtype)
        dense = F.interpolate(coarse, size=(height, width), mode="bicubic", align_corners=True)
        return dense.permute(0, 2, 3, 1)  # (B, H, W, 2)

    def forward(self, x: Tensor) -> Tensor:  # (B, C, H, W) -> (B, C, H, W)
        if not self.training or self.scale == 0:
            return x
        b, _, h, w = x.shape
        theta = torch.eye(2, 3, device=x.device, dtype=x.dtype).expand(b, 2, 3)
        base = F.affine_grid(theta, [b, 1, h, w], align_corners=False)  # (B, H, W, 2) identity grid
        grid = base + self.flow(b, h, w, x.device, x.dtype)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


class PairAugmentation(nn.Module):
    """Flip + affine jitter (+ optional colour jitter) on both, random warp on the input only."""

    def __init__(
        self,
        warp: RandomWarp | None = None,
        flip_p: float = 0.0,
        rotation: float = 0.0,
        translate: float = 0.0,
        scale: float = 0.0,
        affine_p: float = 0.0,
        color_jitter: float = 0.0,
    ) -> None:
        super().__init__()
        geometric: list[nn.Module] = []
        if flip_p > 0:
            geometric.append(K.RandomHorizontalFlip(p=flip_p))
        if affine_p > 0 and (rotation > 0 or translate > 0 or scale > 0):
            geometric.append(
                K.RandomAffine(
                    degrees=rotation,
                    translate=(translate, translate) if translate > 0 else None,
                    scale=(1 - scale, 1 + scale) if scale > 0 else None,
                    padding_mode="border",
                    p=affine_p,
                )
            )
        self.geometric = nn.Sequential(*geometric)
        # brightness/contrast/saturation only: hue shifts would change skin tone, i.e. identity
        self.color = (
            K.ColorJitter(color_jitter, color_jitter, color_jitter, 0.0, p=0.8) if color_jitter > 0 else None
        )
        self.warp = warp if warp is not None else nn.Identity()

    def forward(self, x: Tensor, extra: Tensor | None = None, warp: bool = True):
        """(B, 3, H, W) faces [+ (B, C, H, W) maps] → (input, target) [+ the maps, moved like the target].
        ``warp=False``: the input is the target (the random warp is skipped, the rest kept)."""
        channels = x.shape[1]
        both = x if extra is None else torch.cat([x, extra], dim=1)
        if len(self.geometric):
            both = self.geometric(both)
        target = both[:, :channels]
        if self.color is not None:
            target = self.color(target)
        if len(self.geometric) or self.color is not None:
            target = target.clamp(0, 1)
        inputs = self.warp(target) if warp else target
        if extra is None:
            return inputs, target
        return inputs, target, both[:, channels:]
