"""Runs that read well in a cluster log: progress lines without a terminal, no noise, a final
checkpoint that infer.py swaps with, the `pretrained=random` smoke switch, the OpenMP default."""

from __future__ import annotations

import io
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from helpers import CONF, ROOT, compose_train
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from lightning.pytorch.callbacks import RichProgressBar, TQDMProgressBar
from omegaconf import OmegaConf

from infer import infer
from swapper.callbacks.progress import LogProgressBar, progress_bar
from swapper.ops.progress import LogProgress, format_duration
from swapper.train import RANDOM_WEIGHTS_TAG, build_module, run

NOISE = ("anonymous setting", "litlogger", "LeafSpec", "💡 Tip")


@pytest.fixture(scope="module")
def logged_run(tmp_path_factory) -> tuple[Path, str]:
    """`python train.py` with stdout and stderr to a file, as in a SLURM job: 7 steps, validation every 2."""
    out = tmp_path_factory.mktemp("cluster") / "run"
    log_file = out.parent / "job.log"
    # W&B on (offline) and not silenced: its warnings must be absent because they are not emitted
    env = {k: v for k, v in os.environ.items() if k != "WANDB_SILENT"} | {"WANDB_MODE": "offline"}
    with log_file.open("w") as sink:
        result = subprocess.run(
            [
                sys.executable,
                str(ROOT / "train.py"),
                "debug=tiny",
                "trainer.max_steps=7",
                "trainer.enable_progress_bar=true",
                "callbacks.progress.interval_s=0",  # a line every step: the run is seconds long
                f"hydra.run.dir={out}",
            ],
            cwd=ROOT,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            timeout=600,
        )
    text = log_file.read_text()
    assert result.returncode == 0, text[-3000:]
    return out, text


def test_log_file_gets_progress_lines_and_no_noise(logged_run):
    _, text = logged_run
    steps = re.findall(
        r"step (\d+)/7 \(\d+%\) \| train/g/total [\d.]+ \| [\d.]+ img/s \| elapsed [\d:]+, ETA ", text
    )
    assert steps and steps[-1] == "7", text[-3000:]
    assert "training ended at step 7" in text
    assert re.search(r"validation at step 6 \| val/rec_l1 [\d.]+", text)
    assert "it/s" not in text and "Epoch 0" not in text and "\r" not in text  # no bar frames
    assert [noise for noise in NOISE if noise in text] == []
    assert text.count("Seed set to 1234") == 1  # Lightning's lines once, not again by its own handler


def test_training_end_writes_last_checkpoint_that_infer_swaps_with(logged_run, tmp_path):
    run_dir, _ = logged_run
    saved = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert saved["global_step"] == 7  # the last validation was at step 6: written when training ended
    crops = tmp_path / "crops"
    crops.mkdir()
    for k in range(2):
        cv2.imwrite(str(crops / f"{k}.png"), np.full((64, 64, 3), 80 * k, np.uint8))
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(
            "infer",
            overrides=[f"run={run_dir}", f"input={crops}", f"output={tmp_path / 'out'}", "mode=crops"],
        )
    assert infer(cfg) == 0
    assert sorted(p.name for p in (tmp_path / "out").glob("*.png")) == ["0.png", "1.png"]


def test_no_checkpoint_at_the_end_of_a_fast_dev_run(tmp_path):
    cfg = compose_train(["debug=fdr", "logger=none"], tmp_path)
    run(cfg)
    assert not (tmp_path / "checkpoints").exists() or not list((tmp_path / "checkpoints").iterdir())


# ----------------------------------------------------------------------------- progress helpers


def test_duration_format():
    assert [format_duration(s) for s in (0, 7.4, 62, 3723, 2 * 86400 + 3723)] == [
        "0:00:00",
        "0:00:07",
        "0:01:02",
        "1:02:03",
        "2d 1:02:03",
    ]
    assert format_duration(float("inf")) == "?"


