"""Datasets of the per-pair paradigm: faces of identity A and of identity B.

Every item is a dict of (3, H, W) float tensors in [0, 1]: ``a`` and ``b``; the synthetic
validation set adds ground-truth swaps ``a2b_truth`` (identity B with the attributes of ``a``)
and ``b2a_truth``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from swapper.data.synthetic import Attributes, FaceRenderer, Identity, shared_renderer
from swapper.faces.images import list_images, read_image

log = logging.getLogger(__name__)


def to_tensor(image: np.ndarray) -> Tensor:
    """(H, W, 3) float RGB in [0, 1] → (3, H, W) float32 tensor."""
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32))


class SyntheticPairDataset(Dataset):
    """Two synthetic identities rendered with random attributes; item ``i`` is fixed by ``(seed, i)``.

    With ``with_truth`` each item also holds the exact swaps, which no real data set can give.
    ``attribute_spread`` < 1 narrows pose, framing, lighting and background (see ``Attributes.sample``).
    """

    def __init__(
        self,
        identity_a: int = 1,
        identity_b: int = 2,
        image_size: int = 64,
        length: int = 4096,
        seed: int = 0,
        with_truth: bool = False,
        attribute_spread: float = 1.0,
    ) -> None:
        if identity_a == identity_b:
            raise ValueError(f"identity_a and identity_b must differ, both are {identity_a}")
        if length <= 0:
            raise ValueError(f"length must be positive, got {length}")
        self.identity_a = Identity.from_seed(identity_a)
        self.identity_b = Identity.from_seed(identity_b)
        self.image_size = image_size
        self.length = length
        self.seed = seed
        self.with_truth = with_truth
        self.attribute_spread = attribute_spread

    @property
    def renderer(self) -> FaceRenderer:
        return shared_renderer(self.image_size)

    def __len__(self) -> int:
        return self.length

    def attributes(self, index: int) -> tuple[Attributes, Attributes]:
        rng = np.random.default_rng([self.seed, index])
        return Attributes.sample(rng, self.attribute_spread), Attributes.sample(rng, self.attribute_spread)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        if not 0 <= index < self.length:
            raise IndexError(index)
        attrs_a, attrs_b = self.attributes(index)
        render = self.renderer.render
        item = {
            "a": to_tensor(render(self.identity_a, attrs_a)),
            "b": to_tensor(render(self.identity_b, attrs_b)),
        }
        if self.with_truth:
            item["a2b_truth"] = to_tensor(render(self.identity_b, attrs_a))
            item["b2a_truth"] = to_tensor(render(self.identity_a, attrs_b))
        return item


class FaceFolder(Dataset):
    """Aligned face crops in one folder. Unreadable files are skipped and counted (or raise)."""

    def __init__(self, folder: str | Path, image_size: int = 64, skip_corrupt: bool = True) -> None:
        self.files = list_images(folder)
        self.image_size = image_size
        self.skip_corrupt = skip_corrupt
        self.skipped: set[Path] = set()

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> Tensor:
        for offset in range(len(self.files)):
            path = self.files[(index + offset) % len(self.files)]
            image = read_image(path, self.image_size)
            if image is not None:
                return to_tensor(image)
            if not self.skip_corrupt:
                raise ValueError(f"cannot decode image {path} (corrupt or not an image)")
            if path not in self.skipped:
                self.skipped.add(path)
                log.warning("skipping unreadable image %s (%d skipped so far)", path, len(self.skipped))
        raise ValueError(f"no image in {self.files[0].parent} could be decoded")


class PairFolderDataset(Dataset):
    """Folder A + folder B of aligned crops (the per-pair paradigm on real faces).

    The two folders rarely have the same size: item ``i`` pairs A's ``i % len(A)`` with a B face
    drawn from ``(seed, i)``, and the epoch length is ``length`` (default: the larger folder).
    """

    def __init__(
        self,
        folder_a: str | Path,
        folder_b: str | Path,
        image_size: int = 64,
        length: int | None = None,
        seed: int = 0,
        skip_corrupt: bool = True,
    ) -> None:
        self.a = FaceFolder(folder_a, image_size, skip_corrupt)
        self.b = FaceFolder(folder_b, image_size, skip_corrupt)
        self.length = length or max(len(self.a), len(self.b))
        self.seed = seed

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        j = int(np.random.default_rng([self.seed, index]).integers(len(self.b)))
        return {"a": self.a[index % len(self.a)], "b": self.b[j]}
