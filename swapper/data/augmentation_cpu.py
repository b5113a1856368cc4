"""Per-image augmentation on CPU workers (albumentations), for real face crops.

The default augmentation stays ``swapper.data.augmentation.PairAugmentation`` on the training
device (kornia), which keeps large GPU batches from waiting on CPU workers. This module is the
CPU option: :func:`cpu_augmentation` builds an albumentations pipeline (flip, small affine, colour
jitter in Lab) and :class:`AugmentedDataset` applies it to the images of any dataset's items, in
the DataLoader workers, before the batch reaches the GPU-side pair augmentation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import albumentations as A
import cv2
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

__all__ = ["AugmentedDataset", "LabJitter", "cpu_augmentation"]


class LabJitter(A.ImageOnlyTransform):
    """Colour jitter in CIE Lab: shift lightness by up to ±``lightness`` of its range and the a/b
    colour axes by up to ±``ab`` of theirs (faceswap's defaults: 30 % and 8 %). Lab keeps the
    lighting change apart from the colour change, unlike RGB or HSV jitter.

    Takes (H, W, 3) RGB images, float in [0, 1] or uint8.
    """

    def __init__(self, lightness: float = 0.3, ab: float = 0.08, p: float = 0.5) -> None:
        super().__init__(p=p)
        if not 0.0 <= lightness <= 1.0 or not 0.0 <= ab <= 1.0:
            raise ValueError(f"lightness and ab must be in [0, 1], got {lightness}, {ab}")
        self.lightness, self.ab = lightness, ab

    def get_params(self) -> dict[str, Any]:
        u = self.random_generator.uniform
        # float Lab: L in [0, 100], a and b in about [-127, 127]
        return {
            "shift": np.array(
                [u(-1, 1) * self.lightness * 100, u(-1, 1) * self.ab * 254, u(-1, 1) * self.ab * 254]
            )
        }

    def apply(self, img: np.ndarray, shift: np.ndarray, **params: Any) -> np.ndarray:
        if img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f"LabJitter takes (H, W, 3) RGB images, got {img.shape}")
        is_uint8 = img.dtype == np.uint8
        rgb = img.astype(np.float32) / 255.0 if is_uint8 else img.astype(np.float32)
        lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB) + shift.astype(np.float32)
        lab[..., 0] = np.clip(lab[..., 0], 0.0, 100.0)
        out = np.clip(cv2.cvtColor(lab, cv2.COLOR_LAB2RGB), 0.0, 1.0)
        return (out * 255.0).round().astype(np.uint8) if is_uint8 else out

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("lightness", "ab")


def cpu_augmentation(
    flip_p: float = 0.5,
    rotation: float = 10.0,
    scale: float = 0.05,
    translate: float = 0.05,
    affine_p: float = 1.0,
    lightness: float = 0.3,
    ab: float = 0.08,
    color_p: float = 0.5,
) -> A.Compose:
    """Horizontal flip, small affine (rotation in degrees, scale and translation as fractions) with
    replicated borders, and Lab colour jitter; a zero strength leaves that step out."""
    steps: list[A.BasicTransform] = []
    if flip_p > 0:
        steps.append(A.HorizontalFlip(p=flip_p))
    if affine_p > 0 and (rotation > 0 or scale > 0 or translate > 0):
        steps.append(
            A.Affine(
                rotate=(-rotation, rotation),
                scale=(1 - scale, 1 + scale),
                translate_percent=(-translate, translate),
                border_mode=cv2.BORDER_REPLICATE,
                p=affine_p,
            )
        )
    if color_p > 0 and (lightness > 0 or ab > 0):
        steps.append(LabJitter(lightness, ab, p=color_p))
    return A.Compose(steps)


class AugmentedDataset(Dataset):
    """Applies ``transform`` to the (3, H, W) [0, 1] image tensors under ``keys`` of each item.

    Each DataLoader worker reseeds the pipeline from its own torch seed, so workers do not repeat
    each other's augmentations (albumentations' generators would be copied by fork).
    """

    def __init__(
        self, dataset: Dataset, transform: A.BasicTransform | A.Compose, keys: Sequence[str] = ("a", "b")
    ):
        self.dataset, self.transform, self.keys = dataset, transform, tuple(keys)
        self._seed: int | None = None

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def _reseed(self) -> None:
        seed = torch.initial_seed() % 2**32  # differs per worker (and per epoch unless workers persist)
        if seed != self._seed:
            self.transform.set_random_seed(seed)
            self._seed = seed

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        self._reseed()
        item = dict(self.dataset[index])
        for key in self.keys:
            image = item[key].permute(1, 2, 0).numpy()  # (H, W, 3)
            out = self.transform(image=np.ascontiguousarray(image, dtype=np.float32))["image"]
            item[key] = torch.from_numpy(np.ascontiguousarray(out.transpose(2, 0, 1), dtype=np.float32))
        return item
