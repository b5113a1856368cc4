"""Losses for real faces: masked / priority pixel terms, weighted DSSIM and MS-SSIM, the learned mask."""

from __future__ import annotations

import math

import pytest
import torch
from kornia.losses import MS_SSIMLoss, ssim_loss

from swapper.losses.learned_mask import LearnedMaskLoss
from swapper.losses.masked import MaskedPixelLoss, weighted_mean
from swapper.losses.reconstruction import L1Loss, L2Loss
from swapper.losses.ssim import SSIMLoss
from swapper.losses.structural import DSSIMLoss, MSSSIMLoss


def _box_weights(size: int, top: int, left: int, side: int, batch: int = 2) -> torch.Tensor:
    weights = torch.zeros(batch, 1, size, size)
    weights[..., top : top + side, left : left + side] = 1.0
    return weights


def _grad_of_fake(term, size: int, weights: torch.Tensor, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    real = torch.rand(len(weights), 3, size, size, generator=g)
    fake = torch.rand(len(weights), 3, size, size, generator=g).requires_grad_(True)
    term.generator_loss(fake=fake, real=real, weights=weights).backward()
    return fake.grad


def _outside(grad: torch.Tensor, top: int, left: int, side: int, margin: int) -> torch.Tensor:
    """``grad`` with the box grown by ``margin`` px zeroed: what must be exactly zero."""
    rest = grad.clone()
    rest[..., max(top - margin, 0) : top + side + margin, max(left - margin, 0) : left + side + margin] = 0
    return rest


# ---- masked L1 / L2 -----------------------------------------------------------------------------------


FAKE = torch.arange(1.0, 9.0).view(1, 2, 2, 2)  # channel 0 [[1, 2], [3, 4]], channel 1 [[5, 6], [7, 8]]
WEIGHTS = torch.tensor([[1.0, 0.0], [0.0, 3.0]]).view(1, 1, 2, 2)


@pytest.mark.parametrize(
    ("distance", "expected"),
    [
        ("l1", (1 * 1 + 3 * 4 + 1 * 5 + 3 * 8) / (2 * (1 + 3))),  # Σ w·|e| / (C · Σ w) = 5.25
        ("l2", (1 * 1 + 3 * 16 + 1 * 25 + 3 * 64) / (2 * (1 + 3))),  # 33.25
    ],
)
def test_masked_pixel_loss_is_the_weighted_mean(distance, expected):
    loss = MaskedPixelLoss(distance=distance)
    real = torch.zeros_like(FAKE)
    assert loss.generator_loss(fake=FAKE, real=real, weights=WEIGHTS).item() == pytest.approx(expected)
    assert loss.generator_loss(fake=real, real=real, weights=WEIGHTS).item() == 0.0
    assert loss.generator_loss(fake=FAKE, real=real, weights=torch.zeros_like(WEIGHTS)).item() == 0.0


def test_masked_pixel_loss_without_weights_is_the_plain_loss():
    real = torch.rand(2, 3, 8, 8)
    fake = torch.rand(2, 3, 8, 8)
    plain_mean = MaskedPixelLoss().generator_loss(fake=FAKE, real=torch.zeros_like(FAKE))
    assert plain_mean.item() == 4.5  # the mean of 1..8
    for distance, plain in (("l1", L1Loss()), ("l2", L2Loss())):
        masked = MaskedPixelLoss(distance=distance).generator_loss(fake=fake, real=real, weights=None)
        assert masked.item() == pytest.approx(plain.generator_loss(fake=fake, real=real).item())
        uniform = MaskedPixelLoss(distance=distance).generator_loss(
            fake=fake, real=real, weights=torch.full((2, 1, 8, 8), 0.7)
        )
        assert uniform.item() == pytest.approx(masked.item())  # only relative weights matter


@pytest.mark.parametrize("distance", ["l1", "l2"])
def test_masked_pixel_loss_gradients_only_inside_the_weighted_region(distance):
    grad = _grad_of_fake(MaskedPixelLoss(distance=distance), 32, _box_weights(32, 8, 10, 12))
    assert torch.count_nonzero(_outside(grad, 8, 10, 12, margin=0)) == 0
    assert torch.count_nonzero(grad[..., 8:20, 10:22]) == grad[..., 8:20, 10:22].numel()


def test_priority_multiplier_scales_the_gradient_exactly():
    # a face hull (1) with an "eye" region at ×3 and background at 0.1, as the data builds them
    weights = torch.full((1, 1, 16, 16), 0.1)
    weights[..., 4:12, 2:14] = 1.0
    weights[..., 5:7, 4:7] = 3.0
    real = torch.zeros(1, 3, 16, 16)
    fake = torch.full((1, 3, 16, 16), 0.5, requires_grad=True)  # the same error everywhere
    MaskedPixelLoss().generator_loss(fake=fake, real=real, weights=weights).backward()
    grad = fake.grad
    # d/dfake Σ w·|e| / (C Σ w) = w / (C Σ w): proportional to the weight
    torch.testing.assert_close(grad, weights.expand_as(grad) / (3 * weights.sum()))
    assert grad[0, 0, 5, 4] / grad[0, 0, 8, 8] == pytest.approx(3.0)
    assert grad[0, 0, 0, 0] / grad[0, 0, 8, 8] == pytest.approx(0.1)


def test_weights_must_match_the_images():
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
        weighted_mean(torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8))
    with pytest.raises(ValueError, match="distance"):
        MaskedPixelLoss(distance="huber")


