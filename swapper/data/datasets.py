"""Datasets of the per-pair paradigm: faces of identity A and of identity B.

Every item is a dict of (3, H, W) float tensors in [0, 1]: ``a`` and ``b``; the synthetic
validation set adds ground-truth swaps ``a2b_truth`` (identity B with the attributes of ``a``)
and ``b2a_truth``. Folder datasets with ``with_masks`` add, per side, maps in crop coordinates
drawn from the landmarks extraction stored in ``faces.jsonl``: ``a_mask`` / ``b_mask`` (1, H, W),
the face (68-point hull, or an ellipse from 5 points) in [0, 1], and ``a_weights`` / ``b_weights``
(1, H, W), the per-pixel loss weights (``background_weight`` outside the face, 1 inside,
× ``eyes_weight`` / ``mouth_weight`` in the eyes and mouth; see ``swapper.faces.masks.region_weights``).
A crop without landmarks gets a mask and weights of ones. With ``with_expression`` they add
``a_expression`` / ``b_expression`` (6,): the crop's expression measures from its 68 landmarks
(``swapper.metrics.real_faces.expression_features``) centred on that person's mean over the split (0 is
her usual face) and divided by her standard deviation (or one pooled over both people, see
``expression_scale``); NaN where a crop has no 68 landmarks. With ``with_landmarks`` they add
``a_landmarks`` / ``b_landmarks`` (68, 2), the crop's 68 landmarks in the ``grid_sample`` frame
(``align_corners=False``: x = (2 · pixel + 1) / W − 1; NaN without 68 points), and ``a_landmarks_mean`` /
``b_landmarks_mean``, that person's mean over the split (for ``swapper.data.morph.ExpressionMorph``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from swapper.data.synthetic import Attributes, FaceRenderer, Identity, shared_renderer
from swapper.faces.alignment import transform_points
from swapper.faces.images import list_images, read_image
from swapper.faces.masks import face_mask, region_weights
from swapper.metrics.real_faces import EXPRESSION_FEATURES, expression_features

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


SPLITS = ("train", "val")
METADATA = "faces.jsonl"  # written by swapper.extract


def spread_order(n: int) -> list[int]:
    """A permutation of ``range(n)`` whose every prefix is spread over the range (bit-reversed
    counting: 0, n/2, n/4, 3n/4, ...), so the first K items of a set drawn in this order cover it."""
    if n <= 0:
        return []
    bits = max(1, (n - 1).bit_length())
    order = (int(format(k, f"0{bits}b")[::-1], 2) for k in range(1 << bits))
    return [k for k in order if k < n]


def evenly_spaced(count: int, n: int) -> list[int]:
    """``count`` ascending indices into ``range(n)``, one in the middle of each ``1/count`` of it."""
    return [int((k + 0.5) * n / count) for k in range(count)]


def time_split(
    groups: Sequence[str], frames: Sequence[int], split: str, val_fraction: float = 0.15, gap: int = 0
) -> list[int]:
    """Indices of the items of ``split`` ("train" or "val"): per group (a source video), the last
    ``val_fraction`` of its distinct frames are validation; training keeps the frames more than ``gap``
    frames before the first validation frame, so no training frame neighbours a validation one. A
    group of one frame stays in training."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS} or None, got {split!r}")
    if not 0.0 <= val_fraction < 1.0 or gap < 0:
        raise ValueError(f"need 0 <= val_fraction < 1 and gap >= 0, got {val_fraction}, {gap}")
    if len(groups) != len(frames):
        raise ValueError(f"one frame index per item is needed, got {len(groups)} and {len(frames)}")
    cuts: dict[str, int | None] = {}  # group → its first validation frame (None: all training)
    for group in dict.fromkeys(groups):
        distinct = sorted({f for g, f in zip(groups, frames, strict=True) if g == group})
        n_val = max(1, round(val_fraction * len(distinct))) if val_fraction > 0 and len(distinct) > 1 else 0
        cuts[group] = distinct[len(distinct) - n_val] if n_val else None
    keep = []
    for i, (group, frame) in enumerate(zip(groups, frames, strict=True)):
        cut = cuts[group]
        is_val = cut is not None and frame >= cut
        is_train = cut is None or frame < cut - gap
        if is_val if split == "val" else is_train:
            keep.append(i)
    return keep


@dataclass(frozen=True)
class CropInfo:
    """Where a crop came from (its ``faces.jsonl`` entry): source, frame, landmarks in crop pixels."""

    source: str
    frame: int
    landmarks: np.ndarray | None  # (68 or 5, 2) in pixels of the stored crop
    size: int  # side of the stored crop


