"""Rebuild a trained model from its run directory (saved config + checkpoint)."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

# Parts of a training module that inference never needs: frozen loss networks may have no
# weights on the inference machine, and discriminators are training-only.
TRAINING_ONLY_PREFIXES = ("losses.", "discriminators.", "discriminator.")


def find_checkpoint(run_dir: Path, checkpoint: str = "last") -> Path:
    """``last``, ``best`` or an explicit path → an existing checkpoint file (clear errors otherwise)."""
    if checkpoint not in ("last", "best"):
        path = Path(checkpoint).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint {path} does not exist")
        return path
    ckpt_dir = run_dir / "checkpoints"
    candidates = [ckpt_dir / "last.ckpt"] if checkpoint == "last" else sorted(ckpt_dir.glob("best-*.ckpt"))
    found = [p for p in candidates if p.is_file()]
    if not found:
        raise FileNotFoundError(
            f"no {checkpoint!r} checkpoint in {ckpt_dir}: did the run save one? "
            "(runs with debug=fdr or callbacks=none write none)"
        )
    return found[-1]


def load_run_config(run_dir: str | Path) -> DictConfig:
    run_dir = Path(run_dir).expanduser()
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run directory {run_dir} does not exist")
    path = run_dir / "config.yaml"
    if not path.is_file():
        raise FileNotFoundError(
            f"{run_dir} has no config.yaml: is it a swapper run directory (outputs/<name>/<time>)?"
        )
    return OmegaConf.load(path)


def load_model(
    run_dir: str | Path, checkpoint: str = "last", device: str | torch.device = "cpu"
) -> tuple[L.LightningModule, DictConfig]:
    """The run's module with trained weights, in eval mode on ``device``.

    Everything the swap needs must load: a missing or mis-shaped generator weight is an error
    naming the keys; only training-only parts (losses, discriminators) are left out.
    """
    run_dir = Path(run_dir).expanduser()
    cfg = load_run_config(run_dir)
    ckpt_path = find_checkpoint(run_dir, checkpoint)
    module_cfg = OmegaConf.to_container(cfg.module, resolve=True)
    module_cfg["losses"] = {"inference": {"_target_": "swapper.losses.reconstruction.L1Loss"}}
    for key in ("discriminator", "discriminator_a", "discriminator_b"):
        if key in module_cfg:
            module_cfg[key] = None
    module = instantiate(OmegaConf.create(module_cfg))
    try:
        payload = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means the same thing to the user
        raise ValueError(f"cannot read checkpoint {ckpt_path}: {err}") from err
    state = payload.get("state_dict") if isinstance(payload, dict) else None
    if state is None:
        raise ValueError(f"{ckpt_path} is not a Lightning checkpoint (no 'state_dict')")
    state = {k: v for k, v in state.items() if not k.startswith(TRAINING_ONLY_PREFIXES)}
    expected = {k for k in module.state_dict() if not k.startswith(TRAINING_ONLY_PREFIXES)}
    missing = sorted(expected - state.keys())
    unexpected = sorted(state.keys() - expected)
    own = module.state_dict()
    mismatched = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in sorted(expected & state.keys())
        if state[k].shape != own[k].shape
    ]
    if missing or unexpected or mismatched:
        raise ValueError(
            f"checkpoint {ckpt_path} does not match the model built from {run_dir / 'config.yaml'}:\n"
            + "".join(
                f"  {title}: {items[:8]}{' …' if len(items) > 8 else ''}\n"
                for title, items in (
                    ("missing", missing),
                    ("unexpected", unexpected),
                    ("shape mismatch", mismatched),
                )
                if items
            )
        )
    module.load_state_dict(state, strict=False)
    return module.to(device).eval(), cfg


def pick_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)
