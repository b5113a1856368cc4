"""A run killed mid-epoch and resumed with `hydra.run.dir=<run> ckpt_path=last` equals the
uninterrupted run: every logged value after the resume point and every tensor of the final state."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import ROOT

# 32 px lite model, 64 training faces = 16 batches per epoch: the kill at step 6 and the resume from
# the step-4 checkpoint both fall mid-epoch
TINY = [
    "logger=csv", "image_size=32", "encoder.latent_size=2", "data.batch_size=4", "data.train.length=64",
    "trainer.max_steps=12", "trainer.val_check_interval=4", "trainer.limit_val_batches=1",
    "trainer.log_every_n_steps=1", "trainer.enable_progress_bar=false", "callbacks.preview.every_n_steps=4",
    "callbacks.preview.num_samples=2",
]  # fmt: skip
GAN = ["experiment=faceswap_gan_lite", "loss=[l1,adversarial_lsgan,mask]"]  # EMA, discriminators, LSGAN


def train(out: Path, *overrides: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "tests"), "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, str(ROOT / "train.py"), *TINY, *overrides, f"hydra.run.dir={out}"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip


def rows(run: Path, last_start: bool) -> dict[int, dict[str, str]]:
    """Logged values by step: the whole log, or only what the last (re)start wrote."""
    files = sorted((run / "csv").rglob("metrics.csv"), key=lambda p: len(p.parts))
    chosen = files[-1:] if last_start else files
    by_step: dict[int, dict[str, str]] = {}
    for path in chosen:
        with open(path) as f:
            for row in csv.DictReader(f):
                values = {k: v for k, v in row.items() if v not in ("", None) and k not in ("epoch", "step")}
                by_step.setdefault(int(row["step"]), {}).update(values)
    return by_step


@pytest.mark.slow
@pytest.mark.parametrize("experiment", [[], GAN], ids=["deepfakes_lite", "faceswap_gan_lite"])
def test_killed_and_resumed_run_equals_the_uninterrupted_one(experiment, tmp_path):
    straight, crashed = tmp_path / "straight", tmp_path / "crashed"
    done = train(straight, *experiment)
    assert done.returncode == 0, done.stderr[-3000:]
    killed = train(
        crashed, *experiment, "+callbacks.kill._target_=crash_helpers.KillAtStep", "+callbacks.kill.step=6"
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    saved = torch.load(crashed / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert saved["global_step"] == 4  # the resume point: mid-epoch, two steps before the kill
    resumed = train(crashed, *experiment, "ckpt_path=last")
    assert resumed.returncode == 0, (resumed.stdout + resumed.stderr)[-3000:]

    expected, got = rows(straight, last_start=False), rows(crashed, last_start=True)
    after = [step for step in sorted(expected) if step >= 4]
    assert after and set(after) <= set(got)
    for step in after:
        assert got[step] == expected[step], f"step {step}"  # same text: bit-identical floats

    final = {
        name: torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
        for name, run in (("straight", straight), ("resumed", crashed))
    }
    assert final["straight"]["global_step"] == final["resumed"]["global_step"] == 12
    a, b = final["straight"]["state_dict"], final["resumed"]["state_dict"]
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, different[:10]
    for opt_a, opt_b in zip(
        final["straight"]["optimizer_states"], final["resumed"]["optimizer_states"], strict=True
    ):
        for key, state in opt_a["state"].items():
            assert all(torch.equal(v, opt_b["state"][key][n]) for n, v in state.items() if torch.is_tensor(v))
