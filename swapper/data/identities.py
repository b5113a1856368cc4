"""Datasets of the identity-injection paradigm: (source, target) pairs drawn from many identities.

Every item is a dict:
    source, target      (3, H, W) float tensors in [0, 1]
    same_identity       () bool, source and target show the same person
    source_id, target_id  () int64 identity labels (for ID retrieval)
and, on synthetic data,
    target_attributes   (6,) float32 pose/expression of the target (``ATTRIBUTE_NAMES``)
    truth               (3, H, W) the exact swap: the source identity with the target's attributes
                        (only with ``with_truth``).
Item ``i`` is fixed by ``(seed, i)``, so epochs, workers and DDP ranks agree on it.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from swapper.data.datasets import FaceFolder, to_tensor
from swapper.data.synthetic import Attributes, FaceRenderer, Identity, check_spread, shared_renderer

log = logging.getLogger(__name__)


def _check_ratio(same_identity_ratio: float) -> None:
    if not 0.0 <= same_identity_ratio <= 1.0:
        raise ValueError(f"same_identity_ratio must be in [0, 1], got {same_identity_ratio}")


def _check_synthetic(num_identities: int, length: int, attribute_spread: float) -> None:
    """Arguments of the synthetic identity sets, checked at construction rather than in a worker."""
    if num_identities < 2:
        raise ValueError(f"num_identities must be >= 2 (pairs of different people), got {num_identities}")
    if length <= 0:
        raise ValueError(f"length must be positive, got {length}")
    check_spread(attribute_spread)


def _draw_pair(rng: np.random.Generator, num_identities: int, same_identity_ratio: float) -> tuple[int, int]:
    """(source, target) identity indices; equal with probability ``same_identity_ratio``."""
    source = int(rng.integers(num_identities))
    if rng.random() < same_identity_ratio:
        return source, source
    return source, (source + int(rng.integers(1, num_identities))) % num_identities  # uniform over the others


class SyntheticIdentityPairs(Dataset):
    """Pairs of procedurally rendered faces from ``num_identities`` synthetic people.

    Identity ``k`` is ``Identity.from_seed(first_identity + k)`` and its label is that seed, so
    training (``first_identity=0``) and held-out validation identities (e.g. 10000) never mix.
    Source and target get independent random attributes (``attribute_spread`` < 1 narrows their
    ranges, see ``Attributes.sample``); ``truth`` renders the source identity with the target's
    attributes — the exact answer of a perfect swap.
    """

    def __init__(
        self,
        num_identities: int,
        image_size: int = 64,
        length: int = 4096,
        seed: int = 0,
        same_identity_ratio: float = 0.2,
        with_truth: bool = False,
        first_identity: int = 0,
        attribute_spread: float = 1.0,
    ) -> None:
        _check_synthetic(num_identities, length, attribute_spread)
        _check_ratio(same_identity_ratio)
        self.identity_ids = [first_identity + k for k in range(num_identities)]
        self.identities = [Identity.from_seed(i) for i in self.identity_ids]
        self.image_size = image_size
        self.length = length
        self.seed = seed
        self.same_identity_ratio = same_identity_ratio
        self.with_truth = with_truth
        self.attribute_spread = attribute_spread

    @property
    def renderer(self) -> FaceRenderer:
        return shared_renderer(self.image_size)

    def __len__(self) -> int:
        return self.length

    def draw(self, index: int) -> tuple[int, int, Attributes, Attributes]:
        """(source index, target index, source attributes, target attributes) of item ``index``."""
        rng = np.random.default_rng([self.seed, index])
        source, target = _draw_pair(rng, len(self.identities), self.same_identity_ratio)
        spread = self.attribute_spread
        return source, target, Attributes.sample(rng, spread), Attributes.sample(rng, spread)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        if not 0 <= index < self.length:
            raise IndexError(index)
        source, target, source_attrs, target_attrs = self.draw(index)
        render = self.renderer.render
        item = {
            "source": to_tensor(render(self.identities[source], source_attrs)),
            "target": to_tensor(render(self.identities[target], target_attrs)),
            "same_identity": torch.tensor(source == target),
            "source_id": torch.tensor(self.identity_ids[source]),
            "target_id": torch.tensor(self.identity_ids[target]),
            "target_attributes": torch.from_numpy(target_attrs.pose_expression()),
        }
        if self.with_truth:
            # Same person: the target already is the source identity with the target's attributes.
            truth = (
                item["target"]
                if source == target
                else to_tensor(render(self.identities[source], target_attrs))
            )
            item["truth"] = truth
        return item


class SyntheticIdentityImages(Dataset):
    """Single synthetic faces labelled with their identity: training data for a face recogniser.

    Item ``i`` shows identity ``first_identity + label`` (label uniform over ``num_identities``)
    with random attributes, fixed by ``(seed, i)``. Returns ``image`` (3, H, W) in [0, 1],
    ``identity`` () int64 in ``[0, num_identities)``, the class index of a classification head, and
    ``attributes`` (6,) float32 pose/expression (``ATTRIBUTE_NAMES``), the targets of an estimator.
    """

    def __init__(
        self,
        num_identities: int,
        image_size: int = 64,
        length: int = 65536,
        seed: int = 0,
        first_identity: int = 0,
        attribute_spread: float = 1.0,
    ) -> None:
        _check_synthetic(num_identities, length, attribute_spread)
        self.num_identities = num_identities
        self.first_identity = first_identity
        self.image_size = image_size
        self.length = length
        self.seed = seed
        self.attribute_spread = attribute_spread
        self._identities: dict[int, Identity] = {}

    def identity(self, label: int) -> Identity:
        if label not in self._identities:  # thousands of people: build each on first use
            self._identities[label] = Identity.from_seed(self.first_identity + label)
        return self._identities[label]

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        if not 0 <= index < self.length:
            raise IndexError(index)
        rng = np.random.default_rng([self.seed, index])
        label = int(rng.integers(self.num_identities))
        attributes = Attributes.sample(rng, self.attribute_spread)
        image = shared_renderer(self.image_size).render(self.identity(label), attributes)
        return {
            "image": to_tensor(image),
            "identity": torch.tensor(label),
            "attributes": torch.from_numpy(attributes.pose_expression()),
        }


class IdentityFolderDataset(Dataset):
    """Aligned face crops in a folder per person (VGGFace2 layout ``root/<person>/<images>``).

    Pairs are drawn over people (each person equally likely, whatever their number of images),
    then an image of each; a same-identity pair uses two different images when the person has
    several. Person folders without images are skipped with a warning; labels are the index of
    the person in the sorted folder list. ``length`` defaults to the number of images.
    """

    def __init__(
        self,
        root: str | Path,
        image_size: int = 224,
        length: int | None = None,
        seed: int = 0,
        same_identity_ratio: float = 0.2,
        skip_corrupt: bool = True,
    ) -> None:
        _check_ratio(same_identity_ratio)
        root = Path(root).expanduser()
        if not root.is_dir():
            raise FileNotFoundError(f"identity root {root} does not exist (or is not a folder)")
        folders = sorted(p for p in root.iterdir() if p.is_dir())
        if not folders:
            raise ValueError(
                f"identity root {root} holds no person folders: expected root/<person>/<aligned crops> "
                "(the VGGFace2 layout)"
            )
        self.people: list[FaceFolder] = []
        self.names: list[str] = []
        empty = []
        for folder in folders:
            try:
                self.people.append(FaceFolder(folder, image_size, skip_corrupt))
                self.names.append(folder.name)
            except ValueError:
                empty.append(folder.name)
        if empty:
            log.warning("skipping %d person folders without images under %s: %s", len(empty), root, empty[:5])
        if len(self.people) < 2:
            raise ValueError(
                f"identity root {root} has {len(self.people)} person folder(s) with images; "
                "identity-injection training needs at least 2 people"
            )
        self.image_size = image_size
        self.length = length or sum(len(p) for p in self.people)
        if self.length <= 0:
            raise ValueError(f"length must be positive, got {self.length}")
        self.seed = seed
        self.same_identity_ratio = same_identity_ratio

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        if not 0 <= index < self.length:
            raise IndexError(index)
        rng = np.random.default_rng([self.seed, index])
        source, target = _draw_pair(rng, len(self.people), self.same_identity_ratio)
        count = len(self.people[source])
        source_image = int(rng.integers(count))
        if source == target and count > 1:
            target_image = (source_image + int(rng.integers(1, count))) % count  # another image of the person
        else:
            target_image = int(rng.integers(len(self.people[target])))
        return {
            "source": self.people[source][source_image],
            "target": self.people[target][target_image],
            "same_identity": torch.tensor(source == target),
            "source_id": torch.tensor(source),
            "target_id": torch.tensor(target),
        }


__all__ = ["IdentityFolderDataset", "SyntheticIdentityImages", "SyntheticIdentityPairs"]