def read_crop_info(folder: str | Path) -> dict[str, CropInfo]:
    """File name → :class:`CropInfo` for every face listed in ``<folder>/faces.jsonl`` (none: {})."""
    from swapper.extract import read_metadata  # the metadata format belongs to extraction

    info = {}
    for record in read_metadata(Path(folder) / METADATA):
        for face in record.get("faces", []):
            points = face.get("landmarks68") or face.get("landmarks5")
            landmarks = None
            if points is not None and face.get("matrix") is not None:
                landmarks = transform_points(np.asarray(points, np.float64), np.asarray(face["matrix"]))
            info[face["file"]] = CropInfo(str(record["source"]), int(record["frame"]), landmarks,
                                          int(record["size"]))  # fmt: skip
    return info


class FaceFolder(Dataset):
    """Aligned face crops in one folder. Unreadable files are skipped and counted (or raise).

    ``split`` ("train" | "val" | None = all) holds out the end of each source video by time (see
    :func:`time_split`; ``gap`` frames before the cut belong to neither split), using the source and
    frame of each crop in ``faces.jsonl``. Crops not from a video (photos, folders without that file)
    are split by sorted file name. ``with_masks``: :meth:`item` adds the face mask and region weights.
    """

    def __init__(
        self,
        folder: str | Path,
        image_size: int = 64,
        skip_corrupt: bool = True,
        split: str | None = None,
        val_fraction: float = 0.15,
        gap: int = 30,
        with_masks: bool = False,
        eyes_weight: float = 3.0,
        mouth_weight: float = 2.0,
        background_weight: float = 0.1,
        cache: bool = False,
        with_expression: bool = False,
        with_landmarks: bool = False,
    ) -> None:
        self.folder = Path(folder).expanduser()
        self.files = list_images(self.folder)
        self.image_size = image_size
        self.skip_corrupt = skip_corrupt
        self.skipped: set[Path] = set()
        self.with_masks = with_masks
        self.weights = {"eyes_weight": eyes_weight, "mouth_weight": mouth_weight,
                        "background_weight": background_weight}  # fmt: skip
        self.with_expression = with_expression
        self.with_landmarks = with_landmarks
        needs_info = split is not None or with_masks or with_expression or with_landmarks
        self.info = read_crop_info(self.folder) if needs_info else {}
        if split is not None:
            self.files = self._split(split, val_fraction, gap)
        self.landmarks_mean = self._landmarks_mean() if with_landmarks else None
        self._expression_raw: dict[str, np.ndarray] = {}
        self.expression_stats = self._expression_stats() if with_expression else None
        self._no_landmarks_logged = False
        # decoded items kept in memory (a few thousand 64-128 px crops are tens of MB): every epoch after the
        # first reads no file and draws no mask (each data-loader worker keeps its own copy)
        self._cache: dict[int, dict[str, Tensor]] | None = {} if cache else None

    def _split(self, split: str, val_fraction: float, gap: int) -> list[Path]:
        frames_per_source: dict[str, set[int]] = {}
        for info in self.info.values():
            frames_per_source.setdefault(info.source, set()).add(info.frame)
        video, groups, frames, photos = [], [], [], []  # photos: one group in file-name order, no gap
        for i, path in enumerate(self.files):
            info = self.info.get(path.name)
            if info is not None and len(frames_per_source[info.source]) > 1:
                video.append(i)
                groups.append(info.source)
                frames.append(info.frame)
            else:
                photos.append(i)
        keep = {video[k] for k in time_split(groups, frames, split, val_fraction, gap)}
        keep |= {photos[k] for k in time_split([""] * len(photos), range(len(photos)), split, val_fraction)}
        if photos:
            log.info(
                "%s: %d crop(s) not from a video (%s): split by sorted file name, the last %.0f %% held out",
                self.folder, len(photos), "no faces.jsonl" if not self.info else "photos or unlisted files",
                100 * val_fraction,
            )  # fmt: skip
        for source in dict.fromkeys(groups):
            mine = [video[k] for k, g in enumerate(groups) if g == source]
            held = [self.info[self.files[i].name].frame for i in mine if i in keep]
            log.info("%s: %s split of %s: %d of %d crop(s), frames %s", self.folder, split, Path(source).name,
                     len(held), len(mine), f"{min(held)}-{max(held)}" if held else "none")  # fmt: skip
        files = [path for i, path in enumerate(self.files) if i in keep]
        if not files:
            raise ValueError(
                f"face folder {self.folder}: the {split!r} split is empty ({len(self.files)} crop(s), "
                f"val_fraction={val_fraction}, gap={gap} frames): extract more frames or lower the gap"
            )
        return files

    def __len__(self) -> int:
        return len(self.files)

    def _read(self, index: int) -> tuple[Path, Tensor]:
        for offset in range(len(self.files)):
            path = self.files[(index + offset) % len(self.files)]
            image = read_image(path, self.image_size)
            if image is not None:
                return path, to_tensor(image)
            if not self.skip_corrupt:
                raise ValueError(f"cannot decode image {path} (corrupt or not an image)")
            if path not in self.skipped:
                self.skipped.add(path)
                log.warning("skipping unreadable image %s (%d skipped so far)", path, len(self.skipped))
        raise ValueError(f"no image in {self.files[0].parent} could be decoded")

    def __getitem__(self, index: int) -> Tensor:
        return self._read(index)[1]

    def landmarks(self, path: Path) -> np.ndarray | None:
        """The crop's landmarks in pixels of an ``image_size`` crop, or None when none were stored."""
        info = self.info.get(path.name)
        if info is None or info.landmarks is None:
            return None
        scale = self.image_size / info.size
        return (info.landmarks + 0.5) * scale - 0.5  # pixel centres sit at integers

    def maps(self, path: Path) -> tuple[Tensor, Tensor]:
        """(1, S, S) face mask and region weights of a crop (ones without landmarks)."""
        s = self.image_size
        lm = self.landmarks(path)
        if lm is None:
            if not self._no_landmarks_logged:
                log.warning("%s: no landmarks for %s (and maybe others): mask and weights of ones",
                            self.folder, path.name)  # fmt: skip
                self._no_landmarks_logged = True
            ones = torch.ones(1, s, s)
            return ones, ones.clone()
        mask = face_mask(lm, (s, s), "hull" if len(lm) == 68 else "ellipse")
        weights = region_weights(lm, (s, s), mask, **self.weights)
        return torch.from_numpy(mask)[None], torch.from_numpy(weights)[None]

    def normalised_landmarks(self, path: Path) -> Tensor:
        """(68, 2) landmarks of a crop in the ``grid_sample`` frame (NaN without 68 points)."""
        lm = self.landmarks(path)
        if lm is None or len(lm) != 68:
            return torch.full((68, 2), float("nan"))
        return torch.from_numpy((2 * lm + 1) / self.image_size - 1).float()

    def _landmarks_mean(self) -> Tensor:
        """(68, 2) mean landmarks of the crops with 68 points (a clear error when fewer than 2 have them)."""
        points = [self.normalised_landmarks(path) for path in self.files]
        points = [p for p in points if not p.isnan().any()]
        if len(points) < 2:
            raise ValueError(
                f"face folder {self.folder}: with_landmarks needs 68-point landmarks in faces.jsonl, found "
                f"{len(points)} of {len(self.files)} crop(s): extract with a 68-point detector "
                "(detector=yunet_68, dlib_hog or dlib_cnn)"
            )
        return torch.stack(points).mean(0)

    def _expression_stats(self) -> tuple[np.ndarray, np.ndarray]:
        """Each crop's raw expression measures (kept in ``_expression_raw``, by file name), and their mean
        and standard deviation over this folder's crops (its split)."""
        names = [p.name for p in self.files
                 if p.name in self.info and self.info[p.name].landmarks is not None
                 and len(self.info[p.name].landmarks) == 68]  # fmt: skip
        if len(names) < 2:
            raise ValueError(
                f"face folder {self.folder}: with_expression needs 68-point landmarks in faces.jsonl for the "
                f"crops, found {len(names)} of {len(self.files)}: extract with a 68-point detector "
                "(detector=yunet_68, dlib_hog or dlib_cnn)"
            )
        features = expression_features(np.stack([self.info[name].landmarks for name in names]))
        self._expression_raw = dict(zip(names, features, strict=True))
        if len(names) < len(self.files):
            log.warning("%s: %d of %d crop(s) have no 68 landmarks: their expression is NaN (not trained on)",
                        self.folder, len(self.files) - len(names), len(self.files))  # fmt: skip
        return features.mean(0), features.std(0).clip(min=1e-6)

    def expression(self, path: Path) -> Tensor:
        """(6,) standardised expression measures of a crop (NaN without 68 landmarks)."""
        raw = self._expression_raw.get(path.name)
        if raw is None:
            return torch.full((len(EXPRESSION_FEATURES),), float("nan"))
        mean, std = self.expression_stats
        return torch.from_numpy((raw - mean) / std).float()

    def item(self, index: int) -> dict[str, Tensor]:
        """``{"image"}``, plus ``"mask"`` and ``"weights"`` with ``with_masks``, ``"expression"`` with
        ``with_expression``, ``"landmarks"`` and ``"landmarks_mean"`` with ``with_landmarks``."""
        if self._cache is not None:
            if index not in self._cache:
                self._cache[index] = self._item(index)
            return self._cache[index]
        return self._item(index)

    def _item(self, index: int) -> dict[str, Tensor]:
        path, image = self._read(index)
        item = {"image": image}
        if self.with_masks:
            item["mask"], item["weights"] = self.maps(path)
        if self.with_expression:
            item["expression"] = self.expression(path)
        if self.with_landmarks:
            item["landmarks"], item["landmarks_mean"] = self.normalised_landmarks(path), self.landmarks_mean
        return item