def test_log_progress_lines_have_count_rate_and_eta(caplog):
    now = [0.0]
    bar = LogProgress(10, "extract", "frame", interval_s=5, clock=lambda: now[0])
    with caplog.at_level(logging.INFO, logger="swapper.ops.progress"), bar:
        for _ in range(10):
            now[0] += 2.0  # 2 s per frame
            bar.update(1)
    assert [r.getMessage() for r in caplog.records] == [
        "extract: 3/10 (30%), 0.5 frame/s, elapsed 0:00:06, ETA 0:00:14",
        "extract: 6/10 (60%), 0.5 frame/s, elapsed 0:00:12, ETA 0:00:08",
        "extract: 9/10 (90%), 0.5 frame/s, elapsed 0:00:18, ETA 0:00:02",
        "extract: 10/10 (100%), 0.5 frame/s, elapsed 0:00:20 (done)",
    ]


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_choice(monkeypatch):
    assert progress_bar(enabled=False) is None  # Lightning refuses a bar callback when the bar is off
    monkeypatch.setattr(sys, "stdout", io.StringIO())  # a job's log file
    bar = progress_bar(interval_s=12)
    assert isinstance(bar, LogProgressBar) and bar.interval_s == 12
    monkeypatch.setattr(sys, "stdout", _Terminal())
    assert isinstance(progress_bar(), (RichProgressBar, TQDMProgressBar))  # the bar as before


# ----------------------------------------------------------------------------- pretrained=random

SMOKE = {
    "faceswap_gan": ["data.batch_size=2"],
    "simswap_224": ["data.batch_size=1", "callbacks.preview.num_samples=2"],
}


@pytest.mark.parametrize(
    "experiment", [pytest.param(e, marks=[pytest.mark.slow] if e == "simswap_224" else []) for e in SMOKE]
)
def test_random_pretrained_switch_runs_without_weights_files(experiment, tmp_path, caplog, recwarn):
    overrides = [f"experiment={experiment}", "+trainer.fast_dev_run=true", "logger=none", *SMOKE[experiment]]
    empty = tmp_path / "no_weights"
    empty.mkdir()
    with pytest.raises(Exception, match="pretrained=random"):  # without the switch: the error names it
        build_module(compose_train([*overrides, f"paths.pretrained_dir={empty}"], tmp_path / "refused"))

    cfg = compose_train([*overrides, "pretrained=random", f"paths.pretrained_dir={empty}"], tmp_path / "run")
    with caplog.at_level(logging.INFO):
        metrics = run(cfg)
    assert metrics and all(torch.isfinite(torch.tensor(v)) for v in metrics.values())
    notes = [r.getMessage() for r in caplog.records if "RANDOM weights" in r.getMessage()]
    assert len(notes) == 1 and notes[0].startswith("pretrained=random: ")  # one warning for the run
    assert not [w for w in recwarn if "RANDOM weights" in str(w.message)]  # none per network
    saved = OmegaConf.load(tmp_path / "run" / "config.yaml")
    assert saved.tags[-1] == RANDOM_WEIGHTS_TAG and saved.pretrained.random_weights is True


def test_switch_off_by_default(tmp_path):
    cfg = compose_train(["experiment=faceswap_gan"], tmp_path)
    assert cfg.pretrained.random_weights is False
    assert cfg.loss.perceptual_vggface.network.allow_random_weights is False
    assert RANDOM_WEIGHTS_TAG not in cfg.tags


# ----------------------------------------------------------------------------- OpenMP wait policy


@pytest.mark.parametrize("script", ["train", "infer"])
@pytest.mark.parametrize(("given", "expected"), [(None, "PASSIVE"), ("ACTIVE", "ACTIVE")])
def test_entry_points_set_a_passive_openmp_wait_before_torch_loads(script, given, expected):
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if given:
        env["OMP_WAIT_POLICY"] = given
    check = f"import os, sys, {script}; print('torch' in sys.modules, os.environ['OMP_WAIT_POLICY'])"
    result = subprocess.run([sys.executable, "-c", check], cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.stdout.split() == ["False", expected], result.stderr[-2000:]
