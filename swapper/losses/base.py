"""The loss-term interface shared by every training module.

A training step collects its tensors in a dict (see ``STEP_KEYS``) and calls every configured
term with them as keyword arguments; a term reads what it needs and ignores the rest. A term
contributes to the generator phase, the discriminator phase, or both, by overriding
``generator_loss`` / ``discriminator_loss``; the one it does not override returns ``None``.
The module multiplies by ``weight`` (from YAML) and logs the raw value under
``train/g/<name>`` or ``train/d/<name>``.
"""

from __future__ import annotations

from torch import Tensor, nn

# Names a step may carry (a term documents which of these it reads):
#   fake            generator output, (B, 3, H, W) in [0, 1]
#   real            what the output should reproduce (reconstruction target), (B, 3, H, W) in [0, 1]
#   input           the generator's (un-warped) input image
#   source          identity source image (identity injection)
#   mask            predicted alpha mask, (B, 1, H, W) in [0, 1]
#   cycled          the result of a full A->B->A cycle, compared with `input`
#   same_identity   (B,) bool, source and target show the same person
#   fake_logits / real_logits        list of (B, 1, h, w), one per discriminator scale
#   fake_features / real_features    list (per scale) of lists of feature maps
#   discriminator   the discriminator module (for penalties that re-run it)
#   step            the global step (for lazy regularisation)
#   source_embedding  the frozen identity embedding of `source` (identity injection computes it once)
#   weights         per-pixel weights of `real`, (B, 1, H, W) >= 0, from the data's landmarks: 1 inside the
#                   face hull, × the eyes/mouth priority there, a small background weight outside; absent
#                   when the data has no landmarks (weighted terms then take plain means)
#   face_mask       the landmark face hull of `real`, (B, 1, H, W) in [0, 1] (target of a learned `mask`)
#   translated      per-pair: the other identity's faces drawn as this one (the swap), (B, 3, H, W)
#   expression      per-pair real data: (B, 6) expression measures of `real`, standardised per person
#   translated_expression   the expression measures of the faces `translated` was made from
STEP_KEYS = (
    "fake",
    "real",
    "input",
    "source",
    "mask",
    "cycled",
    "same_identity",
    "fake_logits",
    "real_logits",
    "fake_features",
    "real_features",
    "discriminator",
    "step",
    "weights",
    "face_mask",
    "translated",
    "expression",
    "translated_expression",
)


class LossTerm(nn.Module):
    """A weighted loss term; subclasses override one or both phases."""

    def __init__(self, weight: float = 1.0) -> None:
        super().__init__()
        if weight < 0:
            raise ValueError(f"loss weight must be >= 0, got {weight}")
        self.weight = float(weight)

    def generator_loss(self, **step) -> Tensor | None:
        return None

    def discriminator_loss(self, **step) -> Tensor | None:
        return None

    def reads_translation(self, step: int) -> bool:
        """Whether this term reads ``translated`` at ``step`` (the per-pair module then makes the swaps)."""
        return False

    def forward(self, **step) -> Tensor | None:  # the generator side is the usual meaning of "the loss"
        return self.generator_loss(**step)

    def extra_repr(self) -> str:
        return f"weight={self.weight}"
