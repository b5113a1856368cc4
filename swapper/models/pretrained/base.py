"""The shared wrapper of every frozen pretrained network (identity, perceptual)."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from swapper.models.pretrained.loading import RANDOM_WEIGHTS_HINT, load_strict


class FrozenNetwork(nn.Module):
    """A pretrained network used as a fixed function.

    Parameters never require grad and the module stays in eval mode even under ``.train()`` (so a
    LightningModule's ``model.train()`` cannot switch BatchNorm/Dropout back on), while gradients
    still flow to the input: an identity loss back-propagates through it into the generator.
    Subclasses build their network with ``_build``, which returns it frozen; ``random_weights`` says
    whether it got random weights (allowed, and no weights file).
    """

    def __init__(self) -> None:
        super().__init__()
        self.training = False
        self.random_weights = False
        # Frozen weights come from the user's pretrained file, never from training checkpoints:
        # as a submodule it leaves its tensors out of the parent's state dict (hundreds of MB
        # saved for nothing) and keeps its own when the parent loads one.
        self._register_state_dict_hook(_drop_when_nested)
        self._register_load_state_dict_pre_hook(_keep_own_when_absent, with_module=True)

    def _build(
        self,
        factory: Callable[[], nn.Module],
        state_dict: Mapping[str, Tensor] | None,
        *,
        allow_random_weights: bool,
        how_to_get: str,
    ) -> nn.Module:
        """Build ``factory()`` and load ``state_dict`` strictly, or refuse/warn when there is none."""
        name = type(self).__name__
        if state_dict is not None:
            with torch.device("meta"):  # skip the random init that the checkpoint overwrites anyway
                net = factory()
            load_strict(net, state_dict, name=name, assign=True)
        elif allow_random_weights:
            net = factory()
            self.random_weights = True
            warnings.warn(
                f"{name} runs with RANDOM weights (no weights file; allow_random_weights=True): its outputs "
                "mean nothing. Fine for tests and smoke runs only.",
                UserWarning,
                stacklevel=3,
            )
        else:
            raise ValueError(f"{name} needs pretrained weights: {how_to_get}. {RANDOM_WEIGHTS_HINT}")
        return net.requires_grad_(False).eval()

    def train(self, mode: bool = True) -> FrozenNetwork:
        return super().train(False)


def _drop_when_nested(module: nn.Module, state_dict: dict, prefix: str, local_metadata) -> None:
    if prefix:  # nested inside a larger module; a top-level `net.state_dict()` stays complete
        for key in [k for k in state_dict if k.startswith(prefix)]:
            del state_dict[key]


def _keep_own_when_absent(module: nn.Module, state_dict: dict, prefix: str, *args) -> None:
    if prefix:
        for key, value in module.state_dict().items():
            state_dict.setdefault(prefix + key, value)


def resize_square(images: Tensor, size: int) -> Tensor:
    """Bilinear resize of (B, C, H, W) to (B, C, size, size); a no-op at that size already."""
    if images.shape[-2:] == (size, size):
        return images
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
