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
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["ExpressionMorph", "border_points", "pixel_centres", "tps_grid"]


def border_points(per_side: int = 3, device=None, dtype=None) -> Tensor:
    """(4 · (per_side − 1), 2) points evenly along the border of the [-1, 1]² square (corners included)."""
    t = torch.linspace(-1.0, 1.0, per_side, device=device, dtype=dtype)
    ones = torch.ones_like(t)
    sides = [torch.stack([t, -ones], 1), torch.stack([ones, t], 1), torch.stack([t.flip(0), ones], 1),
             torch.stack([-ones, t.flip(0)], 1)]  # fmt: skip
    return torch.cat([side[:-1] for side in sides])


def _tps_kernel(squared_distance: Tensor) -> Tensor:
    """The thin-plate radial basis r² log r² (0 at r = 0), from squared distances."""
    return squared_distance * torch.log(squared_distance.clamp(min=1e-12))


def pixel_centres(size: tuple[int, int], device=None, dtype=None) -> Tensor:
    """(H, W, 2) (x, y) of every pixel centre in the ``grid_sample`` frame (``align_corners=False``)."""
    h, w = size
    ys = (2 * torch.arange(h, device=device, dtype=dtype) + 1) / h - 1
    xs = (2 * torch.arange(w, device=device, dtype=dtype) + 1) / w - 1
    return torch.stack(torch.meshgrid(xs, ys, indexing="xy"), -1)


def tps_grid(centres: Tensor, values: Tensor, size: tuple[int, int], regularisation: float = 1e-3) -> Tensor:
    """A (B, H, W, 2) ``grid_sample`` grid: the thin-plate spline through ``centres`` → ``values`` (B, N, 2,
    in the ``align_corners=False`` frame), evaluated at every output pixel centre.

    The spline's kernels sit on the output points, and ``regularisation`` (a ridge on the kernel matrix)
    keeps it finite when output points coincide (a mouth that closes); kornia's ``get_tps_transform`` puts
    its kernels on the input points and has no ridge, so it diverges when input points coincide (a closed
    mouth that opens), which is the common case here.
    """
    batch, n, _ = centres.shape
    dtype = centres.dtype
    kernel = _tps_kernel(torch.cdist(centres, centres).square())
    kernel = kernel + regularisation * torch.eye(n, device=centres.device, dtype=dtype)
    affine = torch.cat([torch.ones(batch, n, 1, device=centres.device, dtype=dtype), centres], 2)  # (B, N, 3)
    system = torch.cat([torch.cat([kernel, affine], 2),
                        torch.cat([affine.transpose(1, 2), torch.zeros(batch, 3, 3, device=centres.device,
                                                                       dtype=dtype)], 2)], 1)  # fmt: skip
    rhs = torch.cat([values, torch.zeros(batch, 3, 2, device=centres.device, dtype=dtype)], 1)
    weights = torch.linalg.solve(system, rhs)  # (B, N + 3, 2)
    h, w = size
    pixels = pixel_centres(size, centres.device, dtype).reshape(1, h * w, 2).expand(batch, -1, -1)
    ones = torch.ones(batch, h * w, 1, device=centres.device, dtype=dtype)
    basis = torch.cat([_tps_kernel(torch.cdist(pixels, centres).square()), ones, pixels], 2)
    return (basis @ weights).reshape(batch, h, w, 2)


def _like(tensor: Tensor) -> tuple:
    return tensor.device, tensor.dtype


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
        """Resample (B, C, H, W) images so that content at ``source`` points lands on ``target`` points.

        The spline is smooth: it is evaluated on a ``resolution``² lattice and its displacement upsampled
        bilinearly (a 32² lattice costs a quarter of a 64² one and moves pixels ~0.02 px
        from where the full spline puts them, at most ~1 px inside a mouth that opens; null: every pixel)."""
        size = tuple(images.shape[-2:])
        if self.resolution is None or self.resolution >= max(size):
            grid = tps_grid(target, source, size, self.regularisation)  # output pixel → input point
        else:
            coarse = (self.resolution, self.resolution)
            shift = tps_grid(target, source, coarse, self.regularisation) - pixel_centres(
                coarse, *_like(target)
            )
            shift = F.interpolate(shift.permute(0, 3, 1, 2), size=size, mode="bilinear", align_corners=False)
            grid = pixel_centres(size, *_like(target)) + shift.permute(0, 2, 3, 1)
        return F.grid_sample(images, grid.to(images.dtype), mode="bilinear", padding_mode="border",
                             align_corners=False)  # fmt: skip

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
