"""Thin-plate-spline warps of images through landmarks, shared by the expression morph (training) and
the expression warp (inference).

Points are (x, y) in the ``grid_sample`` frame (``align_corners=False``): x = (2 · pixel + 1) / W − 1.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["border_points", "pixel_centres", "tps_grid", "tps_warp", "to_grid_frame"]


def to_grid_frame(points, size: int, device=None, dtype=torch.float32) -> Tensor:
    """Pixel (x, y) coordinates of a ``size``² image (pixel centres at integers) → the grid_sample frame."""
    return (2 * torch.as_tensor(points, device=device, dtype=dtype) + 1) / size - 1


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


def tps_warp(
    images: Tensor, source: Tensor, target: Tensor, regularisation: float = 1e-3, resolution: int | None = 32
) -> Tensor:
    """Resample (B, C, H, W) images so that content at ``source`` points (B, N, 2) lands on ``target`` points.

    The spline is smooth: it is evaluated on a ``resolution``² lattice and its displacement upsampled
    bilinearly (a 32² lattice costs a quarter of a 64² one and moves pixels ~0.02 px from where the full
    spline puts them, at most ~1 px inside a mouth that opens; null: every pixel)."""
    size = tuple(images.shape[-2:])
    if resolution is None or resolution >= max(size):
        grid = tps_grid(target, source, size, regularisation)  # output pixel → input point
    else:
        coarse = (resolution, resolution)
        shift = tps_grid(target, source, coarse, regularisation) - pixel_centres(coarse, *_like(target))
        shift = F.interpolate(shift.permute(0, 3, 1, 2), size=size, mode="bilinear", align_corners=False)
        grid = pixel_centres(size, *_like(target)) + shift.permute(0, 2, 3, 1)
    return F.grid_sample(images, grid.to(images.dtype), mode="bilinear", padding_mode="border",
                         align_corners=False)  # fmt: skip
