"""Expression morph: show each person's faces with the other person's expressions (per-pair training).

A per-pair decoder can only draw the expressions its person shows in the footage: when A opens her mouth
wide and B never does, B's decoder has no open mouth to draw (the coverage report warns of this). The
morph bends a training face of X, with a thin-plate spline through its 68 landmarks, so that its
landmarks move by the other person's expression: the donor's landmark offsets from the donor's mean face
replace X's own offsets from X's mean face, by a random share α in [0, ``strength``]::

    target = L_x + α · ((L_donor − mean_donor) − (L_x − mean_x))

Eyes open and close, the mouth opens, closes and widens as the donor's do, with X's own face shape (the
means stay apart). Input and target of the auto-encoder are both the morphed face, so the decoder learns
to draw X with those expressions. Points on the crop border stay fixed, so the background does not move.
The face mask and loss weights move with the face. Landmarks are in the ``grid_sample`` frame
(``align_corners=False``): x = (2 · pixel + 1) / W − 1.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from swapper.faces.tps import border_points, tps_warp

__all__ = ["ExpressionMorph"]


class ExpressionMorph(nn.Module):
    """Morph a share ``p`` of the faces towards a random donor's expression (see the module doc).

    ``forward(faces, landmarks, mean, donors, donor_mean, extra=None)``: (B, C, H, W) faces, their (B, 68, 2)
    landmarks and their person's (B, 68, 2) or (68, 2) mean landmarks; donors: (M, 68, 2) landmarks of the
    other person's faces and her mean. Faces or donors with NaN landmarks (crops without 68 points) are
    left out. Returns the faces, ``extra`` (maps warped the same way, or None) and a (B,) bool tensor of the
    faces it morphed (whose expression measures no longer hold). Random draws come from torch's
    generator (the module seeds it per step).
    """

    def __init__(
        self, p: float = 0.5, strength: float = 1.0, border: int = 5, regularisation: float = 1e-3,
        resolution: int | None = 32,
    ) -> None:  # fmt: skip
        super().__init__()
        if not 0.0 <= p <= 1.0 or not 0.0 <= strength <= 2.0:
            raise ValueError(f"need 0 <= p <= 1 and 0 <= strength <= 2, got p={p}, strength={strength}")
        if border < 2:
            raise ValueError(f"border must be >= 2 points per side, got {border}")
        if regularisation < 0 or (resolution is not None and resolution < 2):
            raise ValueError(
                f"need regularisation >= 0 and resolution >= 2 or null, got {regularisation}, {resolution}"
            )
        self.p, self.strength, self.border, self.regularisation = p, strength, border, regularisation
        self.resolution = resolution

    @staticmethod
    def targets(landmarks: Tensor, mean: Tensor, donors: Tensor, donor_mean: Tensor, alpha: Tensor) -> Tensor:
        """Where each face's landmarks go: ``L + α ((D − mean_D) − (L − mean))``; alpha (B,)."""
        return landmarks + alpha[:, None, None] * ((donors - donor_mean) - (landmarks - mean))

    def warp(self, images: Tensor, source: Tensor, target: Tensor) -> Tensor:
        """Resample (B, C, H, W) images so that content at ``source`` points lands on ``target`` points
        (:func:`swapper.faces.tps.tps_warp` on a ``resolution``² lattice)."""
        return tps_warp(images, source, target, self.regularisation, self.resolution)

    def forward(
        self,
        faces: Tensor,
        landmarks: Tensor,
        mean: Tensor,
        donors: Tensor,
        donor_mean: Tensor,
        extra: Tensor | None = None,
    ) -> tuple[Tensor, Tensor | None, Tensor]:
        if landmarks.shape[-2:] != (68, 2) or donors.shape[-2:] != (68, 2):
            raise ValueError(
                f"ExpressionMorph needs 68-point landmarks (B, 68, 2), got {tuple(landmarks.shape)} and "
                f"{tuple(donors.shape)}: extract with a 68-point detector "
                "(detector=yunet_68, dlib_hog or dlib_cnn)"
            )
        unmoved = torch.zeros(faces.shape[0], dtype=torch.bool, device=faces.device)
        if not self.training or self.p == 0 or self.strength == 0:
            return faces, extra, unmoved
        batch, device = faces.shape[0], faces.device
        mean = mean.expand_as(landmarks)
        donor_mean = donor_mean.expand_as(donors)
        ok = ~(landmarks.isnan().flatten(1).any(1) | mean.isnan().flatten(1).any(1))
        donor_ok = ~(donors.isnan().flatten(1).any(1) | donor_mean.isnan().flatten(1).any(1))
        chosen = (torch.rand(batch, device=device) < self.p) & ok
        pool = donor_ok.nonzero().flatten()
        draw = torch.randint(max(len(pool), 1), (batch,), device=device)
        alpha = torch.rand(batch, device=device, dtype=faces.dtype) * self.strength
        if not chosen.any() or len(pool) == 0:
            return faces, extra, unmoved
        picked = pool[draw[chosen]]
        source = landmarks[chosen].to(faces.dtype)
        target = self.targets(source, mean[chosen], donors[picked], donor_mean[picked], alpha[chosen])
        fixed = border_points(self.border, device, faces.dtype).expand(len(source), -1, -1)
        source, target = torch.cat([source, fixed], 1), torch.cat([target, fixed], 1)
        both = faces if extra is None else torch.cat([faces, extra], 1)
        both = both.clone()
        both[chosen] = self.warp(both[chosen], source, target)
        channels = faces.shape[1]
        return both[:, :channels], (None if extra is None else both[:, channels:]), chosen
