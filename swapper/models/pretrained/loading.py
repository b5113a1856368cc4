"""Reading public checkpoints and loading them strictly, with errors a user can act on."""

from __future__ import annotations

import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

_CONTAINER_KEYS = ("state_dict", "model")  # training scripts nest the weights under these
_SHOW = 10  # how many offending keys an error lists
# what every missing-weights error ends with: the switch for runs that do not need real weights
RANDOM_WEIGHTS_HINT = (
    "For a smoke run without the weights files: `pretrained=random` on the train.py command line "
    "(allow_random_weights=True in Python); its figures mean nothing and the run is tagged random-weights."
)


def load_state_dict_file(path: str | Path, *, source_hint: str) -> dict[str, Tensor]:
    """Read a state dict from ``.pth``/``.pt``/``.tar``/``.safetensors``; unwrap common containers.

    ``source_hint`` says where the file comes from; it goes into the error when the file is missing.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"checkpoint not found: '{path}'. Get it from: {source_hint}. {RANDOM_WEIGHTS_HINT}"
        )
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError as err:
            raise ImportError(f"reading '{path}' needs safetensors: pip install safetensors") from err
        obj = load_file(str(path), device="cpu")
    else:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, ValueError) as err:
            raise ValueError(
                f"'{path}' is not a readable weights-only checkpoint ({type(err).__name__}: "
                f"{str(err).splitlines()[0] if str(err) else ''}). If it is a whole pickled model, load it "
                "in its own project and save `model.state_dict()` with torch.save."
            ) from err
    return _unwrap(obj, path)


def read_weights(
    path: str | Path | None, *, source_hint: str, allow_missing: bool = False
) -> dict[str, Tensor] | None:
    """``load_state_dict_file(path)``, or ``None`` (the caller then builds random weights) when ``path`` is
    None or, with ``allow_missing`` (a network's ``allow_random_weights``), when the file does not exist."""
    if path is None or (allow_missing and not Path(path).expanduser().is_file()):
        return None
    return load_state_dict_file(path, source_hint=source_hint)


def _unwrap(obj: object, path: Path) -> dict[str, Tensor]:
    while isinstance(obj, Mapping):
        inner = next((obj[k] for k in _CONTAINER_KEYS if isinstance(obj.get(k), Mapping)), None)
        if inner is None:
            break
        obj = inner
    if not isinstance(obj, Mapping) or not obj:
        raise ValueError(f"'{path}' does not hold a state dict (found {type(obj).__name__}).")
    bad = [k for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, Tensor)]
    if bad:
        raise ValueError(f"'{path}' is not a state dict: entries that are not tensors: {bad[:_SHOW]}")
    state = dict(obj)
    if all(k.startswith("module.") for k in state):  # saved from DataParallel / DDP
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


def load_strict(
    module: nn.Module, state_dict: Mapping[str, Tensor], *, name: str, assign: bool = False
) -> None:
    """``module.load_state_dict(strict=True)`` with a readable error listing what does not match.

    ``assign=True`` takes the checkpoint tensors as they are (for a module built on the meta device);
    floating tensors are cast to the module's dtype first.
    """
    expected = module.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    shapes = [
        f"{k}: checkpoint {tuple(state_dict[k].shape)}, model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state_dict and state_dict[k].shape != v.shape
    ]
    if missing or unexpected or shapes:
        lines = [f"the checkpoint does not fit {name}:"]
        groups = (("missing keys", missing), ("unexpected keys", unexpected), ("wrong shapes", shapes))
        for label, items in groups:
            if items:
                more = f" ... and {len(items) - _SHOW} more" if len(items) > _SHOW else ""
                lines.append(f"  {label} ({len(items)}): {', '.join(items[:_SHOW])}{more}")
        lines.append("Check that the file is the checkpoint this network expects (architecture, depth).")
        raise ValueError("\n".join(lines))
    if assign:
        state_dict = {
            k: v.to(expected[k].dtype) if v.is_floating_point() else v for k, v in state_dict.items()
        }
    module.load_state_dict(state_dict, strict=True, assign=assign)
