"""Contracts of the many-identity pair datasets: pair statistics, ground truth, labels, folder errors."""

from __future__ import annotations

import logging

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from swapper.attributes import ATTRIBUTE_NAMES
from swapper.data.identities import IdentityFolderDataset, SyntheticIdentityImages, SyntheticIdentityPairs
from swapper.data.synthetic import FaceRenderer, Identity


@pytest.mark.parametrize("ratio", [0.0, 0.3, 1.0])
def test_same_identity_ratio(ratio: float) -> None:
    ds = SyntheticIdentityPairs(
        num_identities=10, image_size=32, length=3000, seed=5, same_identity_ratio=ratio
    )
    pairs = [ds.draw(i)[:2] for i in range(len(ds))]  # no rendering: the draw fixes the pair
    same = np.array([s == t for s, t in pairs])
    assert abs(same.mean() - ratio) < 0.03
    # Different-identity targets are spread over all the other people.
    others = [t for s, t in pairs if s != t]
    if others:
        counts = np.bincount(others, minlength=10)
        assert counts.min() > 0.5 * counts.mean()


def test_items_carry_the_exact_ground_truth_and_labels() -> None:
    ds = SyntheticIdentityPairs(
        num_identities=6,
        image_size=32,
        length=40,
        seed=3,
        with_truth=True,
        first_identity=500,
        same_identity_ratio=0.3,
    )
    renderer = FaceRenderer(size=32)
    seen_same = seen_cross = False
    for i in range(12):
        item = ds[i]
        source, target, source_attrs, target_attrs = ds.draw(i)
        expected_truth = renderer.render(Identity.from_seed(500 + source), target_attrs)
        np.testing.assert_array_equal(item["truth"].numpy().transpose(1, 2, 0), expected_truth)
        np.testing.assert_array_equal(
            item["source"].numpy().transpose(1, 2, 0),
            renderer.render(Identity.from_seed(500 + source), source_attrs),
        )
        np.testing.assert_array_equal(
            item["target"].numpy().transpose(1, 2, 0),
            renderer.render(Identity.from_seed(500 + target), target_attrs),
        )
        assert item["source_id"].item() == 500 + source and item["target_id"].item() == 500 + target
        same = item["same_identity"]
        assert same.dtype == torch.bool and same.item() == (source == target)
        assert item["target_attributes"].shape == (len(ATTRIBUTE_NAMES),)
        np.testing.assert_array_equal(item["target_attributes"].numpy(), target_attrs.pose_expression())
        if source == target:
            seen_same = True
            torch.testing.assert_close(item["truth"], item["target"], rtol=0, atol=0)
        else:
            seen_cross = True
            assert (item["truth"] - item["target"]).abs().mean() > 0.01  # another person
    assert seen_same and seen_cross


def test_items_are_deterministic_and_truth_is_optional() -> None:
    ds = SyntheticIdentityPairs(num_identities=5, image_size=32, length=8, seed=1)
    first, again = ds[3], SyntheticIdentityPairs(num_identities=5, image_size=32, length=8, seed=1)[3]
    assert "truth" not in first
    for key in first:
        torch.testing.assert_close(first[key], again[key], rtol=0, atol=0)
    other = SyntheticIdentityPairs(num_identities=5, image_size=32, length=8, seed=2)[3]
    assert not torch.equal(first["target"], other["target"])


def test_batches_collate() -> None:
    ds = SyntheticIdentityPairs(num_identities=5, image_size=32, length=4, seed=0, with_truth=True)
    batch = next(iter(DataLoader(ds, batch_size=4)))
    assert batch["source"].shape == batch["target"].shape == batch["truth"].shape == (4, 3, 32, 32)
    assert batch["same_identity"].shape == (4,) and batch["same_identity"].dtype == torch.bool
    assert batch["source_id"].dtype == torch.int64 and batch["target_attributes"].shape == (4, 6)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_identities": 1}, "num_identities must be >= 2"),
        ({"length": 0}, "length must be positive"),
        ({"same_identity_ratio": 1.5}, r"same_identity_ratio must be in \[0, 1\]"),
        ({"attribute_spread": 0.0}, r"spread must be in \(0, 1\]"),
    ],
)
def test_synthetic_bad_arguments(kwargs, message) -> None:
    args = {"num_identities": 4, "image_size": 32, "length": 4, "seed": 0, **kwargs}
    with pytest.raises(ValueError, match=message):
        SyntheticIdentityPairs(**args)


def test_synthetic_index_out_of_range() -> None:
    with pytest.raises(IndexError):
        SyntheticIdentityPairs(num_identities=4, image_size=32, length=4, seed=0)[4]


