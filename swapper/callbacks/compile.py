"""Speed switches applied to the trained networks when fitting starts: ``torch.compile`` and the
channels-last memory layout (``conf/callbacks/compile.yaml``, ``conf/callbacks/channels_last.yaml``).

Both act on what a training module trains: the generator's trainable parts (a per-pair model's encoder
and decoders, an identity-injection model's network; a frozen recogniser inside the generator is left
alone) and the discriminators. Both keep every state-dict key and tensor shape: checkpoints, EMA and
exported weights do not see them.
"""

from __future__ import annotations

from collections.abc import Iterator

import lightning as L
import torch
from torch import nn

__all__ = ["ChannelsLast", "CompileModels", "trained_networks"]


def _has_trainable(module: nn.Module) -> bool:
    return any(p.requires_grad for p in module.parameters())


def trained_networks(pl_module: nn.Module) -> Iterator[nn.Module]:
    """The modules a training step calls and trains: the generator's children with trainable
    parameters (containers opened: one per decoder) and each discriminator."""
    generator = getattr(pl_module, "generator", None)
    if generator is not None:
        for child in generator.children():
            parts = child.values() if isinstance(child, nn.ModuleDict) else [child]
            yield from (part for part in parts if _has_trainable(part))
    discriminators = getattr(pl_module, "discriminators", None)
    if discriminators is not None:
        yield from discriminators.values()


class CompileModels(L.Callback):
    """``module.compile()`` (in place, so state-dict keys keep their names; ``torch.compile(module)`` would
    prefix them with ``_orig_mod.``) on every network of :func:`trained_networks` before fitting.

    A network is compiled at its own ``__call__``: the generator's methods (``decode``, ``swap``) call
    these parts, so compiling the generator object itself would compile nothing that training runs.
    Cost: the first steps compile (about a minute for the original Deepfakes model on 2 CPU cores, and
    again for each new input shape, e.g. the last, smaller validation batch); on CPU it then gained 1 %
    (README "Speed"), so it is off by default and meant for GPUs. ``mode``/``dynamic``: ``torch.compile``'s.
    """

    def __init__(self, mode: str | None = None, dynamic: bool | None = None, fullgraph: bool = False) -> None:
        self.mode, self.dynamic, self.fullgraph = mode, dynamic, fullgraph

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        for network in trained_networks(pl_module):
            network.compile(mode=self.mode, dynamic=self.dynamic, fullgraph=self.fullgraph)


class ChannelsLast(L.Callback):
    """Store the 4-D weights of every network of :func:`trained_networks` channels-last (NHWC).

    A convolution with channels-last weights computes and returns channels-last activations, so the
    whole network runs in that layout without touching the data. It pays on GPUs with tensor cores
    (cuDNN's fast kernels are NHWC); on CPU oneDNN converts layouts itself and it measured 0.99×.
    """

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        for network in trained_networks(pl_module):
            network.to(memory_format=torch.channels_last)
