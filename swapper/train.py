"""Training: build everything from a composed Hydra config and fit. Used by ``train.py``."""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

import lightning as L
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf, open_dict

from swapper.models.pretrained.base import FrozenNetwork
from swapper.ops.checkpoint_io import resume_path, state_mismatch
from swapper.ops.exits import MissingFile, StartError, TrainingStopped, check_train_config, stop_of
from swapper.ops.options import check_options

log = logging.getLogger(__name__)

RANDOM_WEIGHTS_TAG = "random-weights"  # the tag of a `pretrained=random` run


def _instantiate_all(nodes: DictConfig | None) -> list:
    """A dict of ``_target_`` nodes (loggers, callbacks) → list of objects, skipping empty entries and
    factories that return None (``progress_bar`` with the bar disabled)."""
    if not nodes:
        return []
    built = [instantiate(node) for node in nodes.values() if node is not None and "_target_" in node]
    return [obj for obj in built if obj is not None]


def _not_a_tip(record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith("💡 Tip")


def quiet_known_noise() -> None:
    """Silence the lines a user cannot act on, and only those (real warnings stay visible)."""
    # torch >= 2.10 deprecates the LeafSpec that Lightning 2.6 still uses, once per fit
    warnings.filterwarnings(
        "ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated", category=FutureWarning
    )
    # the training order is step-indexed (swapper.data.datamodule.StepIndexedSampler): a mid-epoch resume
    # reads on where it stopped, which Lightning cannot know
    warnings.filterwarnings("ignore", message=r"You're resuming from a checkpoint that ended before the")
    # frozen pretrained networks stay in eval mode by design (FrozenNetwork), which Lightning warns about
    warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode", category=UserWarning)
    # Lightning advertises its cloud logger on every Trainer ("💡 Tip: ... litlogger")
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(_not_a_tip)
    # Lightning's own console handler repeats every line that Hydra's handlers (console, train.log) print
    if logging.getLogger().handlers:
        lightning_logger = logging.getLogger("lightning")
        for handler in list(lightning_logger.handlers):
            lightning_logger.removeHandler(handler)


def mark_random_weights(cfg: DictConfig) -> bool:
    """``pretrained=random``: add the ``random-weights`` tag (W&B, config.yaml) so the run's figures are
    never taken for real ones. Returns whether the switch is on."""
    if not OmegaConf.select(cfg, "pretrained.random_weights", default=False):
        return False
    tags = list(cfg.get("tags") or [])
    if RANDOM_WEIGHTS_TAG not in tags:
        with open_dict(cfg):
            cfg.tags = [*tags, RANDOM_WEIGHTS_TAG]
    return True


@rank_zero_only
def save_config(cfg: DictConfig, output_dir: Path) -> None:
    """The resolved config in the run directory: what ``infer.py`` and the comparison tools read."""
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))


def build_module(cfg: DictConfig) -> L.LightningModule:
    """The LightningModule of ``cfg.module`` (loss nodes with no target are dropped).

    Under ``pretrained=random``, one warning for the run names the frozen networks that run with random
    weights (instead of one warning per network).
    """
    random_weights = OmegaConf.select(cfg, "pretrained.random_weights", default=False)
    with warnings.catch_warnings():
        if random_weights:
            warnings.filterwarnings("ignore", message=r".* runs with RANDOM weights", category=UserWarning)
        module = instantiate(cfg.module)
    if random_weights and rank_zero_only.rank == 0:
        names = sorted(
            {type(m).__name__ for m in module.modules() if isinstance(m, FrozenNetwork) and m.random_weights}
        )
        if names:
            log.warning(
                "pretrained=random: %s run with RANDOM weights (no weights file): the losses and metrics "
                "that use them mean nothing. Smoke runs only; the run is tagged '%s'.",
                ", ".join(names),
                RANDOM_WEIGHTS_TAG,
            )
        else:
            log.info(
                "pretrained=random: every frozen network found its weights file (tagged '%s' anyway)",
                RANDOM_WEIGHTS_TAG,
            )
    return module


def run(cfg: DictConfig) -> dict[str, float]:
    """Fit (and validate) as configured; returns the final logged metrics."""
    quiet_known_noise()
    mark_random_weights(cfg)  # before config.yaml and the loggers are written
    check_train_config(cfg)  # ConfigError naming the option, before anything is built
    output_dir = Path(cfg.paths.output_dir)
    try:
        check_options(cfg)
        # "last": this run directory's newest checkpoint that loads (a requeued job), else a fresh start;
        # "hpc": Lightning's SLURM checkpoint. Anything else must be a file that loads.
        ckpt_path = resume_path(cfg.get("ckpt_path"), output_dir / "checkpoints")
    except FileNotFoundError as err:
        raise MissingFile(str(err)) from err
    except ValueError as err:
        raise StartError(str(err)) from err
    L.seed_everything(cfg.seed, workers=True)
    save_config(cfg, output_dir)

    try:  # a component that cannot be built from its options is a bad input (exit 2), not a crash
        datamodule = instantiate(cfg.data, _recursive_=True)
        module = build_module(cfg)
        callbacks = _instantiate_all(cfg.get("callbacks"))
        loggers = _instantiate_all(cfg.get("logger"))
        trainer: L.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
        # the CPU config chooses it from the hardware (swapper/ops/precision.py): say what it chose
        log.info("precision: %s", trainer.precision)
        if ckpt_path not in (None, "hpc") and (problem := state_mismatch(module.state_dict(), ckpt_path)):
            raise ValueError(f"checkpoint {ckpt_path} does not fit this config's model: {problem}")
    except (FileNotFoundError, ValueError, InstantiationException) as err:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        raise StartError(str(err)) from err
    for logger in loggers:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))

    if cfg.get("train", True):
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
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
    stopped = stop_of(trainer.callbacks)  # a guard or a signal: the caller exits with its code
    if stopped is not None:
        raise TrainingStopped(*stopped, metrics=metrics)
    return metrics