# ---- DSSIM --------------------------------------------------------------------------------------------


def test_dssim_of_an_image_with_itself_is_zero_and_unweighted_it_is_ssim_loss():
    x = torch.rand(2, 3, 32, 32)
    y = torch.rand(2, 3, 32, 32)
    loss = DSSIMLoss(window_size=7)
    assert loss.generator_loss(fake=x, real=x).item() == 0.0
    assert loss.generator_loss(fake=x, real=x, weights=_box_weights(32, 4, 4, 9)).item() == 0.0
    plain = loss.generator_loss(fake=x, real=y).item()
    assert plain == pytest.approx(SSIMLoss(window_size=7).generator_loss(fake=x, real=y).item())
    assert plain == pytest.approx(ssim_loss(x, y, 7).item())


def test_dssim_weights_average_the_ssim_map():
    x, y = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    weights = torch.rand(2, 1, 32, 32)
    dmap = ssim_loss(x, y, 11, reduction="none")  # (B, C, H, W)
    expected = (dmap * weights).sum() / (3 * weights.sum())
    got = DSSIMLoss().generator_loss(fake=x, real=y, weights=weights)
    assert got.item() == pytest.approx(expected.item(), rel=1e-6)
    # constant images inside a box that the window never leaves: only the luminance term is left
    a, b, c1 = 0.2, 0.7, 1e-4
    inside = DSSIMLoss().generator_loss(
        fake=torch.full((1, 3, 32, 32), a),
        real=torch.full((1, 3, 32, 32), b),
        weights=_box_weights(32, 8, 8, 16, 1),
    )
    assert inside.item() == pytest.approx((1 - (2 * a * b + c1) / (a * a + b * b + c1)) / 2, rel=1e-4)


