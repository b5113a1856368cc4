"""DeepFaceLab's LIAE model: one encoder, a shared and a per-identity intermediate block, one decoder.

Layout of DeepFaceLab ``models/Model_SAEHD/Model.py`` (archi ``liae``), with its names in brackets:

    z      = encoder(faces)                                   # conv stack, no dense layer
    code_a = cat(inter_shared(z), inter_shared(z))            # [src code: inter_AB, inter_AB]
    code_b = cat(inter_b(z),      inter_shared(z))            # [dst code: inter_B,  inter_AB]
    image  = decoder(code)                                    # one decoder for both identities

Identity ``a`` is DeepFaceLab's *src* (the face that is put in), ``b`` its *dst* (the footage whose face
is replaced). DeepFaceLab's swap is ``b2a``: B's faces through ``inter_shared`` only, which saw both
people in training. ``a2b`` runs ``inter_b`` on A's faces, which it never saw: it works, but it is the
weaker direction, so give the footage to be replaced as identity B.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from swapper.models.blocks import DenseCode, DownStack, Upscale
from swapper.models.generators import TwoIdentityGenerator
from swapper.models.init import initialise_


class LIAEEncoder(nn.Module):
    """DeepFaceLab's LIAE encoder: the Deepfakes conv stack without the dense tail (the inters hold it).

    ``len(widths)`` × ``conv(w)`` (k=5, stride 2, LeakyReLU 0.1): (B, 3, S, S) → (B, widths[-1], S/16, S/16).
    """

    def __init__(
        self, image_size: int = 64, in_channels: int = 3, widths: Sequence[int] = (128, 256, 512, 1024)
    ) -> None:
        super().__init__()
        self.image_size = image_size
        self.in_channels = in_channels
        self.out_channels = widths[-1]
        self.convs = DownStack(image_size, in_channels, widths)
        self.output_size = self.convs.output_size

    def forward(self, x: Tensor) -> Tensor:  # (B, 3, S, S) -> (B, widths[-1], S/16, S/16)
        return self.convs(x)


class LIAEInter(nn.Module):
    """An intermediate block (DeepFaceLab's ``Inter``): the Deepfakes encoder's dense tail on its own.

    ``DenseCode(bottleneck → latent_size² · latent_channels) → upscale(out_channels)``:
    (B, in_channels, latent_size, latent_size) → (B, out_channels, 2·latent_size, 2·latent_size). As in
    DeepFaceLab, the dense code has the spatial size of the encoder's output (image_size / 16).
    """

    def __init__(
        self,
        in_channels: int,
        latent_size: int = 4,
        bottleneck: int = 256,
        latent_channels: int = 512,
        out_channels: int = 512,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.latent_size = latent_size
        self.out_channels = out_channels
        self.dense = DenseCode(
            in_channels * latent_size * latent_size, bottleneck, latent_size, latent_channels
        )
        self.upscale = Upscale(latent_channels, out_channels)

    def forward(self, z: Tensor) -> Tensor:  # (B, C, s, s) -> (B, out_channels, 2s, 2s)
        expected = (self.in_channels, self.latent_size, self.latent_size)
        if z.ndim != 4 or z.shape[1:] != expected:
            raise ValueError(
                f"{type(self).__name__} was built for (B, {', '.join(map(str, expected))}) encoder outputs, "
                f"got {tuple(z.shape)}: in_channels is the encoder's last width and latent_size = "
                "image_size / 16 (the LIAE encoder has no dense layer: encoder=liae_*)"
            )
        return self.upscale(self.dense(z))


class LIAEGenerator(TwoIdentityGenerator):
    """DeepFaceLab's LIAE as a per-pair generator (see the module docstring for the layout).

    The per-pair interface of :class:`~swapper.models.generators.TwoIdentityGenerator` (decode, swap,
    target_identity, swap_to, RGBA compositing) over :meth:`draw`.
    """

    def __init__(
        self,
        encoder: nn.Module,
        inter_shared: nn.Module,
        inter_b: nn.Module,
        decoder: nn.Module,
        init: str = "torch",
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.inter_shared = inter_shared
        self.inter_b = inter_b
        self.decoder = decoder
        code = getattr(inter_shared, "out_channels", None), getattr(inter_b, "out_channels", None)
        first = next((m for m in decoder.modules() if isinstance(m, nn.Conv2d)), None)
        if None not in code and first is not None and first.in_channels != sum(code):
            raise ValueError(
                f"the decoder takes {first.in_channels} channels but the code has {sum(code)} "
                f"(inter_b {code[1]} + inter_shared {code[0]}): set the decoder's in_channels to their sum"
            )
        initialise_(self, init)  # swapper.models.init: torch | he_icnr

    def code(self, faces: Tensor, identity: str) -> Tensor:
        """(B, 3, S, S) faces → the decoder input that draws them as ``identity`` ("a" | "b")."""
        z = self.encoder(faces)  # (B, C, S/16, S/16)
        shared = self.inter_shared(z)  # (B, C', S/8, S/8)
        if identity == "a":
            return torch.cat([shared, shared], 1)
        if identity == "b":
            return torch.cat([self.inter_b(z), shared], 1)
        raise ValueError(f"identity must be 'a' or 'b', got {identity!r}")

    def draw(self, faces: Tensor, identity: str) -> Tensor:
        return self.decoder(self.code(faces, identity))


__all__ = ["LIAEEncoder", "LIAEGenerator", "LIAEInter"]
