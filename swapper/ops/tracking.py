"""W&B run identity from the Hydra run: name from the overrides, group per sweep, id per run directory."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import WandbLogger


def run_id(run_dir: str | Path) -> str:
    """A W&B run id fixed by the run directory: the same folder (a requeued job) resumes the same run."""
    return hashlib.sha1(str(Path(run_dir).resolve()).encode()).hexdigest()[:16]


def run_group(group: str, run_dir: str | Path, sweep_dir: str | Path | None) -> str:
    """``group`` for a single run; ``<group>-<sweep folder>`` for a multirun job (its dir is in the sweep)."""
    if sweep_dir is None:
        return group
    sweep = Path(sweep_dir).resolve()
    if sweep in Path(run_dir).resolve().parents:
        return f"{group}-{sweep.name}"
    return group


def run_name(name: str, overrides: str | None) -> str:
    """``name`` plus the job's command-line overrides (Hydra's ``job.override_dirname``)."""
    return f"{name}:{overrides}" if overrides else name


def wandb_logger(
    project: str,
    name: str,
    save_dir: str,
    group: str | None = None,
    tags: Sequence[str] = (),
    sweep_dir: str | None = None,
    overrides: str | None = None,
    id: str | None = None,  # W&B's own argument name
    offline: bool = True,
    log_model: bool | str = False,
    **kwargs: Any,
) -> WandbLogger:
    """Lightning's WandbLogger with the name, group and id derived from the run (see the helpers above).

    ``resume="allow"`` (Lightning's default) with the directory's fixed id makes a relaunch in the
    same run directory continue the W&B run; give ``id`` to continue another run explicitly.
    """
    logger = WandbLogger(
        project=project,
        name=run_name(name, overrides),
        group=run_group(group or name, save_dir, sweep_dir),
        tags=list(tags),
        save_dir=save_dir,
        id=id or run_id(save_dir),
        resume="allow",
        offline=offline,
        log_model=log_model,
        **kwargs,
    )
    # Lightning passes anonymous=None to wandb.init, which recent W&B (0.31 here) answers on every run
    # with a warning that the setting "has no effect"; not passing it is what W&B asks for
    if logger._wandb_init.get("anonymous", False) is None:
        del logger._wandb_init["anonymous"]
    return logger