def test_dssim_gradients_stay_within_a_window_of_the_weighted_region():
    window = 7
    grad = _grad_of_fake(DSSIMLoss(window_size=window), 48, _box_weights(48, 16, 18, 12))
    assert torch.count_nonzero(_outside(grad, 16, 18, 12, margin=window // 2)) == 0
    assert grad[..., 16:28, 18:30].abs().min() > 0


# ---- MS-SSIM ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [16, 64, 128])
def test_ms_ssim_runs_at_any_crop_size_and_is_zero_for_the_same_image(size):
    x = torch.rand(2, 3, size, size)
    loss = MSSSIMLoss()
    assert loss.generator_loss(fake=x, real=x).item() == pytest.approx(0.0, abs=1e-6)
    fake = torch.rand(2, 3, size, size, requires_grad=True)
    value = loss.generator_loss(fake=fake, real=x, weights=torch.rand(2, 1, size, size))
    assert 0 < value.item() <= 2 and torch.isfinite(value)
    value.backward()
    assert torch.isfinite(fake.grad).all()


def test_ms_ssim_unweighted_is_kornias_and_weights_average_its_map():
    x, y = torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64)
    kornia_loss = MS_SSIMLoss(alpha=1.0, compensation=1.0, reduction="none")
    full = kornia_loss(x, y)  # (B, H, W)
    assert MSSSIMLoss().generator_loss(fake=x, real=y).item() == pytest.approx(full.mean().item(), rel=1e-6)
    weights = torch.rand(2, 1, 64, 64)
    expected = (full * weights[:, 0]).sum() / weights.sum()
    assert MSSSIMLoss().generator_loss(fake=x, real=y, weights=weights).item() == pytest.approx(
        expected.item(), rel=1e-6
    )
    mixed = MS_SSIMLoss(alpha=0.84, compensation=1.0)(x, y)
    assert MSSSIMLoss(alpha=0.84).generator_loss(fake=x, real=y).item() == pytest.approx(
        mixed.item(), rel=1e-6
    )


def test_ms_ssim_exact_for_constant_images_away_from_the_padded_border():
    # constant images: every contrast-structure term is 1, the coarsest luminance term is left
    a, b, c1 = 0.3, 0.6, 1e-4
    pad = int(2 * 8.0)  # kornia zero-pads by 2·σ_max: the interior beyond it sees no padding
    # float64: in float32, E[x²] − μ² cancels to ~1e-7, which C2 = 9e-4 turns into 1e-4 per scale
    fake, real = (torch.full((1, 3, 64, 64), v, dtype=torch.float64) for v in (a, b))
    value = MSSSIMLoss().generator_loss(fake=fake, real=real, weights=_box_weights(64, pad, pad, 32, 1))
    # rel 1e-5: kornia's Gaussian windows are float32, so they sum to 1 only to ~1e-7
    assert value.item() == pytest.approx(1 - (2 * a * b + c1) / (a * a + b * b + c1), rel=1e-5)


def test_ms_ssim_gradients_stay_within_its_coarsest_window_of_the_weighted_region():
    loss = MSSSIMLoss(sigmas=(0.5, 1.0, 2.0))  # reach int(2 · 2.0) = 4 px
    grad = _grad_of_fake(loss, 48, _box_weights(48, 16, 18, 12))
    assert torch.count_nonzero(_outside(grad, 16, 18, 12, margin=4)) == 0
    assert torch.count_nonzero(grad[..., 16:28, 18:30]) > 0.99 * grad[..., 16:28, 18:30].numel()


def test_ms_ssim_bad_options_raise():
    with pytest.raises(ValueError, match="sigmas"):
        MSSSIMLoss(sigmas=())
    with pytest.raises(ValueError, match="alpha"):
        MSSSIMLoss(alpha=1.5)


# ---- learned mask -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("distance", "expected"), [("l1", 0.75), ("l2", 0.75**2), ("bce", -math.log(0.25))])
def test_learned_mask_exact_values_and_gradient(distance, expected):
    loss = LearnedMaskLoss(distance=distance)
    hull = torch.zeros(2, 1, 8, 8)
    hull[..., 2:6, 2:6] = 1.0
    assert loss.generator_loss(mask=hull.clamp(1e-7, 1 - 1e-7), face_mask=hull).item() == pytest.approx(
        0, abs=1e-5
    )
    mask = (0.25 * hull + 0.75 * (1 - hull)).requires_grad_(True)  # wrong by 0.75 everywhere
    face_mask = hull.clone().requires_grad_(True)
    value = loss.generator_loss(mask=mask, face_mask=face_mask)
    assert value.item() == pytest.approx(expected, rel=1e-5)
    value.backward()
    assert mask.grad.abs().min() > 0 and face_mask.grad is None
    assert (mask.grad[..., 2:6, 2:6] < 0).all() and (mask.grad[..., 0, :] > 0).all()  # towards the hull


def test_learned_mask_needs_a_mask_and_the_hull():
    loss = LearnedMaskLoss()
    with pytest.raises(ValueError, match="RGBA decoder"):
        loss.generator_loss(mask=None, face_mask=torch.rand(1, 1, 4, 4))
    with pytest.raises(ValueError, match="face_mask"):
        loss.generator_loss(mask=torch.rand(1, 1, 4, 4))
    with pytest.raises(ValueError, match="shape"):
        loss.generator_loss(mask=torch.rand(1, 1, 4, 4), face_mask=torch.rand(1, 1, 8, 8))
    with pytest.raises(ValueError, match="distance"):
        LearnedMaskLoss(distance="dice")
