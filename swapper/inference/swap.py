"""The swap stage: aligned crops in, swapped crops (and a predicted mask, if any) out, in batches.

Two paradigms plug in here: per-pair models (``module.decode(faces, identity)``: A's faces
decoded as B, or the reverse) and identity-injection models (``module.embed(source)`` once, then
``module.generate(targets, embedding)``), which take a photo of the new identity.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

__all__ = ["InjectionSwap", "PerPairSwap", "build_swap", "is_injection"]


def is_injection(model: nn.Module) -> bool:
    """Identity-injection modules expose ``embed`` (source → identity vector) and ``generate``."""
    return callable(getattr(model, "embed", None)) and callable(getattr(model, "generate", None))


def _device(model: nn.Module) -> torch.device:
    return next(iter(model.parameters()), torch.empty(0)).device


def _to_tensor(crops: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(crops.transpose(0, 3, 1, 2), np.float32)).to(device)


def _to_numpy(images: torch.Tensor) -> np.ndarray:
    return images.float().clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy()


class PerPairSwap:
    """Per-pair models: ``a2b`` decodes faces of A as B, ``b2a`` the reverse."""

    def __init__(self, model: nn.Module, direction: str = "a2b", batch_size: int = 32) -> None:
        if direction not in ("a2b", "b2a"):
            raise ValueError(f"direction must be 'a2b' or 'b2a', got {direction!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model, self.identity, self.batch_size = model, direction[-1], batch_size

    @torch.no_grad()
    def __call__(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """(N, S, S, 3) float RGB in [0, 1] → swapped (N, S, S, 3) and predicted masks (N, S, S) or None."""
        device, images, masks = _device(self.model), [], []
        for start in range(0, len(crops), self.batch_size):
            image, mask = self.model.decode(
                _to_tensor(crops[start : start + self.batch_size], device), self.identity
            )
            images.append(_to_numpy(image))
            if mask is not None:
                masks.append(mask.float().clamp(0, 1)[:, 0].cpu().numpy())
        if not images:
            return np.zeros_like(crops), None
        return np.concatenate(images), np.concatenate(masks) if masks else None


class InjectionSwap:
    """Identity injection: every face gets the identity of ``source`` (an aligned crop of the new
    person's face, (S, S, 3) float RGB in [0, 1]), embedded once."""

    def __init__(self, model: nn.Module, source: np.ndarray, batch_size: int = 32) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model, self.batch_size = model, batch_size
        with torch.no_grad():
            self.embedding = model.embed(_to_tensor(source[None], _device(model)))  # (1, D)

    @torch.no_grad()
    def __call__(self, crops: np.ndarray) -> tuple[np.ndarray, None]:
        device, images = _device(self.model), []
        for start in range(0, len(crops), self.batch_size):
            batch = _to_tensor(crops[start : start + self.batch_size], device)
            images.append(_to_numpy(self.model.generate(batch, self.embedding.expand(len(batch), -1))))
        return (np.concatenate(images) if images else np.zeros_like(crops)), None


def build_swap(
    model: nn.Module, direction: str = "a2b", source: np.ndarray | None = None, batch_size: int = 32
) -> PerPairSwap | InjectionSwap:
    """The swap stage that fits ``model``; clear errors when ``source`` is missing or superfluous."""
    if is_injection(model):
        if source is None:
            raise ValueError(
                "this run is an identity-injection model (SimSwap): give source=<photo of the new identity>"
            )
        return InjectionSwap(model, source, batch_size)
    if source is not None:
        raise ValueError(
            "source= is for identity-injection models; this run is a per-pair model: its identities are "
            "fixed by training, choose direction=a2b or b2a"
        )
    if not callable(getattr(model, "decode", None)):
        raise ValueError(
            f"{type(model).__name__} has neither decode (per-pair) nor embed/generate (injection)"
        )
    return PerPairSwap(model, direction, batch_size)