def test_attribute_spread_narrows_pose_but_not_who_is_drawn() -> None:
    def yaws(spread: float) -> np.ndarray:
        pairs = SyntheticIdentityPairs(4, image_size=32, length=64, seed=3, attribute_spread=spread)
        return np.array([pairs.draw(i)[3].yaw for i in range(64)])

    assert np.abs(yaws(1.0)).max() > 20 and np.abs(yaws(0.25)).max() <= 7.5
    narrow = SyntheticIdentityPairs(4, image_size=32, length=64, seed=3, attribute_spread=0.25)
    wide = SyntheticIdentityPairs(4, image_size=32, length=64, seed=3)
    assert [narrow.draw(i)[:2] for i in range(64)] == [wide.draw(i)[:2] for i in range(64)]


# ---- labelled single faces (training a recogniser) ----------------------------------------
def test_labelled_faces_are_deterministic_and_show_their_identity() -> None:
    faces = SyntheticIdentityImages(num_identities=5, image_size=32, length=40, seed=1, first_identity=500)
    item = faces[7]
    assert item["image"].shape == (3, 32, 32) and item["image"].dtype == torch.float32
    assert item["identity"].dtype == torch.int64 and 0 <= item["identity"] < 5
    torch.testing.assert_close(faces[7]["image"], item["image"])
    labels = {int(faces[i]["identity"]) for i in range(40)}
    assert labels == set(range(5))
    assert faces.identity(int(item["identity"])) == Identity.from_seed(500 + int(item["identity"]))
    with pytest.raises(IndexError):
        faces[40]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_identities": 1}, "num_identities"),
        ({"length": 0}, "length"),
        ({"attribute_spread": 2.0}, "spread"),
    ],
)
def test_labelled_faces_bad_arguments(kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        SyntheticIdentityImages(**({"num_identities": 4} | kwargs))


# ---- folder per person ---------------------------------------------------------------------
def write_people(root, counts: dict[str, int]) -> None:
    """root/<person>/<k>.png, every image a flat grey whose level encodes (person, k)."""
    for p, (name, count) in enumerate(counts.items()):
        (root / name).mkdir(parents=True)
        for k in range(count):
            cv2.imwrite(str(root / name / f"{k}.png"), np.full((24, 24, 3), 20 * p + 5 * k, np.uint8))


def level(image: torch.Tensor) -> int:
    return round(image[0, 0, 0].item() * 255)


def test_folder_pairs_labels_and_images(tmp_path, caplog) -> None:
    write_people(tmp_path, {"alice": 3, "bob": 2, "carol": 1, "empty": 0})
    with caplog.at_level(logging.WARNING):
        ds = IdentityFolderDataset(tmp_path, image_size=16, length=300, seed=0, same_identity_ratio=0.5)
    assert "empty" in caplog.text and ds.names == ["alice", "bob", "carol"]
    same_count = 0
    for i in range(len(ds)):
        item = ds[i]
        assert item["source"].shape == (3, 16, 16)
        source, target = item["source_id"].item(), item["target_id"].item()
        assert item["same_identity"].item() == (source == target)
        # The image really comes from the labelled person's folder.
        assert level(item["source"]) // 20 == source and level(item["target"]) // 20 == target
        if source == target:
            same_count += 1
            if source != 2:  # a person with several images: two different ones
                assert level(item["source"]) != level(item["target"])
    assert 0.4 < same_count / len(ds) < 0.6


def test_folder_length_defaults_to_the_number_of_images(tmp_path) -> None:
    write_people(tmp_path, {"a": 3, "b": 2})
    assert len(IdentityFolderDataset(tmp_path, image_size=16)) == 5


def test_folder_skips_corrupt_images(tmp_path) -> None:
    write_people(tmp_path, {"a": 1, "b": 1})
    (tmp_path / "a" / "broken.png").write_bytes(b"not an image")
    ds = IdentityFolderDataset(tmp_path, image_size=16, length=40)
    assert all(torch.isfinite(ds[i]["source"]).all() for i in range(len(ds)))
    strict = IdentityFolderDataset(tmp_path, image_size=16, length=40, skip_corrupt=False)
    with pytest.raises(ValueError, match="cannot decode"):
        for i in range(len(strict)):
            strict[i]


def test_folder_errors(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        IdentityFolderDataset(tmp_path / "missing")
    (tmp_path / "flat").mkdir()
    cv2.imwrite(str(tmp_path / "flat" / "0.png"), np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match="holds no person folders"):
        IdentityFolderDataset(tmp_path / "flat")
    write_people(tmp_path / "one", {"solo": 2, "nobody": 0})
    with pytest.raises(ValueError, match="at least 2 people"):
        IdentityFolderDataset(tmp_path / "one")
    write_people(tmp_path / "ok", {"a": 1, "b": 1})
    with pytest.raises(ValueError, match="same_identity_ratio"):
        IdentityFolderDataset(tmp_path / "ok", same_identity_ratio=-0.1)
