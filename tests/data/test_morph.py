"""Expression morph: the thin-plate spline moves what it should, the targets follow the formula, the
faces without landmarks and the evaluation mode are left alone, and the face maps move with the faces."""

from __future__ import annotations

import pytest
import torch

from swapper.data.morph import ExpressionMorph
from swapper.faces.tps import border_points, tps_grid

W = 64


def norm(points) -> torch.Tensor:
    """Pixel (x, y) → the grid_sample frame (align_corners=False)."""
    return (2 * torch.as_tensor(points, dtype=torch.float64) + 1) / W - 1


def centroid(image: torch.Tensor) -> tuple[float, float]:
    ys, xs = torch.meshgrid(
        torch.arange(W, dtype=image.dtype), torch.arange(W, dtype=image.dtype), indexing="ij"
    )
    return float((image * xs).sum() / image.sum()), float((image * ys).sum() / image.sum())


def test_border_points_walk_the_square_once() -> None:
    points = border_points(3)
    assert points.shape == (8, 2)
    assert len({tuple(p) for p in points.tolist()}) == 8
    assert (points.abs().amax(1) == 1).all()  # all on the border


def test_the_spline_through_unmoved_points_is_the_identity() -> None:
    points = torch.cat([norm([[20, 20], [40, 22], [31, 45]]), border_points(5).double()])[None]
    grid = tps_grid(points, points, (W, W), regularisation=0.0)
    pixels = norm(torch.stack(torch.meshgrid(torch.arange(W), torch.arange(W), indexing="xy"), -1))
    torch.testing.assert_close(grid[0], pixels, atol=1e-9, rtol=0)
    image = torch.rand(1, 3, W, W, dtype=torch.float64)
    morph = ExpressionMorph(regularisation=0.0)
    torch.testing.assert_close(morph.warp(image, points, points), image, atol=1e-9, rtol=0)


def test_a_dot_at_a_source_point_lands_on_its_target() -> None:
    image = torch.zeros(1, 1, W, W, dtype=torch.float64)
    image[0, 0, 20, 30] = 1.0  # x = 30, y = 20
    source = torch.cat([norm([[30, 20], [10, 50], [50, 50]]), border_points(5).double()])[None]
    target = source.clone()
    target[0, 0] = norm([36, 26])
    out = ExpressionMorph(regularisation=0.0, resolution=None).warp(image, source, target)[0, 0]
    x, y = centroid(out)
    assert x == pytest.approx(36, abs=0.05) and y == pytest.approx(26, abs=0.05)
    assert out[0, 0] == 0 and out[-1, -1] == 0  # the border stays put


def test_a_closed_mouth_opens_and_an_open_one_closes_without_blowing_up() -> None:
    # two source points on top of each other (a closed mouth's inner lips) pulled apart, and the reverse
    # inner lips on top of each other, outer lips 3 px away; opened: all 4 px further apart; eyes stay
    eyes = [[24, 20], [40, 20]]
    lips = norm([[32, 40], [32, 40], [32, 37], [32, 43], *eyes])
    opened = norm([[32, 36], [32, 44], [32, 33], [32, 47], *eyes])
    fixed = border_points(5).double()
    pixels = norm(torch.stack(torch.meshgrid(torch.arange(W), torch.arange(W), indexing="xy"), -1))
    for source, target in ((lips, opened), (opened, lips)):
        grid = tps_grid(torch.cat([target, fixed])[None], torch.cat([source, fixed])[None], (W, W), 1e-3)[0]
        assert torch.isfinite(grid).all()
        moved = (grid - pixels).norm(dim=-1) * W / 2  # in pixels
        assert moved[36:45, 30:35].max() > 2  # the lips moved
        assert moved[:8].max() < 1.0  # the forehead, above the unmoved eyes, barely


