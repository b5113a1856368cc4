"""The swap stage: aligned crops in, swapped crops (and a predicted mask, if any) out, in batches.

Any ``SwapGenerator`` plugs in through its two-method interface: ``target_identity`` once (a per-pair
model's direction, or an identity-injection model's embedding of the new person's photo), then
``swap_to`` on every batch of faces.
"""

from __future__ import annotations

import numpy as np
import torch

from swapper.models.generators import SwapGenerator

__all__ = ["GeneratorSwap", "build_swap"]


def _device(model: torch.nn.Module) -> torch.device:
    return next(iter(model.parameters()), torch.empty(0)).device


def _to_tensor(crops: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(crops.transpose(0, 3, 1, 2), np.float32)).to(device)


def _to_numpy(images: torch.Tensor) -> np.ndarray:
    return images.float().clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy()


class GeneratorSwap:
    """Swap (N, S, S, 3) float RGB crops in [0, 1] with ``generator`` towards ``identity`` (what its
    ``target_identity`` returned), ``batch_size`` faces per forward pass."""

    def __init__(self, generator: SwapGenerator, identity: object, batch_size: int = 32) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.generator, self.identity, self.batch_size = generator, identity, batch_size

    @torch.no_grad()
    def __call__(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """(N, S, S, 3) → swapped (N, S, S, 3) and predicted masks (N, S, S) or None."""
        device, images, masks = _device(self.generator), [], []
        for start in range(0, len(crops), self.batch_size):
            batch = _to_tensor(crops[start : start + self.batch_size], device)
            image, mask = self.generator.swap_to(batch, self.identity)
            images.append(_to_numpy(image))
            if mask is not None:
                masks.append(mask.float().clamp(0, 1)[:, 0].cpu().numpy())
        if not images:
            return np.zeros_like(crops), None
        return np.concatenate(images), np.concatenate(masks) if masks else None


def build_swap(
    generator: SwapGenerator,
    direction: str | None = None,
    source: np.ndarray | None = None,
    batch_size: int = 32,
) -> GeneratorSwap:
    """The swap stage for ``generator``: ``direction`` for per-pair models, ``source`` (an aligned
    (S, S, 3) crop of the new person) for identity injection; the generator says what it needs."""
    device = _device(generator)
    source_tensor = _to_tensor(source[None], device) if source is not None else None
    with torch.no_grad():
        identity = generator.target_identity(direction=direction, source=source_tensor)
    return GeneratorSwap(generator, identity, batch_size)
