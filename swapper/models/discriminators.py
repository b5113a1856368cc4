"""PatchGAN discriminators sharing one interface.

Every discriminator maps an image batch to ``(logits, features)``: one logit map ``(B, 1, h, w)``
per scale and, per scale, the list of every intermediate activation, the last being that logit
map. Adversarial losses read the logits, feature-matching losses read the features.
"""

from __future__ import annotations

from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm

NORMS = ("batch", "instance", "spectral", "none")

Output = tuple[list[Tensor], list[list[Tensor]]]


def _conv_block(
    in_channels: int, out_channels: int, kernel_size: int, stride: int, norm: str, activate: bool = True
) -> nn.Sequential:
    """conv → [norm] → [LeakyReLU 0.2]; index 0 is always the conv so state-dict keys are stable."""
    # Padding (k - 1) // 2 = 1 for k = 4 gives the SimSwap sizes 224 → 112 … 14 → 13 → 12.
    conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=(kernel_size - 1) // 2)
    layers: list[nn.Module] = [spectral_norm(conv) if norm == "spectral" else conv]
    if norm == "batch":
        layers.append(nn.BatchNorm2d(out_channels))
    elif norm == "instance":
        layers.append(nn.InstanceNorm2d(out_channels))
    if activate:
        # Not in-place: the activations are kept as features for feature matching.
        layers.append(nn.LeakyReLU(0.2))
    return nn.Sequential(*layers)


class PatchDiscriminator(nn.Module):
    """pix2pix/SimSwap PatchGAN at one scale.

    ``down1`` (no norm) then ``num_layers`` normalised stride-2 convs doubling the channels
    (capped at ``max_channels``), then ``conv1`` (stride 1, doubled once more, capped) and
    ``conv2`` (stride 1, to one logit map). The defaults are the SimSwap paper version:
    64-128-256-512, 512, 1 channels, 6,962,369 parameters; ``num_layers=2`` is pix2pix's 70×70
    PatchGAN (its ``n_layers=3``: 64-128-256, 512, 1). An input must be at least
    ``2 ** (num_layers + 1) * 3`` pixels wide (48 at num_layers 3) to leave a logit map.
    ``norm="spectral"`` wraps every conv in spectral norm instead of adding a norm layer;
    ``down1`` and ``conv2`` are never batch/instance-normalised.
    """

    def __init__(
        self,
        in_channels: int = 3,
        base_channels: int = 64,
        num_layers: int = 3,
        norm: str = "batch",
        max_channels: int = 512,
        kernel_size: int = 4,
    ) -> None:
        super().__init__()
        if norm not in NORMS:
            raise ValueError(f"unknown norm {norm!r}; choose one of {NORMS}")
        if num_layers < 0:
            raise ValueError(f"num_layers must be >= 0, got {num_layers}")
        first_norm = "spectral" if norm == "spectral" else "none"
        self.down1 = _conv_block(in_channels, base_channels, kernel_size, 2, first_norm)
        channels = base_channels
        for i in range(2, num_layers + 2):
            out = min(base_channels * 2 ** (i - 1), max_channels)
            self.add_module(f"down{i}", _conv_block(channels, out, kernel_size, 2, norm))
            channels = out
        # pix2pix doubles the width once more here; at SimSwap's depth the cap keeps it at 512.
        wide = min(base_channels * 2**num_layers * 2, max_channels)
        self.conv1 = _conv_block(channels, wide, kernel_size, 1, norm)
        self.conv2 = _conv_block(wide, 1, kernel_size, 1, first_norm, activate=False)
        self.num_layers = num_layers

    def forward(self, x: Tensor) -> Output:
        features = []
        for block in self.children():  # registration order: down1 … down{n+1}, conv1, conv2
            x = block(x)
            features.append(x)
        # At 224 px with the defaults: 64×112², 128×56², 256×28², 512×14², 512×13², 1×12².
        return [x], [features]


class MultiScalePatchDiscriminator(nn.Module):
    """``num_scales`` independent PatchGANs on the image, its 1/2, its 1/4, …

    Scale ``k`` sees the input average-pooled ``k`` times (3×3, stride 2, padding 1, padding
    excluded from the mean, as in pix2pixHD/SimSwap). SimSwap's paper D is two default scales.
    """

    def __init__(
        self,
        num_scales: int = 2,
        in_channels: int = 3,
        base_channels: int = 64,
        num_layers: int = 3,
        norm: str = "batch",
        max_channels: int = 512,
        kernel_size: int = 4,
    ) -> None:
        super().__init__()
        if num_scales < 1:
            raise ValueError(f"num_scales must be >= 1, got {num_scales}")
        self.scales = nn.ModuleList(
            PatchDiscriminator(in_channels, base_channels, num_layers, norm, max_channels, kernel_size)
            for _ in range(num_scales)
        )
        self.downsample = nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False)

    def forward(self, x: Tensor) -> Output:
        logits, features = [], []
        for i, discriminator in enumerate(self.scales):
            if i > 0:
                x = self.downsample(x)  # (B, C, H / 2**i, W / 2**i)
            scale_logits, scale_features = discriminator(x)
            logits += scale_logits
            features += scale_features
        return logits, features


__all__ = ["MultiScalePatchDiscriminator", "PatchDiscriminator"]
