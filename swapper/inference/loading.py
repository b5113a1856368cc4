"""Load a trained generator for inference: from a run directory (its saved config's generator node and
a checkpoint's generator weights) or from an exported generator file. No training module is built.

A generator file (``<run>/generator.safetensors``, written when training ends) holds the generator's
weights (the EMA copy when one was kept) and, in its metadata, the config node that builds it, the crop
size and the alignment template of the training crops: everything ``infer.py`` needs, in one file.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import Tensor

from swapper.models.generators import SwapGenerator
from swapper.models.pretrained.loading import load_strict

FILE_FORMAT = "swapper-generator/1"
GENERATOR_PREFIX = "generator."
EMA_PREFIX = "generator_ema.module."


@dataclass(frozen=True)
class CropSpec:
    """How the training crops were cut: ``size`` px, alignment ``template`` and its ``coverage``
    (None: the template's default)."""

    size: int
    template: str
    coverage: float | None = None


@dataclass(frozen=True)
class LoadedGenerator:
    generator: SwapGenerator
    crop: CropSpec
    origin: Path


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


def generator_node(run_cfg: DictConfig, where: str | Path) -> dict[str, Any]:
    """The config node that builds the run's generator (``module.generator``)."""
    node = (run_cfg.get("module") or {}).get("generator")
    if node is None:
        module = (run_cfg.get("module") or {}).get("_target_", "?")
        raise ValueError(f"{where}: module {module} trains no face-swap generator (no module.generator)")
    return OmegaConf.to_container(node, resolve=True)


def _recorded_template(folder: Path) -> tuple[str, float] | None:
    """(template, coverage) recorded by extraction in ``folder``/faces.jsonl (or its parent's)."""
    for meta in (folder / "faces.jsonl", folder.parent / "faces.jsonl"):
        if meta.is_file():
            for line in meta.read_text(encoding="utf-8").splitlines():
                try:
                    record = json.loads(line)
                    return str(record["template"]), float(record["coverage"])
                except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                    continue
    return None


def run_crop(run_cfg: DictConfig, default_template: str) -> CropSpec:
    """The crops a run trained on: ``data.crop_template`` when the data config states it, else what
    extraction recorded beside the training folders, else the generator's usual template."""
    data = run_cfg.get("data") or {}
    size = int(run_cfg.get("image_size", 64))
    if data.get("crop_template"):
        return CropSpec(size, str(data.crop_template))
    train = data.get("train") or {}
    for key in ("folder_a", "folder_b", "root"):
        folder = train.get(key)
        if isinstance(folder, str) and (found := _recorded_template(Path(folder).expanduser())):
            return CropSpec(size, *found)
    return CropSpec(size, default_template)


def generator_state(state: dict[str, Tensor], generator: SwapGenerator) -> dict[str, Tensor]:
    """A training module's state dict → the generator's, with the EMA copy's weights in place of the
    averaged part when the run kept one."""
    own = {k[len(GENERATOR_PREFIX) :]: v for k, v in state.items() if k.startswith(GENERATOR_PREFIX)}
    averaged = {k[len(EMA_PREFIX) :]: v for k, v in state.items() if k.startswith(EMA_PREFIX)}
    for key, value in averaged.items():
        own[generator.averaged_prefix + key] = value
    return own


def _load_into(generator: SwapGenerator, state: dict[str, Tensor], origin: Path, built_from: str) -> None:
    try:
        load_strict(generator, state, name=f"the generator built from {built_from}")
    except ValueError as err:
        raise ValueError(f"{origin}: {err}") from None


def load_generator(
    path: str | Path, checkpoint: str = "last", device: str | torch.device = "cpu"
) -> LoadedGenerator:
    """A run directory or a generator file → the generator with trained weights, in eval mode on
    ``device``, and the crop geometry it expects. Every generator weight must load (strict)."""
    path = Path(path).expanduser()
    if path.is_file():
        return read_generator_file(path, device)
    run_cfg = load_run_config(path)
    node = generator_node(run_cfg, path / "config.yaml")
    generator: SwapGenerator = instantiate(node)
    ckpt_path = find_checkpoint(path, checkpoint)
    try:
        payload = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means the same thing to the user
        raise ValueError(f"cannot read checkpoint {ckpt_path}: {err}") from err
    state = payload.get("state_dict") if isinstance(payload, dict) else None
    if state is None:
        raise ValueError(f"{ckpt_path} is not a Lightning checkpoint (no 'state_dict')")
    _load_into(generator, generator_state(state, generator), ckpt_path, str(path / "config.yaml"))
    crop = run_crop(run_cfg, generator.default_template)
    return LoadedGenerator(generator.to(device).eval(), crop, ckpt_path)


def save_generator_file(
    path: str | Path, generator: SwapGenerator, node: dict[str, Any], crop: CropSpec
) -> Path:
    """Write the generator's weights and what rebuilds it to ``path`` (safetensors), atomically."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in generator.state_dict().items()}
    metadata = {
        "format": FILE_FORMAT,
        "generator": json.dumps(node),
        "crop": json.dumps({"size": crop.size, "template": crop.template, "coverage": crop.coverage}),
    }
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    os.close(fd)
    try:
        save_file(state, tmp, metadata=metadata)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_generator_file(path: str | Path, device: str | torch.device = "cpu") -> LoadedGenerator:
    """A file written by :func:`save_generator_file` → the generator in eval mode on ``device``."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open has no items()
    except (SafetensorError, OSError, ValueError) as err:
        raise ValueError(f"{path} is neither a run directory nor a readable generator file: {err}") from None
    if metadata.get("format") != FILE_FORMAT:
        raise ValueError(f"{path} is not a swapper generator file (format {metadata.get('format')!r})")
    generator: SwapGenerator = instantiate(json.loads(metadata["generator"]))
    _load_into(generator, state, path, f"{path}'s metadata")
    crop = CropSpec(**json.loads(metadata["crop"]))
    return LoadedGenerator(generator.to(device).eval(), crop, path)


def pick_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


__all__ = [
    "CropSpec",
    "LoadedGenerator",
    "find_checkpoint",
    "generator_state",
    "load_generator",
    "load_run_config",
    "pick_device",
    "read_generator_file",
    "run_crop",
    "save_generator_file",
]
