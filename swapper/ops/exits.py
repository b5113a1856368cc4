"""How a training run ends: documented exit codes, option checks before anything is built, and the
clean-up of a run folder whose start failed.

Exit codes of ``train.py`` (also in the README):

====  =====================================================================================
0     finished (``max_steps`` / ``max_epochs`` reached)
1     an unexpected exception (the traceback is printed)
2     a bad option value, input or checkpoint: the message names it; nothing was trained
3     ``NaNGuard`` stopped on a non-finite loss; the checkpoints are the last good ones
75    a pre-emption signal (SIGUSR1/SIGUSR2): ``last.ckpt`` saved, the job is requeued (EX_TEMPFAIL)
130   SIGINT, 143 SIGTERM (128 + the signal): ``last.ckpt`` saved at the current step
====  =====================================================================================
"""

from __future__ import annotations

import logging
import math
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

__all__ = [
    "EXIT_BAD_INPUT",
    "EXIT_ERROR",
    "EXIT_NAN",
    "EXIT_OK",
    "EXIT_PREEMPTED",
    "START_ERRORS",
    "ConfigError",
    "MissingFile",
    "StartError",
    "TrainingStopped",
    "check_train_config",
    "remove_unstarted_run",
    "stop_of",
]

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_BAD_INPUT = 2
EXIT_NAN = 3
EXIT_PREEMPTED = 75


class ConfigError(ValueError):
    """A bad option value; the message names the option (exit code 2, no traceback)."""


class StartError(ConfigError):
    """A component could not be built from its options (a missing file, a bad value): exit code 2."""


class MissingFile(FileNotFoundError):
    """A file an option names does not exist (exit code 2, like :class:`StartError`)."""


START_ERRORS = (ConfigError, MissingFile)  # a failed start: the message, exit code 2, no run folder left


class TrainingStopped(RuntimeError):
    """Training stopped before its end (a guard or a signal): ``code`` is the exit code, ``metrics`` the
    last logged values (a sweep still records them)."""

    def __init__(self, code: int, reason: str, metrics: dict[str, float] | None = None) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.metrics = metrics or {}


def stop_of(callbacks: Iterable[Any]) -> tuple[int, str] | None:
    """(exit code, reason) of the first callback that stopped the run (``exit_code`` set), else None."""
    for callback in callbacks:
        code = getattr(callback, "exit_code", None)
        if code:
            return code, getattr(callback, "tripped", None) or type(callback).__name__
    return None


def _positive(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and v > 0


def _non_negative(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and v >= 0


def _positive_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v > 0


# leaf name → (test, what it must be); applied wherever the name appears (optimizer.generator.lr, ...)
_BY_NAME = {
    "lr": (_positive, "a positive number"),
    "batch_size": (_positive_int, "a positive integer"),
    "image_size": (_positive_int, "a positive integer"),
    "num_workers": (lambda v: isinstance(v, int) and v >= 0, "an integer >= 0"),
    "weight_decay": (_non_negative, "a number >= 0"),
    "every_n_steps": (_positive_int, "a positive integer"),
}
_BY_PATH = {
    "trainer.max_steps": (lambda v: v == -1 or _positive_int(v), "a positive integer (or -1: no limit)"),
    "trainer.max_epochs": (
        lambda v: v is None or v == -1 or _positive_int(v),
        "null, -1 or a positive integer",
    ),
    "trainer.val_check_interval": (lambda v: v is None or _positive(v), "a positive number"),
    "trainer.log_every_n_steps": (_positive_int, "a positive integer"),
    "seed": (lambda v: isinstance(v, int) and v >= 0, "an integer >= 0"),
}


def _leaves(node: Any, prefix: str = ""):
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _leaves(value, f"{prefix}{key}.")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _leaves(value, f"{prefix}{i}.")
    else:
        yield prefix[:-1], node


_PAIR_FOLDERS = "swapper.data.datasets.PairFolderDataset"  # the only data with landmarks for the morph


def check_train_config(cfg: DictConfig) -> None:
    """Raise :class:`ConfigError` naming every option whose value cannot work, before anything is built."""
    try:
        container = OmegaConf.to_container(cfg, resolve=True)
    except Exception as err:  # noqa: BLE001 - OmegaConf's errors name the key; no traceback for them
        raise ConfigError(f"the configuration does not resolve: {err}") from None
    problems = []
    for path, value in _leaves(container):
        name = path.rsplit(".", 1)[-1]
        rule = _BY_PATH.get(path) or _BY_NAME.get(name)
        if path.startswith("loss.") and name == "weight":
            rule = (_non_negative, "a number >= 0")
        elif ".betas." in f"{path}.":  # optimizer.generator.betas.0
            rule = (lambda v: isinstance(v, int | float) and 0 <= v < 1, "in [0, 1)")
        if rule is None or (value is None and path not in _BY_PATH):
            continue  # null means "not used" / "the default" for the options matched by name
        test, wanted = rule
        if not test(value):
            problems.append(f"{path}={value!r} must be {wanted}")
    train_data = (container.get("data") or {}).get("train") or {}
    if container.get("morph") is not None and train_data.get("_target_") != _PAIR_FOLDERS:
        morph = str(container["morph"].get("_target_", "?")).rsplit(".", 1)[-1]
        problems.append(
            f"morph={morph} needs real pairs with 68-point landmarks (data=pairs), "
            f"the training data is {train_data.get('_target_')}"
        )
    if problems:
        raise ConfigError("bad option value(s): " + "; ".join(problems))


# what Hydra and run() write before the first training step; anything else is earlier work
_START_FILES = {".hydra", "config.yaml", "train.log", "wandb", "csv", "checkpoints", "previews"}


def remove_unstarted_run(run_dir: str | Path) -> bool:
    """Delete ``run_dir`` when a start failed and it holds only what the start wrote (no checkpoint, no
    metrics): a failed start leaves no run folder behind. Returns whether it was removed."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return False
    entries = list(run_dir.iterdir())
    if any(e.name not in _START_FILES for e in entries):
        return False
    if any((run_dir / "checkpoints").glob("*.ckpt")) or any((run_dir / "csv").rglob("metrics.csv")):
        return False
    shutil.rmtree(run_dir, ignore_errors=True)
    return True
