"""Test helpers: composing the real Hydra configs, running entry points in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

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


def train_tiny_on_two_cpu_processes(out: Path, *overrides: str) -> subprocess.CompletedProcess:
    """`python train.py trainer=ddp_cpu debug=tiny` (2 gloo processes, 4 steps) into ``out``."""
    return run_script(
        "train.py", *overrides, "trainer=ddp_cpu", "debug=tiny", "logger=csv", f"hydra.run.dir={out}"
    )
