"""SimSwap's generator: target encoder -> ID Injection Module -> decoder, and its checkpoint key map."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from swapper.models.injection import IdentityInjectionBlocks

_OUTPUTS = ("sigmoid", "tanh01", "none")
# The released trainer feeds ImageNet-normalised targets and predicts in that space.
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


def _level_channels(base_channels: int, max_channels: int, num_levels: int) -> list[int]:
    # Channels at resolution level 0 (full size) .. num_levels (coarsest):
    # 64, 128, 256, 512 (224); 64, 128, 256, 512, 512 (deep); 32, 64, 128, 256, 512 (deep, base 32: 512 beta).
    return [min(base_channels * 2**i, max_channels) for i in range(num_levels + 1)]


class SimSwapEncoder(nn.Module):
    """Target encoder: reflect-pad + 7x7 conv, then stride-2 3x3 convs (BatchNorm + ReLU throughout).

    224 -> 28 (3 levels) or, with ``deep``, 512 -> 32 (4 levels). With ``base_channels=64`` the 4th
    level is one more at 512 channels (the released trainer's 512 recipe); with ``deep`` and
    ``base_channels=32`` the stem is 32 wide and the levels run 32 -> 64 -> ... -> 512 (the released
    512 "beta" checkpoint).
    """

    def __init__(
        self, in_channels: int = 3, base_channels: int = 64, deep: bool = False, max_channels: int = 512
    ) -> None:
        super().__init__()
        self.deep = deep
        self.base_channels = base_channels
        self.num_levels = 4 if deep else 3
        channels = _level_channels(base_channels, max_channels, self.num_levels)
        self.out_channels = channels[-1]
        self.downsample_factor = 2**self.num_levels
        self.stem = nn.Sequential(
            nn.ReflectionPad2d(3),
            nn.Conv2d(in_channels, channels[0], 7),
            nn.BatchNorm2d(channels[0]),
            nn.ReLU(inplace=True),
        )
        self.downs = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(c_in, c_out, 3, stride=2, padding=1),
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
            )
            for c_in, c_out in zip(channels[:-1], channels[1:], strict=True)
        )

    def forward(self, x: Tensor) -> Tensor:  # (B, 3, H, W) -> (B, 512, H/8, W/8) or H/16 when deep
        x = self.stem(x)  # (B, 64, H, W), 32 wide in the 512 beta
        for down in self.downs:
            x = down(x)  # (B, 2C, H/2, W/2) per level, at most max_channels
        return x


class SimSwapDecoder(nn.Module):
    """Bilinear x2 upsample + 3x3 conv + BatchNorm + ReLU per level, then reflect-pad + 7x7 conv to RGB.

    The encoder's mirror: same ``base_channels``, ``deep`` and ``max_channels`` (the 512 beta's last
    level is up0, 64 -> 32, then the 7x7 conv 32 -> 3).

    ``output``: ``sigmoid`` -> [0, 1]; ``tanh01`` -> (tanh + 1) / 2 in [0, 1] (released 224 and 512
    beta checkpoints); ``none`` -> raw values (released trainer, ImageNet-normalised space).
    """

    def __init__(
        self,
        out_channels: int = 3,
        base_channels: int = 64,
        deep: bool = False,
        max_channels: int = 512,
        output: str = "sigmoid",
    ) -> None:
        super().__init__()
        if output not in _OUTPUTS:
            raise ValueError(f"output must be one of {_OUTPUTS}, got {output!r}")
        self.deep = deep
        self.base_channels = base_channels
        self.output = output
        self.num_levels = 4 if deep else 3
        channels = _level_channels(base_channels, max_channels, self.num_levels)[::-1]  # coarse -> fine
        self.in_channels = channels[0]
        # ups[0] is the coarsest level (SimSwap's up3, or up4 when deep; up3 in the 512 beta).
        self.ups = nn.ModuleList(
            nn.Sequential(
                nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                nn.Conv2d(c_in, c_out, 3, padding=1),
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
            )
            for c_in, c_out in zip(channels[:-1], channels[1:], strict=True)
        )
        self.head = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(channels[-1], out_channels, 7))

    def forward(self, x: Tensor) -> Tensor:  # (B, 512, h, w) -> (B, 3, 8h, 8w) or 16h when deep
        for up in self.ups:
            x = up(x)  # (B, C', 2h, 2w) per level, the encoder's widths in reverse
        x = self.head(x)  # (B, 3, H, W)
        if self.output == "sigmoid":
            return torch.sigmoid(x)
        if self.output == "tanh01":
            return (torch.tanh(x) + 1.0) / 2.0
        return x


class SimSwapGenerator(nn.Module):
    """``G(target, id) = decoder(injection(encoder(target), id))``.

    ``target`` is (B, 3, H, W) in [0, 1]; ``id_vector`` (B, latent) is the source's
    L2-normalised identity embedding (not re-normalised here). ``imagenet_io`` wraps the network
    in ImageNet normalisation (input) and de-normalisation (output), the released trainer's
    convention; use it with ``output="none"`` to run that checkpoint on [0, 1] images.
    """

    def __init__(
        self,
        encoder: nn.Module,
        injection: IdentityInjectionBlocks,
        decoder: nn.Module,
        imagenet_io: bool = False,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.injection = injection
        self.decoder = decoder
        self.imagenet_io = imagenet_io
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    @property
    def downsample_factor(self) -> int:
        return getattr(self.encoder, "downsample_factor", 1)

    def forward(self, target: Tensor, id_vector: Tensor) -> Tensor:
        if target.dim() != 4:
            raise ValueError(f"target must be (B, C, H, W), got shape {tuple(target.shape)}")
        height, width = target.shape[-2:]
        factor = self.downsample_factor
        if height % factor or width % factor:
            raise ValueError(
                f"target size {height}x{width} is not divisible by the down-sampling factor {factor}"
            )
        if id_vector.dim() != 2 or id_vector.shape[0] != target.shape[0]:
            raise ValueError(
                f"id_vector must be (B={target.shape[0]}, latent), got shape {tuple(id_vector.shape)}"
            )
        if self.imagenet_io:
            target = (target - self.mean) / self.std
        x = self.encoder(target)  # (B, 512, H/8, W/8)
        x = self.injection(x, id_vector)  # same shape
        out = self.decoder(x)  # (B, 3, H, W)
        if self.imagenet_io:
            out = out * self.std + self.mean
        return out


_CONV = ("weight", "bias")
_BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
# The released networks name a level by its width: down{i} ends at 64 * 2**i channels (capped at
# 512), so a 64-wide stem starts at down1 (224, deep) and the 32-wide stem of the 512 beta at down0.
_FIRST_LEVEL = {64: 1, 32: 0}


def simswap_key_map(deep: bool, num_blocks: int = 9, base_channels: int = 64) -> dict[str, str]:
    """Released SimSwap generator key -> ``SimSwapGenerator`` key.

    | released (``Generator_Adain_Upsample``) | swapper                                  |
    |------------------------------------------|------------------------------------------|
    | ``first_layer.1.*`` (7x7 conv)           | ``encoder.stem.1.*``                     |
    | ``first_layer.2.*`` (BatchNorm)          | ``encoder.stem.2.*``                     |
    | ``down{f+j}.{0,1}.*``, j = 0..L-1        | ``encoder.downs.{j}.{0,1}.*``            |
    | ``BottleNeck.{b}.conv{k}.1.*``           | ``injection.blocks.{b}.conv{k}.1.*``     |
    | ``BottleNeck.{b}.style{k}.linear.*``     | ``injection.blocks.{b}.adain{k}.proj.*`` |
    | ``up{f+L-1-j}.{1,2}.*``, j = 0..L-1      | ``decoder.ups.{j}.{1,2}.*``              |
    | ``last_layer.1.*`` (7x7 conv)            | ``decoder.head.1.*``                     |

    L = 3 levels, or 4 when ``deep``; f = 1 for a 64-wide stem (224: down1..3, deep: down1..4) and
    0 for the 32-wide stem of the 512 beta (down0..3); k = 1, 2. Index 0 of ``first_layer``/
    ``last_layer``/``conv{k}`` is the padding and index 0 of ``up{i}`` the upsample (no parameters).
    """
    if base_channels not in _FIRST_LEVEL:
        raise ValueError(
            f"no released SimSwap generator has a {base_channels}-channel stem (only {sorted(_FIRST_LEVEL)})"
        )
    levels = 4 if deep else 3
    level_ids = [_FIRST_LEVEL[base_channels] + j for j in range(levels)]  # fine -> coarse
    pairs: list[tuple[str, str, tuple[str, ...]]] = [
        ("first_layer.1", "encoder.stem.1", _CONV),
        ("first_layer.2", "encoder.stem.2", _BN),
    ]
    for j, i in enumerate(level_ids):
        pairs += [
            (f"down{i}.0", f"encoder.downs.{j}.0", _CONV),
            (f"down{i}.1", f"encoder.downs.{j}.1", _BN),
        ]
    for b in range(num_blocks):
        for k in (1, 2):
            pairs += [
                (f"BottleNeck.{b}.conv{k}.1", f"injection.blocks.{b}.conv{k}.1", _CONV),
                (f"BottleNeck.{b}.style{k}.linear", f"injection.blocks.{b}.adain{k}.proj", _CONV),
            ]
    for j, i in enumerate(reversed(level_ids)):  # the decoder runs coarse -> fine
        pairs += [
            (f"up{i}.1", f"decoder.ups.{j}.1", _CONV),
            (f"up{i}.2", f"decoder.ups.{j}.2", _BN),
        ]
    pairs.append(("last_layer.1", "decoder.head.1", _CONV))
    return {f"{src}.{name}": f"{dst}.{name}" for src, dst, names in pairs for name in names}


def _strip_prefixes(state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
    # DataParallel/DDP add "module."; a whole-model checkpoint nests the generator under "netG.".
    def strip(key: str, prefix: str) -> str:
        return key[len(prefix) :] if key.startswith(prefix) else key

    sd = {strip(k, "module."): v for k, v in state_dict.items()}
    if any(k.startswith("netG.") for k in sd):
        sd = {strip(k[len("netG.") :], "module."): v for k, v in sd.items() if k.startswith("netG.")}
    return sd


def load_simswap_checkpoint(generator: SimSwapGenerator, state_dict: dict[str, Tensor]) -> None:
    """Strictly load a released SimSwap generator state dict into ``generator`` (see ``simswap_key_map``).

    Raises ``ValueError`` listing missing, unexpected or mis-shaped keys.
    """
    key_map = simswap_key_map(
        bool(getattr(generator.encoder, "deep", False)),
        num_blocks=len(generator.injection.blocks),
        base_channels=getattr(generator.encoder, "base_channels", 64),
    )
    own = generator.state_dict()
    uncovered = sorted(set(own) - set(key_map.values()))
    if uncovered:
        raise ValueError(f"generator has keys the SimSwap key map does not cover: {uncovered}")

    source = _strip_prefixes(state_dict)
    missing = sorted(set(key_map) - set(source))
    unexpected = sorted(set(source) - set(key_map))
    if missing or unexpected:
        raise ValueError(f"SimSwap checkpoint mismatch: missing keys {missing}, unexpected keys {unexpected}")

    mapped = {key_map[k]: v for k, v in source.items()}
    bad_shapes = [
        f"{src} {tuple(source[src].shape)} -> {dst} {tuple(own[dst].shape)}"
        for src, dst in key_map.items()
        if source[src].shape != own[dst].shape
    ]
    if bad_shapes:
        raise ValueError(f"SimSwap checkpoint shape mismatch: {bad_shapes}")
    generator.load_state_dict(mapped, strict=True)
