"""Test helpers: composing the real Hydra configs, running entry points in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from swapper.faces.alignment import get_template
from swapper.faces.detection import Face

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
SHARED = ROOT.parent / "shared"
REFERENCE = ROOT / "tests" / "reference"  # key/shape lists and parameter counts of the public models

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("WANDB_DISABLE_GIT", "true")


def compose_train(overrides: list[str], output_dir: Path, config_name: str = "train") -> DictConfig:
    """Compose ``conf/<config_name>.yaml`` as `python train.py <overrides>` would, run dir = output_dir."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name, overrides=overrides, return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(output_dir)
        cfg.hydra.job.num = 0
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg.hydra
    return cfg


def run_script(script: str, *args: str, cwd: Path = ROOT, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run an entry point in a fresh interpreter (Hydra and DDP state stay out of the test process)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, str(ROOT / script), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def extract_clip(clip: Path, output: Path, tmp_path: Path, *overrides: str) -> None:
    """`python -m swapper.extract` of ``clip`` into ``output`` (largest face, 96 px, plus ``overrides``);
    fails the test with the log's tail when it does not exit 0."""
    result = subprocess.run(
        [sys.executable, "-m", "swapper.extract", f"input={clip}", f"output={output}", "select=largest",
         "size=96", "progress=false", f"hydra.run.dir={tmp_path / ('h_' + output.name)}", *overrides],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]


def train_tiny_on_two_cpu_processes(out: Path, *overrides: str) -> subprocess.CompletedProcess:
    """`python train.py trainer=ddp_cpu debug=tiny` (2 gloo processes, 4 steps) into ``out``."""
    return run_script(
        "train.py", *overrides, "trainer=ddp_cpu", "debug=tiny", "logger=csv", f"hydra.run.dir={out}"
    )


def experiment_overrides(
    experiment: str, folders: tuple[Path, Path] = (Path("/crops/a"), Path("/crops/b"))
) -> list[str]:
    """``experiment=<name>``, plus the two crop folders that real-pair experiments (``*_real``) need."""
    overrides = [f"experiment={experiment}"]
    if experiment.endswith("_real"):
        overrides += [f"data.train.folder_a={folders[0]}", f"data.train.folder_b={folders[1]}"]
    return overrides


def write_face_folders(root: Path, count: int = 4, size: int = 32) -> tuple[Path, Path]:
    """Two folders of plain square images standing in for the crops of two people."""
    import cv2
    import numpy as np

    for name in ("a", "b"):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            cv2.imwrite(str(root / name / f"{i}.png"), np.full((size, size, 3), 40 * i + 20, np.uint8))
    return root / "a", root / "b"


def signal_when_ready(
    command: list[str], sig: int, ready: str, env: dict[str, str] | None = None, preexec_fn=None
) -> tuple[int, str]:
    """Start ``command``, wait for a line containing ``ready`` (its guards are installed), let it
    train 3 s, send ``sig``; returns (exit code, all its output)."""
    import queue
    import signal as _signal
    import threading
    import time

    def pump(stream, sink: queue.Queue) -> None:
        for line in stream:
            sink.put(line)
        sink.put(None)

    env = env if env is not None else {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        preexec_fn=preexec_fn,
    )  # fmt: skip
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=pump, args=(proc.stdout, lines), daemon=True).start()
    output: list[str] = []
    try:
        deadline = time.monotonic() + 120
        while not any(ready in line for line in output):
            line = lines.get(timeout=max(1.0, deadline - time.monotonic()))
            assert line is not None, "".join(output)[-3000:]
            output.append(line)
        time.sleep(3)  # a few training steps
        assert proc.poll() is None, "the run ended before the signal"
        proc.send_signal(_signal.Signals(sig))
        code = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    while (line := lines.get(timeout=10)) is not None:
        output.append(line)
    return code, "".join(output)


class FakeDetector:
    """Stands in for a real detector: one face (ArcFace layout, half the image) on any image that is
    not dark, none on a dark one."""

    def __call__(self, image: np.ndarray) -> list[Face]:
        if image.mean() < 10:
            return []
        h, w = image.shape[:2]
        side = min(h, w) / 2
        lm = get_template("arcface").points5 * side + [w / 4, h / 4]
        return [Face(np.array([w / 4, h / 4, w / 4 + side, h / 4 + side]), 0.99, lm)]
