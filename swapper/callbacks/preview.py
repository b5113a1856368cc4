"""Preview grids: a fixed set of faces, swapped every N steps, saved as PNG and sent to the loggers."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_only
from PIL import Image
from torch import Tensor


def make_grid(rows: list[Tensor], padding: int = 2) -> np.ndarray:
    """Rows of (K, 3, H, W) images in [0, 1] → one (H', W', 3) uint8 image, a row per tensor."""
    k, _, h, w = rows[0].shape
    grid = (
        np.ones(((h + padding) * len(rows) + padding, (w + padding) * k + padding, 3), dtype=np.uint8) * 255
    )
    for r, row in enumerate(rows):
        images = (row.detach().float().clamp(0, 1).cpu().numpy().transpose(0, 2, 3, 1) * 255).round()
        for c in range(k):
            y, x = padding + r * (h + padding), padding + c * (w + padding)
            grid[y : y + h, x : x + w] = images[c].astype(np.uint8)
    return grid


class SwapPreview(L.Callback):
    """Renders ``module.preview_rows(batch)`` for K fixed validation items every ``every_n_steps``.

    The module decides the layout: labelled rows of (K, 3, H, W) images (the per-pair modules
    show A, A→A, A→B / B, B→B, B→A; identity injection shows a K×K source × target grid).

    Files go to ``<dirpath>/step_XXXXXXX.png`` and ``latest.png``; a W&B logger also receives the
    grid under ``preview/swaps``.
    """

    def __init__(self, dirpath: str, every_n_steps: int = 250, num_samples: int = 6) -> None:
        if every_n_steps <= 0 or num_samples <= 0:
            raise ValueError("every_n_steps and num_samples must be positive")
        self.dirpath = Path(dirpath)
        self.every_n_steps = every_n_steps
        self.num_samples = num_samples
        self.fixed: dict[str, Tensor] | None = None
        self.last_path: Path | None = None

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        datamodule = trainer.datamodule
        dataset = getattr(datamodule, "val_dataset", None) or getattr(datamodule, "train_dataset", None)
        if dataset is None:
            return
        items = [dataset[i] for i in range(min(self.num_samples, len(dataset)))]
        self.fixed = {key: torch.stack([item[key] for item in items]) for key in items[0]}

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args) -> None:
        step = trainer.global_step
        if self.fixed is not None and step % self.every_n_steps == 0:
            self.render(trainer, pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.fixed is not None:
            self.render(trainer, pl_module)

    @rank_zero_only
    def render(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        was_training = pl_module.training
        pl_module.eval()
        with torch.no_grad():
            batch = {k: v.to(pl_module.device) for k, v in self.fixed.items()}
            rows = pl_module.preview_rows(batch)
        pl_module.train(was_training)
        grid = make_grid([images for _, images in rows])
        self.dirpath.mkdir(parents=True, exist_ok=True)
        path = self.dirpath / f"step_{trainer.global_step:07d}.png"
        Image.fromarray(grid).save(path)
        Image.fromarray(grid).save(self.dirpath / "latest.png")
        self.last_path = path
        caption = " / ".join(label for label, _ in rows) + " (rows)"
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_image("preview/swaps", [grid], step=trainer.global_step, caption=[caption])
