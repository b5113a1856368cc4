"""Run guards: stop cleanly on a non-finite loss, checkpoint and stop on a cluster's pre-emption signal,
on SIGTERM and on SIGINT. A guard that stopped the run sets ``exit_code`` (see ``swapper.ops.exits``)."""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from swapper.ops.exits import EXIT_NAN, EXIT_PREEMPTED

log = logging.getLogger(__name__)


def _agree(trainer: L.Trainer, decision: bool) -> bool:
    """True on every rank when it is true on any (so all DDP ranks stop, and save, together)."""
    if trainer.world_size > 1:
        return bool(trainer.strategy.reduce_boolean_decision(decision, all=False))
    return decision


class NaNGuard(L.Callback):
    """Stops training when a logged loss (``keys``) is NaN or infinite.

    The checkpoint callbacks are frozen first (no top-k, no last) so the validation that Lightning
    runs on stopping cannot replace the last good checkpoint with diverged weights. ``tripped``
    holds the message once the guard has fired, ``exit_code`` the process's exit status.
    """

    def __init__(self, keys: Sequence[str] = ("train/g/total", "train/d/total")) -> None:
        self.keys = tuple(keys)
        self.tripped: str | None = None
        self.exit_code: int | None = None

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        bad = {}
        for key in self.keys:
            value = trainer.callback_metrics.get(key)
            if value is not None and not torch.isfinite(torch.as_tensor(value)).all():
                bad[key] = float(torch.as_tensor(value).float().flatten()[0])
        if not _agree(trainer, bool(bad)):
            return
        saved = {
            Path(path)
            for cb in trainer.checkpoint_callbacks
            if isinstance(cb, ModelCheckpoint)
            for path in (cb.last_model_path, cb.best_model_path)
            if path
        }
        kept = sorted((p for p in saved if p.is_file()), key=lambda p: p.stat().st_mtime, reverse=True)
        for callback in trainer.checkpoint_callbacks:
            if isinstance(callback, ModelCheckpoint):
                callback.save_top_k, callback.save_last = 0, False
        found = ", ".join(f"{k}={v}" for k, v in bad.items()) or "a non-finite loss on another rank"
        self.tripped = (
            f"NaNGuard: {found} at step {trainer.global_step}; training stopped. "
            "Checkpoints were left as they were"
            + (f" (last good: {kept[0]})" if kept else " (none saved yet)")
            + ". Lower the learning rate, clip gradients or check the loss weights, then resume from it."
        )
        log.error(self.tripped)
        self.exit_code = EXIT_NAN
        trainer.should_stop = True


class PreemptionCheckpoint(L.Callback):
    """On one of ``signals`` or ``stop_signals``: save ``<dirpath>/<filename>`` at the current step and stop.

    The handler only sets a flag; the checkpoint is written at the end of the running batch, where
    the state is consistent. After one of ``signals`` the handler that was installed before this one
    (Lightning's SLURM auto-requeue on SIGUSR1, submitit's requeue on SIGUSR2) runs, so the cluster
    tooling still requeues the job (exit code 75); ``stop_signals`` (SIGTERM, which SLURM sends before
    the kill, and SIGINT, even in a background job that ignores it) exit with 128 + the signal. A
    second signal before the save ends the process at once. A relaunch with ``ckpt_path=last`` (or
    this file) continues at the saved step.
    """

    def __init__(
        self,
        signals: Sequence[str] = ("SIGUSR1",),
        dirpath: str | None = None,
        filename: str = "last.ckpt",
        stop_signals: Sequence[str] = (),
    ) -> None:
        self.signals = [self._parse(name) for name in signals]
        self.stop_signals = [self._parse(name) for name in stop_signals]
        self.dirpath = dirpath
        self.filename = filename
        self.received: signal.Signals | None = None
        self.saved_path: Path | None = None
        self.tripped: str | None = None
        self.exit_code: int | None = None
        self._previous: dict[signal.Signals, Any] = {}

    @staticmethod
    def _parse(name: str | int) -> signal.Signals:
        try:
            return signal.Signals(name) if isinstance(name, int) else signal.Signals[str(name).upper()]
        except (KeyError, ValueError):
            raise ValueError(f"unknown signal {name!r}: give a name such as SIGUSR1 or SIGUSR2") from None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # after Lightning registered its own handlers (they run after ours, see _pass_on)
        if threading.current_thread() is not threading.main_thread():
            log.warning("PreemptionCheckpoint: not in the main thread, signals cannot be handled")
            return
        for sig in (*self.signals, *self.stop_signals):
            self._previous[sig] = signal.getsignal(sig)
            signal.signal(sig, self._handle)
        log.info(
            "PreemptionCheckpoint: on %s save %s and stop",
            "/".join(s.name for s in (*self.signals, *self.stop_signals)),
            self._path(trainer),
        )

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.received is not None:  # a second signal: the user or the cluster will not wait
            os.write(2, f"PreemptionCheckpoint: second signal {signum}, stopping at once\n".encode())
            os._exit(128 + signum)
        self.received = signal.Signals(signum)

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if not _agree(trainer, self.received is not None) or self.saved_path is not None:
            return
        self.saved_path = self._path(trainer)
        trainer.save_checkpoint(self.saved_path)
        trainer.should_stop = True
        name = self.received.name if self.received else "signal on another rank"
        requeue = self.received is None or self.received not in self.stop_signals
        self.exit_code = EXIT_PREEMPTED if requeue else 128 + int(self.received)
        self.tripped = (
            f"PreemptionCheckpoint: {name} received, saved {self.saved_path} at step {trainer.global_step}; "
            "stopped. Resume with ckpt_path=last in the same run directory (hydra.run.dir=<run>)"
        )
        log.warning(self.tripped)
        if requeue:
            self._pass_on()
        else:
            self._restore()

    def _path(self, trainer: L.Trainer) -> Path:
        if self.dirpath is not None:
            return Path(self.dirpath) / self.filename
        callback = trainer.checkpoint_callback
        if isinstance(callback, ModelCheckpoint) and callback.dirpath:
            return Path(callback.dirpath) / self.filename
        return Path(trainer.default_root_dir) / "checkpoints" / self.filename

    def _pass_on(self) -> None:
        previous = self._previous.get(self.received) if self.received else None
        self._restore()
        if callable(previous):  # SIG_DFL would end the process: the run stops on its own instead
            previous(self.received, None)

    def _restore(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig, handler in self._previous.items():
            if signal.getsignal(sig) == self._handle and handler is not None:
                signal.signal(sig, handler)
        self._previous = {}

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._restore()
