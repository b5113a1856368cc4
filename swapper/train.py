"""Training: build everything from a composed Hydra config and fit. Used by ``train.py``."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)


def _instantiate_all(nodes: DictConfig | None) -> list:
    """A dict of ``_target_`` nodes (loggers, callbacks) → list of objects, skipping empty entries."""
    if not nodes:
        return []
    return [instantiate(node) for node in nodes.values() if node is not None and "_target_" in node]


@rank_zero_only
def save_config(cfg: DictConfig, output_dir: Path) -> None:
    """The resolved config in the run directory: what ``infer.py`` and the comparison tools read."""
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))


def build_module(cfg: DictConfig) -> L.LightningModule:
    """The LightningModule of ``cfg.module`` (loss nodes with no target are dropped)."""
    return instantiate(cfg.module)


def run(cfg: DictConfig) -> dict[str, float]:
    """Fit (and validate) as configured; returns the final logged metrics."""
    # "last": this run directory's newest checkpoints/last*.ckpt if there is one (a requeued job), else a
    # fresh start; "hpc": Lightning's SLURM checkpoint. Anything else must be a file.
    if cfg.get("ckpt_path") not in (None, "last", "hpc") and not Path(cfg.ckpt_path).is_file():
        raise FileNotFoundError(f"ckpt_path {cfg.ckpt_path} does not exist: give a .ckpt file to resume from")
    L.seed_everything(cfg.seed, workers=True)
    output_dir = Path(cfg.paths.output_dir)
    save_config(cfg, output_dir)

    datamodule = instantiate(cfg.data, _recursive_=True)
    module = build_module(cfg)
    callbacks = _instantiate_all(cfg.get("callbacks"))
    loggers = _instantiate_all(cfg.get("logger"))
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    for logger in loggers:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))

    if cfg.get("train", True):
        trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    metrics = {
        k: float(v) for k, v in trainer.callback_metrics.items() if torch.is_tensor(v) and v.numel() == 1
    }
    if trainer.is_global_zero and metrics:
        log.info("final metrics: %s", ", ".join(f"{k}={v:.4f}" for k, v in sorted(metrics.items())))
    if os.environ.get("WANDB_MODE") != "disabled":
        for logger in loggers:
            finalize = getattr(logger, "finalize", None)
            if finalize is not None:
                finalize("success")
            if isinstance(logger, WandbLogger) and trainer.is_global_zero:
                # close the W&B run: the next job of an in-process multirun (basic launcher, Optuna)
                # would otherwise log into this one
                logger.experiment.finish()
    return metrics
