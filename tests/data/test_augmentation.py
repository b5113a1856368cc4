import pytest
import torch

from swapper.data.augmentation import PairAugmentation, RandomWarp


def smooth_image(size: int = 64) -> torch.Tensor:
    y, x = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    return torch.stack([x, y, (x + y) / 2])[None].repeat(2, 1, 1, 1)


def test_zero_scale_warp_is_identity():
    x = torch.rand(2, 3, 32, 32)
    torch.testing.assert_close(RandomWarp(scale=0.0)(x), x)


def test_warp_without_offsets_resamples_exactly():
    # the sampling grid itself (zero flow) must reproduce the image: no half-pixel shift
    warp = RandomWarp(scale=0.03)
    warp.flow = lambda b, h, w, device, dtype: torch.zeros(b, h, w, 2)
    x = torch.rand(2, 3, 32, 32)
    torch.testing.assert_close(warp(x), x)


def test_warp_changes_image_smoothly_and_keeps_range():
    torch.manual_seed(0)
    warp = RandomWarp(grid_size=5, scale=0.03)
    x = smooth_image()
    y = warp(x)
    assert y.shape == x.shape
    assert (y - x).abs().mean() > 1e-3
    assert y.min() >= 0 and y.max() <= 1
    # smooth: neighbouring flow vectors differ by far less than the flow itself
    flow = warp.flow(4, 64, 64, "cpu", torch.float32)
    neighbour_step = (flow[:, 1:] - flow[:, :-1]).abs().max()
    assert neighbour_step < 0.25 * flow.abs().max()


def test_warp_argument_errors():
    with pytest.raises(ValueError):
        RandomWarp(grid_size=1)
    with pytest.raises(ValueError):
        RandomWarp(scale=-1)


def test_pair_augmentation_warps_input_only():
    torch.manual_seed(0)
    aug = PairAugmentation(warp=RandomWarp(scale=0.05))
    x = torch.rand(2, 3, 32, 32)
    warped, target = aug(x)
    torch.testing.assert_close(target, x)  # no geometric jitter configured: the target is the face
    assert not torch.allclose(warped, x)


def test_pair_augmentation_flip_applies_to_both():
    aug = PairAugmentation(flip_p=1.0)
    x = torch.rand(2, 3, 16, 16)
    warped, target = aug(x)
    torch.testing.assert_close(target, x.flip(-1))
    torch.testing.assert_close(warped, target)
