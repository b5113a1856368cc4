"""Identity loss: 1 − cosine similarity of face-recognition embeddings (SimSwap)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from swapper.losses.base import LossTerm


class IdentityLoss(LossTerm):
    """mean(1 − cos(embed(fake), embed(source))) with a frozen ``network``.

    ``network`` exposes ``embed(images01) -> (B, D)`` (ArcFace, SFace, VGGFace wrappers). The
    source side is a fixed target (no graph). Reads ``fake`` and ``source``; a module that has
    already embedded the source (SimSwap injects that vector) may pass ``source_embedding``
    instead to skip the second forward. ``network=None``: the identity-injection module gives the
    term its generator's identity network, so one network (one config node) serves both.
    """

    def __init__(self, network: nn.Module | None = None, weight: float = 1.0) -> None:
        super().__init__(weight)
        self.network = network.requires_grad_(False) if network is not None else None

    def generator_loss(
        self, fake: Tensor, source: Tensor | None = None, source_embedding: Tensor | None = None, **_
    ) -> Tensor:
        if self.network is None:
            raise ValueError(
                "IdentityLoss has no network: set loss.identity.network, or train it with "
                "module=identity_injection, which gives it the generator's identity network"
            )
        if source_embedding is None:
            if source is None:
                raise ValueError("IdentityLoss needs `source` or `source_embedding`")
            with torch.no_grad():
                source_embedding = self.network.embed(source)
        fake_embedding = self.network.embed(fake)  # (B, D)
        return (1 - F.cosine_similarity(fake_embedding, source_embedding.detach(), dim=1)).mean()


__all__ = ["IdentityLoss"]
