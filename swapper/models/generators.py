"""The two kinds of face-swap generator, as plain models that training and inference share.

Both answer the same two questions, which is all that inference asks of a generator:

- ``target_identity(direction=..., source=...)``: what identity the swapped faces get. A per-pair
  model knows two people and is told a direction (``a2b``: faces of A get B's identity); an
  identity-injection model takes an aligned crop of any new person (``source``) and embeds it.
- ``swap_to(faces, identity)``: aligned (B, 3, S, S) faces in [0, 1] → (swapped faces, predicted
  mask (B, 1, S, S) or ``None``).

``default_template`` names the alignment template of the crops the paradigm is usually trained on,
for runs whose data does not record one.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn

from swapper.models.decoders import split_rgba
from swapper.models.init import initialise_

DIRECTIONS = ("a2b", "b2a")


class SwapGenerator(nn.Module):
    """The interface inference calls (see the module docstring)."""

    default_template: ClassVar[str]
    needs_source: ClassVar[bool]
    # the trained part, which an exponential moving average follows ("" = the whole generator)
    averaged_prefix: ClassVar[str] = ""

    def averaged_part(self) -> nn.Module:
        return self.get_submodule(self.averaged_prefix.rstrip("."))

    def with_averaged(self, averaged: nn.Module) -> SwapGenerator:
        """This generator with ``averaged`` (a copy of :meth:`averaged_part`) in place of that part."""
        raise NotImplementedError

    def target_identity(self, direction: str | None = None, source: Tensor | None = None) -> object:
        raise NotImplementedError

    def swap_to(self, faces: Tensor, identity: object) -> tuple[Tensor, Tensor | None]:
        raise NotImplementedError


class TwoIdentityGenerator(SwapGenerator):
    """A per-pair generator: it draws any face as one of the two people it was trained on (``a``, ``b``).

    Subclasses say how in :meth:`draw` (the decoder's raw (B, 3 | 4, S, S) output); a fourth channel is
    a predicted mask (faceswap-GAN's RGBA decoder) and the result is ``mask · rgb + (1 − mask) ·
    background`` (the input faces unless given), so only the masked region is re-drawn.
    """

    default_template = "mean_face"
    needs_source = False

    def draw(self, faces: Tensor, identity: str) -> Tensor:
        raise NotImplementedError

    def with_averaged(self, averaged: nn.Module) -> TwoIdentityGenerator:
        return averaged

    def decode(
        self, faces: Tensor, identity: str, background: Tensor | None = None
    ) -> tuple[Tensor, Tensor | None]:
        """(B, 3, S, S) faces drawn as ``identity`` ("a" | "b") → (image, mask or None)."""
        rgb, mask = split_rgba(self.draw(faces, identity))
        if mask is None:
            return rgb, None
        background = faces if background is None else background
        return mask * rgb + (1 - mask) * background, mask

    def swap(self, faces: Tensor, direction: str = "a2b") -> Tensor:
        """Faces of one identity drawn as the other (``a2b`` or ``b2a``)."""
        return self.decode(faces, self.target_identity(direction))[0]

    def forward(self, faces: Tensor, direction: str = "a2b") -> Tensor:
        return self.swap(faces, direction)

    def target_identity(self, direction: str | None = None, source: Tensor | None = None) -> str:
        if source is not None:
            raise ValueError(
                "source= is for identity-injection models; this is a per-pair model: its two identities "
                "are fixed by training, choose direction=a2b or b2a"
            )
        direction = "a2b" if direction is None else direction
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be 'a2b' or 'b2a', got {direction!r}")
        return direction[-1]

    def swap_to(self, faces: Tensor, identity: str) -> tuple[Tensor, Tensor | None]:
        return self.decode(faces, identity)


class PerPairGenerator(TwoIdentityGenerator):
    """Deepfakes family: one shared encoder, one decoder per identity: ``decoder_X(encoder(faces))``.

    ``init`` re-initialises the weights (``swapper.models.init``: ``torch`` keeps PyTorch's defaults,
    ``he_icnr`` is faceswap's He + ICNR).
    """

    def __init__(
        self, encoder: nn.Module, decoder_a: nn.Module, decoder_b: nn.Module, init: str = "torch"
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoders = nn.ModuleDict({"a": decoder_a, "b": decoder_b})
        initialise_(self, init)

    def draw(self, faces: Tensor, identity: str) -> Tensor:
        return self.decoders[identity](self.encoder(faces))


class IdentityInjectionGenerator(SwapGenerator):
    """SimSwap family: ``network(target, embed(source))`` puts any source identity on any target.

    ``network`` is the trainable generator (``SimSwapGenerator``: encoder, ID-injection blocks,
    decoder); ``identity_network`` the frozen recogniser (``embed(images01) -> (B, D)`` unit
    vectors: ArcFace, SFace, the synthetic-face recogniser) whose embedding is injected. Its
    weights stay out of this model's state dict: they always come from the recogniser's own file.
    """

    default_template = "arcface"
    needs_source = True
    averaged_prefix = "network."  # the recogniser is frozen: no average to keep

    def __init__(self, network: nn.Module, identity_network: nn.Module) -> None:
        super().__init__()
        self.network = network
        self.identity_network = identity_network.requires_grad_(False)
        latent = getattr(getattr(network, "injection", None), "latent_dim", None)
        dim = getattr(identity_network, "embedding_dim", None)
        if latent is not None and dim is not None and int(dim) != int(latent):
            raise ValueError(_latent_mismatch(int(dim), int(latent)))

    def with_averaged(self, averaged: nn.Module) -> IdentityInjectionGenerator:
        return IdentityInjectionGenerator(averaged, self.identity_network)

    @torch.no_grad()
    def embed(self, source: Tensor) -> Tensor:
        """(B, 3, S, S) source faces in [0, 1] → (B, D) unit identity vectors (no graph)."""
        embedding = self.identity_network.embed(source)
        latent = getattr(getattr(self.network, "injection", None), "latent_dim", None)
        if latent is not None and embedding.shape[1] != latent:
            raise ValueError(_latent_mismatch(embedding.shape[1], latent))
        return embedding

    def swap(self, target: Tensor, identity: Tensor) -> Tensor:
        """(B, 3, S, S) targets with (B, D) identity vectors → (B, 3, S, S) swapped faces."""
        return self.network(target, identity)

    def forward(self, target: Tensor, identity: Tensor) -> Tensor:
        return self.swap(target, identity)

    def target_identity(self, direction: str | None = None, source: Tensor | None = None) -> Tensor:
        if direction is not None:
            raise ValueError(
                "direction= is for per-pair models; this is an identity-injection model (SimSwap): "
                "give source=<photo of the new identity> instead"
            )
        if source is None:
            raise ValueError(
                "this is an identity-injection model (SimSwap): give source=<photo of the new identity>"
            )
        return self.embed(source if source.dim() == 4 else source[None])  # (1, D)

    def swap_to(self, faces: Tensor, identity: Tensor) -> tuple[Tensor, None]:
        return self.swap(faces, identity.expand(len(faces), -1)), None


def _latent_mismatch(dim: int, latent: int) -> str:
    return (
        f"the identity network gives {dim}-d embeddings but the generator injects {latent}-d vectors: pair "
        "ArcFace (512) with generator=simswap/simswap_deep and SFace or the synthetic recogniser (128) with "
        "generator=simswap_lite, or set generator.injection.latent_dim"
    )


__all__ = [
    "DIRECTIONS",
    "IdentityInjectionGenerator",
    "PerPairGenerator",
    "SwapGenerator",
    "TwoIdentityGenerator",
]
