"""Crashes during a run: kill -9 in the middle of a checkpoint save (TMPDIR on another file system), a
full disk (a file size limit in the child), SIGTERM and SIGINT, a second signal. Each asserts the exit
code, that the last good checkpoint loads, and that no partial file survives the next start."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers import ROOT, run_script, signal_when_ready

from swapper.ops.checkpoint_io import loadable

TINY = ["debug=tiny", "logger=csv", "~callbacks.preview"]


def _env(**extra: str) -> dict[str, str]:
    path = os.pathsep.join(filter(None, [str(ROOT / "tests"), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": path, **extra}


def _step(ckpt: Path) -> int:
    return torch.load(ckpt, map_location="cpu", weights_only=True)["global_step"]


def _other_file_system(tmp_path: Path) -> Path:
    """A folder on another file system than ``tmp_path`` (/dev/shm), else beside it."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK) and shm.stat().st_dev != tmp_path.stat().st_dev:
        folder = shm / f"swapper-test-{os.getpid()}-{tmp_path.name}"
    else:
        folder = tmp_path / "tmpdir"
    folder.mkdir()
    return folder


@pytest.mark.slow
def test_kill_9_during_a_save_leaves_a_loadable_last_ckpt_and_no_temp_file(tmp_path):
    out, tmpdir = tmp_path / "run", _other_file_system(tmp_path)
    try:
        killed = subprocess.run(
            [sys.executable, str(ROOT / "train.py"), *TINY, "trainer.max_steps=8", f"hydra.run.dir={out}",
             "trainer.plugins=[{_target_:crash_helpers.KillMidSave,after:2}]"],
            cwd=ROOT, env=_env(TMPDIR=str(tmpdir)), capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
        assert list(tmpdir.iterdir()) == []  # nothing was written through $TMPDIR
    finally:
        if tmpdir.parent != tmp_path:
            for leftover in tmpdir.iterdir():
                leftover.unlink()
            tmpdir.rmdir()
    checkpoints = out / "checkpoints"
    partial = list(checkpoints.glob(".*.partial"))
    assert len(partial) == 1  # the killed save's half file, beside its target, never renamed
    assert loadable(checkpoints / "last.ckpt") is None and _step(checkpoints / "last.ckpt") == 2

    resumed = run_script("train.py", *TINY, "trainer.max_steps=6", "ckpt_path=last", f"hydra.run.dir={out}")
    text = resumed.stdout + resumed.stderr
    assert resumed.returncode == 0, text[-3000:]
    assert "removed 1 partial file" in text and f"resuming from {checkpoints / 'last.ckpt'}" in text
    assert not list(checkpoints.glob(".*.partial")) and _step(checkpoints / "last.ckpt") == 6


def _limit_file_size(limit: int):
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


@pytest.mark.slow
def test_a_full_disk_during_a_save_keeps_the_previous_checkpoint_and_exits_non_zero(tmp_path):
    out = tmp_path / "run"
    first = run_script("train.py", *TINY, f"hydra.run.dir={out}")
    assert first.returncode == 0, first.stderr[-3000:]
    last = out / "checkpoints" / "last.ckpt"
    before = last.read_bytes()
    full = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), *TINY, "trainer.max_steps=8", "ckpt_path=last",
         f"hydra.run.dir={out}"],
        cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=600,
        preexec_fn=_limit_file_size(len(before) // 3),
    )  # fmt: skip
    text = full.stdout + full.stderr
    assert full.returncode == 1, text[-3000:]
    assert "File too large" in text  # the reason (errno EFBIG), with the traceback of the failed save
    assert last.read_bytes() == before and _step(last) == 4
    assert not list((out / "checkpoints").glob(".*.partial"))  # the failed temp file was removed


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_and_sigint_save_the_current_step_and_exit_128_plus_the_signal(tmp_path, sig):
    out = tmp_path / "run"
    command = [
        sys.executable, str(ROOT / "train.py"), *TINY, "trainer.max_steps=100000",
        "trainer.val_check_interval=1000", f"hydra.run.dir={out}",
    ]  # fmt: skip

    def background() -> None:  # a shell's `cmd &` starts the job with SIGINT ignored
        signal.signal(signal.SIGINT, signal.SIG_IGN)

    code, text = signal_when_ready(command, sig, "PreemptionCheckpoint: on", _env(), background)
    assert code == 128 + sig, text[-3000:]
    assert f"{sig.name} received, saved" in text and "ckpt_path=last" in text
    step = _step(out / "checkpoints" / "last.ckpt")
    assert 1 <= step < 1000 and f"at step {step}" in text


def test_a_second_signal_ends_the_process_at_once():
    code = (
        "import os, signal, time\n"
        "from swapper.callbacks.guards import PreemptionCheckpoint\n"
        "guard = PreemptionCheckpoint(signals=[], dirpath='.', stop_signals=['SIGTERM'])\n"
        "guard.on_train_start(None, None)\n"
        "os.kill(os.getpid(), signal.SIGTERM)\n"
        "print('first:', guard.received.name, flush=True)\n"
        "os.kill(os.getpid(), signal.SIGTERM)\n"
        "time.sleep(30)\n"
        "print('still running')\n"
    )
    start = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=_env(), capture_output=True, text=True
    )
    assert result.returncode == 128 + signal.SIGTERM, result.stderr
    assert result.stdout == "first: SIGTERM\n" and "second signal 15, stopping at once" in result.stderr
    assert time.monotonic() - start < 25
