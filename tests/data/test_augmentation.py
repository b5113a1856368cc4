import cv2
import numpy as np
import pytest
import torch

from swapper.data.augmentation import PairAugmentation, RandomWarp
from swapper.data.synthetic import Attributes, FaceRenderer, Identity


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


# ---------------------------------------------------------------- CPU augmentation of crops (albumentations)


def test_lab_jitter_moves_lightness_and_colour_separately() -> None:
    from swapper.data.augmentation_cpu import LabJitter

    rendered = FaceRenderer(size=96).render(Identity.from_seed(8), Attributes())
    rgb = (rendered * 255).astype(np.uint8).astype(np.float32) / 255  # as read from an 8-bit crop
    lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB)
    light = LabJitter(lightness=0.3, ab=0.0, p=1.0)
    light.set_random_seed(0)
    out_lab = cv2.cvtColor(light(image=rgb)["image"], cv2.COLOR_RGB2LAB)
    shift = out_lab[..., 0] - lab[..., 0]
    unclipped = (out_lab[..., 0] > 1) & (out_lab[..., 0] < 99)
    assert abs(float(np.median(shift[unclipped]))) > 1.0  # lightness moved...
    assert float(np.abs(out_lab[..., 1:] - lab[..., 1:])[unclipped].mean()) < 1.5  # ...colour did not
    same = LabJitter(0.0, 0.0, p=1.0)(image=rgb)["image"]
    assert same.dtype == np.float32 and np.abs(same - rgb).max() < 0.01
    as_uint8 = LabJitter(p=1.0)(image=(rgb * 255).astype(np.uint8))["image"]
    assert as_uint8.dtype == np.uint8 and as_uint8.shape == rgb.shape
    with pytest.raises(ValueError, match="lightness"):
        LabJitter(lightness=2.0)


def test_cpu_augmentation_and_augmented_dataset() -> None:
    import torch

    from swapper.data.augmentation_cpu import AugmentedDataset, cpu_augmentation
    from swapper.data.datasets import SyntheticPairDataset

    base = SyntheticPairDataset(image_size=32, length=4, with_truth=True)
    flip_only = AugmentedDataset(
        base, cpu_augmentation(flip_p=1.0, rotation=0, scale=0, translate=0, color_p=0)
    )
    item, plain = flip_only[0], base[0]
    torch.testing.assert_close(item["a"], plain["a"].flip(-1))  # exactly a mirror image
    torch.testing.assert_close(item["a2b_truth"], plain["a2b_truth"])  # keys not listed are left alone
    strong = AugmentedDataset(base, cpu_augmentation())
    torch.manual_seed(1)
    first = strong[1]["b"]
    torch.manual_seed(1)
    strong._seed = None  # a fresh worker with the same seed repeats its augmentations...
    assert torch.equal(strong[1]["b"], first)
    torch.manual_seed(2)  # ...another worker seed gives others
    assert not torch.equal(strong[1]["b"], first)
    assert (
        first.shape == (3, 32, 32) and first.dtype == torch.float32 and 0 <= first.min() and first.max() <= 1
    )


def test_target_maps_follow_the_target_geometry_but_not_the_warp():
    torch.manual_seed(0)
    faces = torch.rand(2, 3, 16, 16)
    maps = torch.zeros(2, 2, 16, 16)
    maps[:, :, :, :4] = 1.0  # a band on the left
    augment = PairAugmentation(warp=RandomWarp(scale=0.1), flip_p=1.0, color_jitter=0.2)
    warped, target, moved = augment(faces, maps)
    assert torch.equal(moved, maps.flip(-1))  # flipped with the target, untouched by warp and colour
    assert not torch.allclose(warped, target)  # the warp moved only the input
