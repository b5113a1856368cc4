"""Importable by a child ``train.py`` (PYTHONPATH=tests): a checkpoint IO that kills its process
half way through a save, to test what a ``kill -9`` during a save leaves behind."""

from __future__ import annotations

import os
import signal
from typing import Any

import swapper.ops.checkpoint_io as checkpoint_io


class KillMidSave(checkpoint_io.AtomicCheckpointIO):
    """Saves normally ``after`` times, then writes half of the next checkpoint and SIGKILLs itself."""

    def __init__(self, after: int) -> None:
        super().__init__()
        self.after = after
        self.saves = 0

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        self.saves += 1
        if self.saves > self.after:
            real_save = checkpoint_io.torch.save

            def half_then_die(obj: Any, f: Any) -> None:
                real_save(obj, f)
                f.truncate(f.tell() // 2)
                f.flush()
                os.kill(os.getpid(), signal.SIGKILL)

            checkpoint_io.torch.save = half_then_die
        super().save_checkpoint(checkpoint, path, storage_options)


class KillAtStep:
    """A callback that SIGKILLs its process when training reaches ``step`` (a crash, no clean-up)."""

    def __new__(cls, step: int):
        import lightning as L

        class _Kill(L.Callback):
            def on_train_batch_end(self, trainer, *args) -> None:
                if trainer.global_step >= step:
                    os.kill(os.getpid(), signal.SIGKILL)

        return _Kill()
