"""Held-out time split of real face folders, even validation sampling, landmark masks per crop."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from swapper.data.datasets import FaceFolder, PairFolderDataset, spread_order, time_split
from swapper.faces.alignment import estimate, get_template, transform_points

SIZE = 32  # stored crop side


def make_folder(
    folder: Path, videos: dict[str, list[int]], photos: int = 0, landmarks: bool = False
) -> dict[str, tuple[str, int]]:
    """Crops with a faces.jsonl as extraction writes it; returns file name → (source, frame)."""
    folder.mkdir(parents=True)
    template = get_template("mean_face")
    # a frame face: the template's 5 points in a 100 px frame, shifted so the matrix is not the identity
    frame_points = template.points5 * 50 + 20
    matrix = estimate(frame_points, template, SIZE)
    where, lines = {}, []
    items = [(f"/clips/{v}.mp4", f) for v, frames in videos.items() for f in frames]
    items += [(f"/photos/p{k:02d}.jpg", 0) for k in range(photos)]
    for source, frame in items:
        name = f"{Path(source).stem}_{frame:06d}_0.png"
        cv2.imwrite(str(folder / name), np.full((SIZE, SIZE, 3), frame % 256, np.uint8))
        face = {"file": name, "box": [0, 0, 1, 1], "score": 1.0, "matrix": matrix.tolist(),
                "landmarks5": frame_points.tolist() if landmarks else None, "landmarks68": None}  # fmt: skip
        record = {"source": source, "frame": frame, "prefix": Path(source).stem, "image_size": [100, 100],
                  "template": "mean_face", "coverage": 0.625, "size": SIZE, "faces": [face]}  # fmt: skip
        lines.append(json.dumps(record))
        where[name] = (source, frame)
    (folder / "faces.jsonl").write_text("\n".join(lines) + "\n")
    return where


def test_time_split_keeps_a_gap_and_holds_out_the_end_of_each_video() -> None:
    groups = ["x"] * 100 + ["y"] * 40 + ["z"]
    frames = list(range(100)) + list(range(0, 80, 2)) + [7]
    train = time_split(groups, frames, "train", 0.2, gap=10)
    val = time_split(groups, frames, "val", 0.2, gap=10)
    assert not set(train) & set(val)
    for g in ("x", "y"):
        t = [frames[i] for i in train if groups[i] == g]
        v = [frames[i] for i in val if groups[i] == g]
        assert min(v) - max(t) > 10  # no training frame within the gap of a validation frame
        assert v == sorted(v) and max(v) == max(f for f, h in zip(frames, groups, strict=True) if h == g)
    assert [frames[i] for i in val if groups[i] == "x"] == list(range(80, 100))  # the last 20 %
    assert [frames[i] for i in train if groups[i] == "x"] == list(range(0, 70))  # 70-79: the gap
    assert [frames[i] for i in val if groups[i] == "y"] == list(range(64, 80, 2))  # 8 of 40
    assert [frames[i] for i in train if groups[i] == "y"] == list(range(0, 54, 2))  # 54 ≤ 64 - 10: gap
    assert 140 in train and 140 not in val  # a one-frame group cannot be split: it trains
    assert time_split(groups, frames, "val", 0.2, gap=10) == val  # deterministic


def test_face_folder_split_by_video_time(tmp_path: Path, caplog) -> None:
    where = make_folder(tmp_path / "f", {"clip1": list(range(0, 200)), "clip2": list(range(0, 100, 2))})
    with caplog.at_level(logging.INFO):
        train = FaceFolder(tmp_path / "f", 16, split="train", val_fraction=0.15, gap=30)
        val = FaceFolder(tmp_path / "f", 16, split="val", val_fraction=0.15, gap=30)
    assert "val split of clip1.mp4: 30 of 200 crop(s), frames 170-199" in caplog.text
    assert not {p.name for p in train.files} & {p.name for p in val.files}
    for source in ("/clips/clip1.mp4", "/clips/clip2.mp4"):
        t = [where[p.name][1] for p in train.files if where[p.name][0] == source]
        v = [where[p.name][1] for p in val.files if where[p.name][0] == source]
        assert v and t and min(v) - max(t) > 30
    assert len(val) == 30 + 8 and len(train) == 140 + 27  # clip2: 50 frames (0-98), 84-98 held out, 54-82 gap
    assert [p.name for p in FaceFolder(tmp_path / "f", 16, split="val").files] == [p.name for p in val.files]
    assert len(FaceFolder(tmp_path / "f", 16)) == 250  # no split: every crop
    assert train[0].shape == (3, 16, 16)


def test_photos_without_metadata_split_by_file_name(tmp_path: Path, caplog) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    for k in range(10):
        cv2.imwrite(str(folder / f"{9 - k:02d}.png"), np.zeros((8, 8, 3), np.uint8))
    with caplog.at_level(logging.INFO):
        val = FaceFolder(folder, 8, split="val", val_fraction=0.2)
    assert "split by sorted file name" in caplog.text and "no faces.jsonl" in caplog.text
    assert [p.name for p in val.files] == ["08.png", "09.png"]
    assert len(FaceFolder(folder, 8, split="train", val_fraction=0.2)) == 8  # photos have no gap
    make_folder(tmp_path / "short", {"c": list(range(5))})
    with pytest.raises(ValueError, match="split is empty"):
        FaceFolder(tmp_path / "short", 8, split="train", gap=30)


def test_spread_order_prefixes_span_the_range() -> None:
    assert spread_order(8) == [0, 4, 2, 6, 1, 5, 3, 7]
    assert spread_order(6) == [0, 4, 2, 1, 5, 3]
    for n in (1, 5, 64, 100):
        assert sorted(spread_order(n)) == list(range(n))


def test_validation_items_are_drawn_evenly_across_the_held_out_frames(tmp_path: Path) -> None:
    make_folder(tmp_path / "a", {"a": list(range(0, 400))})  # 60 held out: frames 340-399
    make_folder(tmp_path / "b", {"b": list(range(0, 200))})  # 30 held out: frames 170-199
    ds = PairFolderDataset(tmp_path / "a", tmp_path / "b", 16, length=16, split="val")
    assert [ds.indices(i) for i in range(4)] == [(1, 0), (31, 15), (16, 8), (46, 23)]  # slots 0, 8, 4, 12
    a_indices = sorted(ds.indices(i)[0] for i in range(16))
    assert a_indices == [int((k + 0.5) * 60 / 16) for k in range(16)]  # one per sixteenth of the range
    frames = [int(ds.a.files[i].stem.split("_")[1]) for i in a_indices]
    assert frames[0] < 345 and frames[-1] > 395
    first = ds[1]["a"]  # the image encodes the frame (grey level = frame % 256)
    assert round(float(first[0, 0, 0]) * 255) == int(ds.a.files[31].stem.split("_")[1]) % 256
    again = PairFolderDataset(tmp_path / "a", tmp_path / "b", 16, length=16, split="val")
    assert [again.indices(i) for i in range(16)] == [ds.indices(i) for i in range(16)]


def test_masks_and_region_weights_follow_the_stored_landmarks(tmp_path: Path) -> None:
    make_folder(tmp_path / "a", {"a": list(range(10))}, landmarks=True)
    make_folder(tmp_path / "b", {"b": list(range(10))}, landmarks=False)
    plain = PairFolderDataset(tmp_path / "a", tmp_path / "b", 64)
    assert set(plain[0]) == {"a", "b"}  # off by default
    ds = PairFolderDataset(tmp_path / "a", tmp_path / "b", 64, with_masks=True, eyes_weight=3.0,
                           mouth_weight=2.0, background_weight=0.1)  # fmt: skip
    item = ds[0]
    assert set(item) == {"a", "b", "a_mask", "a_weights", "b_mask", "b_weights"}
    assert item["a_mask"].shape == item["a_weights"].shape == (1, 64, 64)
    batch = torch.utils.data.default_collate([ds[0], ds[1]])
    assert batch["a_weights"].shape == (2, 1, 64, 64)
    # the crop's landmarks: the template's points, frame → 32 px crop by the stored matrix, then resized
    # to 64 px about pixel centres (as cv2.resize does): x64 = (x32 + 0.5) · 2 − 0.5
    points = get_template("mean_face").points5 * 64 + 0.5
    frame_points = get_template("mean_face").points5 * 50 + 20
    matrix = estimate(frame_points, get_template("mean_face"), SIZE)
    np.testing.assert_allclose((transform_points(frame_points, matrix) + 0.5) * 2 - 0.5, points, atol=1e-6)
    w, m = item["a_weights"][0].numpy(), item["a_mask"][0].numpy()
    eye = np.round(points[0]).astype(int)
    mouth = np.round((points[3] + points[4]) / 2).astype(int)
    assert w[eye[1], eye[0]] == pytest.approx(3.0)
    assert w[mouth[1], mouth[0]] == pytest.approx(2.0)
    assert w[0, 0] == pytest.approx(0.1) and m[0, 0] == 0.0 and m[32, 32] == 1.0
    assert w[32, 32] == pytest.approx(1.0)  # the nose: face, neither eyes nor mouth
    assert torch.equal(item["b_mask"], torch.ones(1, 64, 64))  # no landmarks stored: ones
    assert torch.equal(item["b_weights"], torch.ones(1, 64, 64))


def test_expression_measures_are_standardised_per_person(tmp_path: Path) -> None:
    from swapper.metrics.real_faces import expression_features
    from tests.metrics.test_real_faces import face68

    make_folder(tmp_path / "a", {"a": list(range(10))})
    make_folder(tmp_path / "b", {"b": list(range(10))})
    mouths = {"a": np.linspace(0.0, 0.9, 10), "b": np.linspace(0.5, 0.6, 10)}  # b barely opens her mouth
    for side in ("a", "b"):
        records = [json.loads(line) for line in (tmp_path / side / "faces.jsonl").read_text().splitlines()]
        for record in records[:-1]:  # the last crop keeps no 68 points
            record["faces"][0]["landmarks68"] = (face68(1.0, mouths[side][record["frame"]]) * 9 + 20).tolist()
        (tmp_path / side / "faces.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    ds = PairFolderDataset(tmp_path / "a", tmp_path / "b", 64, with_expression=True)
    items = [ds.a.item(i)["expression"] for i in range(10)]
    assert items[0].shape == (6,)
    assert torch.isnan(items[-1]).all()  # no 68 landmarks: NaN, left out by the loss
    a = torch.stack(items[:-1]).numpy()
    np.testing.assert_allclose(a[:, 1].mean(), 0.0, atol=1e-6)  # the mouth measure: z-scores over A
    np.testing.assert_allclose(a[:, 1].std(), 1.0, atol=1e-6)
    raw = expression_features(np.stack([face68(1.0, m) for m in mouths["a"][:-1]]))[:, 1]
    np.testing.assert_allclose(a[:, 1], (raw - raw.mean()) / raw.std(), atol=1e-5)
    # each person against herself: B's small mouth changes span the same standard range as A's large ones
    b = torch.stack([ds.b.item(i)["expression"] for i in range(9)]).numpy()
    np.testing.assert_allclose(b[:, 1], a[:, 1], atol=1e-4)
    assert set(ds[0]) == {"a", "b", "a_expression", "b_expression"}
    # pooled: each person's own mean, one scale: B's mouth changes are small next to A's (0.1 vs 0.9 range)
    pooled = PairFolderDataset(
        tmp_path / "a", tmp_path / "b", 64, with_expression=True, expression_scale="pooled"
    )
    pa = torch.stack([pooled.a.item(i)["expression"] for i in range(9)]).numpy()[:, 1]
    pb = torch.stack([pooled.b.item(i)["expression"] for i in range(9)]).numpy()[:, 1]
    np.testing.assert_allclose(pa.mean(), 0.0, atol=1e-6)
    np.testing.assert_allclose(pb.mean(), 0.0, atol=1e-6)
    np.testing.assert_allclose(pb, pa * 0.1 / 0.9, atol=1e-4)  # the raw measures' spread ratio
    np.testing.assert_allclose((pa**2 + pb**2).mean() / 2, 1.0, rtol=1e-4)
    with pytest.raises(ValueError, match="expression_scale"):
        PairFolderDataset(tmp_path / "a", tmp_path / "b", 64, with_expression=True, expression_scale="global")
    make_folder(tmp_path / "c", {"c": list(range(4))}, landmarks=True)  # 5 points only
    with pytest.raises(ValueError, match="68-point landmarks"):
        FaceFolder(tmp_path / "c", 64, with_expression=True)


def test_landmarks_come_in_the_grid_sample_frame_with_each_persons_mean(tmp_path: Path) -> None:
    from tests.metrics.test_real_faces import face68

    make_folder(tmp_path / "a", {"a": list(range(6))})
    make_folder(tmp_path / "b", {"b": list(range(6))})
    pixels = {}
    for side, shift in (("a", 0.0), ("b", 2.0)):
        records = [json.loads(line) for line in (tmp_path / side / "faces.jsonl").read_text().splitlines()]
        for record in records[:-1]:  # the last crop keeps no 68 points
            points = face68(1.0, 0.1 * record["frame"]) * 9 + 20 + shift
            record["faces"][0]["landmarks68"] = points.tolist()
            matrix = np.asarray(record["faces"][0]["matrix"])
            pixels[(side, record["frame"])] = transform_points(points, matrix)  # in the stored 32 px crop
        (tmp_path / side / "faces.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    ds = PairFolderDataset(tmp_path / "a", tmp_path / "b", 64, with_landmarks=True)
    item = ds[2]
    assert set(item) == {"a", "b", "a_landmarks", "b_landmarks", "a_landmarks_mean", "b_landmarks_mean"}
    # a 32 px crop's pixel p is the 64 px crop's 2p + 0.5; the grid_sample frame is (2x + 1) / 64 - 1
    expected = (2 * ((pixels[("a", 2)] + 0.5) * 2 - 0.5) + 1) / 64 - 1
    np.testing.assert_allclose(item["a_landmarks"].numpy(), expected, atol=1e-5)
    assert torch.isnan(ds.a.item(5)["landmarks"]).all()  # no 68 points: NaN, not morphed
    mean_a = np.mean([(2 * ((pixels[("a", f)] + 0.5) * 2 - 0.5) + 1) / 64 - 1 for f in range(5)], 0)
    np.testing.assert_allclose(item["a_landmarks_mean"].numpy(), mean_a, atol=1e-5)
    assert not torch.allclose(item["a_landmarks_mean"], item["b_landmarks_mean"])  # each person her own
    make_folder(tmp_path / "c", {"c": list(range(4))}, landmarks=True)  # 5 points only
    with pytest.raises(ValueError, match="68-point landmarks"):
        FaceFolder(tmp_path / "c", 64, with_landmarks=True)
