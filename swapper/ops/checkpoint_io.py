"""Checkpoint files that are complete or absent, and the choice of the checkpoint a run resumes from.

Lightning's ``TorchCheckpointIO`` moves a file written in ``$TMPDIR``: on another file system (node-local
scratch, a shared run directory) the move is a copy, and a kill or a full disk during it leaves a
truncated ``last.ckpt`` where a good one was. Here the temporary file lives beside the target, is
fsynced and checked to load before one ``rename`` puts it in place; a killed save leaves only a
``.<name>.*.partial`` file, removed at the next start (:func:`remove_partial_files`).
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

__all__ = [
    "PARTIAL_SUFFIX",
    "AtomicCheckpointIO",
    "atomic_torch_save",
    "loadable",
    "newest_loadable",
    "remove_partial_files",
    "resume_path",
    "state_mismatch",
]

log = logging.getLogger(__name__)

PARTIAL_SUFFIX = ".partial"


def _fsync_dir(folder: Path) -> None:
    """Make the rename durable (the directory entry), where the OS allows opening a directory."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def loadable(path: str | Path) -> str | None:
    """None when ``path`` loads as a checkpoint (``torch.load(weights_only=True)``, as Lightning resumes),
    else why not. Memory-mapped: the tensors are not read, the archive and its index are."""
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            return "empty file (0 bytes)"
        payload = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:  # noqa: BLE001 - any failure means "not resumable"; the reason is reported
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        return f"does not load ({type(err).__name__}: {first[:200]})"
    if not isinstance(payload, dict) or "state_dict" not in payload:
        return "not a Lightning checkpoint (no state_dict)"
    return None


def atomic_torch_save(obj: Any, path: str | Path, verify: bool = True) -> Path:
    """``torch.save(obj, path)`` through a temporary file beside ``path``: flushed, fsynced, (``verify``)
    checked to load, renamed, directory fsynced. On any failure the previous ``path`` is untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=PARTIAL_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        if verify and (problem := loadable(tmp)) is not None:
            raise OSError(f"the checkpoint written for {path} {problem}; {path} was left as it was")
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)  # mkstemp makes it private; a checkpoint gets the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's torch checkpoint IO, with :func:`atomic_torch_save` for local paths (a trainer plugin)."""

    def __init__(self, verify: bool = True) -> None:
        self.verify = verify

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None or "://" in str(path):  # remote storage: Lightning's fsspec path
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        atomic_torch_save(checkpoint, path, self.verify)


def remove_partial_files(folders: Iterable[str | Path]) -> list[Path]:
    """Delete the temporary files that killed saves left in ``folders``; returns them."""
    removed = []
    for folder in map(Path, folders):
        if not folder.is_dir():
            continue
        for stale in folder.glob(f".*{PARTIAL_SUFFIX}"):
            stale.unlink(missing_ok=True)
            removed.append(stale)
    if removed:
        log.warning(
            "removed %d partial file(s) of interrupted saves: %s", len(removed), ", ".join(map(str, removed))
        )
    return removed


def newest_loadable(folder: str | Path) -> tuple[Path | None, list[tuple[Path, str]]]:
    """The checkpoint in ``folder`` to resume from: ``last*.ckpt`` newest first, then any other ``*.ckpt``
    newest first; the first that loads. Also returns the (file, reason) pairs skipped on the way."""
    folder = Path(folder)
    files = (
        sorted(folder.glob("*.ckpt"), key=lambda p: p.stat().st_mtime, reverse=True)
        if folder.is_dir()
        else []
    )
    ordered = sorted(files, key=lambda p: not p.name.startswith("last"))  # stable: newest first within each
    skipped = []
    for candidate in ordered:
        problem = loadable(candidate)
        if problem is None:
            return candidate, skipped
        skipped.append((candidate, problem))
    return None, skipped


def resume_path(ckpt_path: str | None, checkpoints_dir: str | Path) -> str | None:
    """The file ``trainer.fit(ckpt_path=...)`` gets for the ``ckpt_path`` option, partial files removed first.

    ``last``: the newest checkpoint in ``checkpoints_dir`` that loads (see :func:`newest_loadable`; the
    skipped ones are logged), None (a fresh start) when there is none at all; ``hpc`` and None pass
    through; anything else must be a file that loads. Raises ``ValueError`` naming the file otherwise.
    """
    remove_partial_files([checkpoints_dir])
    if ckpt_path in (None, "hpc"):
        return ckpt_path
    if ckpt_path != "last":
        path = Path(ckpt_path).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"ckpt_path={ckpt_path}: no such file; give a .ckpt file to resume from")
        if (problem := loadable(path)) is not None:
            raise ValueError(f"ckpt_path={ckpt_path}: {problem}; give a checkpoint written by train.py")
        return str(path)
    found, skipped = newest_loadable(checkpoints_dir)
    for path, problem in skipped:
        log.warning("ckpt_path=last: skipped %s: %s", path, problem)
    if found is None and skipped:
        raise ValueError(
            f"ckpt_path=last: no checkpoint in {checkpoints_dir} loads (skipped {len(skipped)}, see above); "
            "give ckpt_path=<file>, or remove them to start over"
        )
    if found is None:
        log.info("ckpt_path=last: no checkpoint in %s, starting from scratch", checkpoints_dir)
        return None
    log.info("ckpt_path=last: resuming from %s", found)
    return str(found)


def state_mismatch(expected: dict[str, torch.Tensor], path: str | Path) -> str | None:
    """None when the checkpoint's ``state_dict`` has exactly ``expected``'s keys and shapes, else what
    differs (a checkpoint of another architecture fails here, before training, with the names)."""
    saved = torch.load(path, map_location="cpu", weights_only=True, mmap=True)["state_dict"]
    missing = [k for k in expected if k not in saved]
    unexpected = [k for k in saved if k not in expected]
    shapes = [
        f"{k} {tuple(saved[k].shape)} vs {tuple(v.shape)}"
        for k, v in expected.items()
        if k in saved and tuple(saved[k].shape) != tuple(v.shape)
    ]
    parts = [
        f"{label} ({len(items)}): {', '.join(items[:3])}{' ...' if len(items) > 3 else ''}"
        for label, items in (("missing", missing), ("unexpected", unexpected), ("other shape", shapes))
        if items
    ]
    return "; ".join(parts) or None