def test_targets_swap_the_own_expression_for_the_donors() -> None:
    mean, donor_mean = torch.zeros(68, 2), torch.full((68, 2), 0.5)
    own = torch.randn(2, 68, 2) * 0.1 + mean
    donor = torch.randn(2, 68, 2) * 0.1 + donor_mean
    t0 = ExpressionMorph.targets(own, mean, donor, donor_mean, torch.zeros(2))
    t1 = ExpressionMorph.targets(own, mean, donor, donor_mean, torch.ones(2))
    torch.testing.assert_close(t0, own)
    torch.testing.assert_close(t1, mean + donor - donor_mean)  # her face shape, the donor's expression
    half = ExpressionMorph.targets(own, mean, donor, donor_mean, torch.full((2,), 0.5))
    torch.testing.assert_close(half, (t0 + t1) / 2)


def faces_and_landmarks(batch: int = 4):
    torch.manual_seed(0)
    mean = norm(torch.rand(68, 2) * 30 + 17).float()
    landmarks = mean + torch.randn(batch, 68, 2) * 0.02
    donors = mean + 0.1 + torch.randn(batch, 68, 2) * 0.05
    faces = torch.rand(batch, 3, W, W)
    return faces, landmarks, mean, donors, mean + 0.1


def test_forward_moves_faces_and_maps_alike_and_leaves_others_alone() -> None:
    faces, landmarks, mean, donors, donor_mean = faces_and_landmarks()
    landmarks[1] = float("nan")  # a crop without 68 points
    morph = ExpressionMorph(p=1.0, strength=1.0)
    out, maps, morphed = morph(faces, landmarks, mean, donors, donor_mean, extra=faces[:, :1].clone())
    assert out.shape == faces.shape and maps.shape == (4, 1, W, W)
    assert morphed.tolist() == [True, False, True, True]
    torch.testing.assert_close(maps, out[:, :1])  # the maps take the faces' warp
    assert torch.equal(out[1], faces[1])
    assert all((out[k] - faces[k]).abs().mean() > 1e-3 for k in (0, 2, 3))
    assert torch.equal(morph(faces, landmarks, mean, donors, donor_mean)[0][1], faces[1])
    assert torch.equal(ExpressionMorph(p=0.0)(faces, landmarks, mean, donors, donor_mean)[0], faces)
    morph.eval()
    assert torch.equal(morph(faces, landmarks, mean, donors, donor_mean)[0], faces)


def test_no_usable_donor_leaves_the_faces() -> None:
    faces, landmarks, mean, donors, donor_mean = faces_and_landmarks()
    out, _, morphed = ExpressionMorph(p=1.0)(
        faces, landmarks, mean, torch.full_like(donors, float("nan")), donor_mean
    )
    assert torch.equal(out, faces) and not morphed.any()


def test_bad_landmarks_and_options_are_clear_errors() -> None:
    faces, landmarks, mean, donors, donor_mean = faces_and_landmarks()
    with pytest.raises(ValueError, match="68-point"):
        ExpressionMorph()(faces, landmarks[:, :5], mean[:5], donors[:, :5], donor_mean[:5])
    for bad in ({"p": 1.5}, {"strength": -1.0}, {"border": 1}, {"regularisation": -1.0}):
        with pytest.raises(ValueError):
            ExpressionMorph(**bad)


def test_the_coarse_lattice_warps_like_the_full_spline() -> None:
    faces, landmarks, mean, donors, donor_mean = faces_and_landmarks(2)
    fixed = border_points(5).expand(2, -1, -1)
    source = torch.cat([landmarks, fixed], 1)
    target = torch.cat(
        [ExpressionMorph.targets(landmarks, mean, donors, donor_mean, torch.full((2,), 0.3)), fixed], 1
    )
    smooth = torch.nn.functional.interpolate(
        torch.rand(2, 3, 8, 8), size=(W, W), mode="bicubic", align_corners=False
    )
    full = ExpressionMorph(resolution=None).warp(smooth, source, target)
    coarse = ExpressionMorph(resolution=32).warp(smooth, source, target)
    assert (full - smooth).abs().mean() > 0.01  # it moved
    assert (coarse - full).abs().mean() < 0.1 * (full - smooth).abs().mean()