EXPRESSION_SCALES = ("person", "pooled")


class PairFolderDataset(Dataset):
    """Folder A + folder B of aligned crops (the per-pair paradigm on real faces).

    The two folders rarely have the same size: item ``i`` pairs A's ``i % len(A)`` with a B face
    drawn from ``(seed, i)``, and the epoch length is ``length`` (default: the larger folder).
    ``split="val"`` draws both sides evenly across the held-out frames instead, in an order whose
    first items already span them (the preview takes the first K). ``split``, ``val_fraction``,
    ``gap``, ``with_masks``, ``with_expression``, ``with_landmarks`` and the weights: see
    :class:`FaceFolder` and the module doc. ``expression_scale``: the expression measures are centred on
    each person's mean and divided by that person's standard deviation (``person``) or by one deviation
    pooled over both (``pooled``: the same change in eye or mouth opening means the same number for both,
    however rarely one of them makes it).
    """

    def __init__(
        self,
        folder_a: str | Path,
        folder_b: str | Path,
        image_size: int = 64,
        length: int | None = None,
        seed: int = 0,
        skip_corrupt: bool = True,
        split: str | None = None,
        val_fraction: float = 0.15,
        gap: int = 30,
        with_masks: bool = False,
        eyes_weight: float = 3.0,
        mouth_weight: float = 2.0,
        background_weight: float = 0.1,
        cache: bool = False,
        with_expression: bool = False,
        expression_scale: str = "person",
        with_landmarks: bool = False,
    ) -> None:
        if expression_scale not in EXPRESSION_SCALES:
            raise ValueError(f"expression_scale must be one of {EXPRESSION_SCALES}, got {expression_scale!r}")
        options: dict[str, Any] = dict(
            split=split, val_fraction=val_fraction, gap=gap, with_masks=with_masks, eyes_weight=eyes_weight,
            mouth_weight=mouth_weight, background_weight=background_weight, cache=cache,
            with_expression=with_expression, with_landmarks=with_landmarks,
        )  # fmt: skip
        self.a = FaceFolder(folder_a, image_size, skip_corrupt, **options)
        self.b = FaceFolder(folder_b, image_size, skip_corrupt, **options)
        self.length = length or max(len(self.a), len(self.b))
        self.seed = seed
        self.split = split
        self.with_masks = with_masks
        self.with_expression = with_expression
        self.with_landmarks = with_landmarks
        if with_expression and expression_scale == "pooled":  # each person's mean, one scale for both
            (mean_a, std_a), (mean_b, std_b) = self.a.expression_stats, self.b.expression_stats
            pooled = np.sqrt((std_a**2 + std_b**2) / 2)
            self.a.expression_stats, self.b.expression_stats = (mean_a, pooled), (mean_b, pooled)
        self.order = spread_order(self.length) if split == "val" else None

    def __len__(self) -> int:
        return self.length

    def indices(self, index: int) -> tuple[int, int]:
        """(A index, B index) of item ``index``."""
        if self.order is not None:
            k = self.order[index]
            return int((k + 0.5) * len(self.a) / self.length), int((k + 0.5) * len(self.b) / self.length)
        return index % len(self.a), int(np.random.default_rng([self.seed, index]).integers(len(self.b)))

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        if not 0 <= index < self.length:
            raise IndexError(index)
        i, j = self.indices(index)
        if not (self.with_masks or self.with_expression or self.with_landmarks):
            return {"a": self.a[i], "b": self.b[j]}
        item = {}
        for side, folder, k in (("a", self.a, i), ("b", self.b, j)):
            got = dict(folder.item(k))  # a copy: the folder may cache its items
            item[side] = got.pop("image")
            item.update({f"{side}_{key}": value for key, value in got.items()})
        return item
