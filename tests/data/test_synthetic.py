"""Contracts of the synthetic face renderer: shapes, determinism, identity/attribute separation,
pose and expression effects, landmark consistency and resolution consistency."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest

from swapper.attributes import ATTRIBUTE_NAMES, ATTRIBUTE_SCALE
from swapper.data.synthetic import (
    HAIR_BALD,
    HAIR_LONG,
    Attributes,
    FaceRenderer,
    Identity,
)


@pytest.fixture(scope="module")
def renderer() -> FaceRenderer:
    return FaceRenderer(size=64)


@pytest.fixture(scope="module")
def attribute_samples() -> list[Attributes]:
    rng = np.random.default_rng(123)
    return [Attributes.sample(rng) for _ in range(8)]


def mean_abs(x: np.ndarray, y: np.ndarray) -> float:
    return float(np.abs(x - y).mean())


@pytest.mark.parametrize("size", [16, 64, 128, 224])
def test_shape_dtype_range(size: int) -> None:
    renderer = FaceRenderer(size=size)
    rng = np.random.default_rng(size)
    for seed in range(3):
        image = renderer.render(Identity.from_seed(seed), Attributes.sample(rng))
        assert image.shape == (size, size, 3)
        assert image.dtype == np.float32
        assert np.isfinite(image).all()
        assert image.min() >= 0.0 and image.max() <= 1.0
        assert image.std() > 0.05  # a face, not a flat fill


def test_deterministic_from_seeds(renderer: FaceRenderer) -> None:
    assert Identity.from_seed(7) == Identity.from_seed(7)
    assert Identity.from_seed(7) != Identity.from_seed(8)
    a1 = Attributes.sample(np.random.default_rng(3))
    a2 = Attributes.sample(np.random.default_rng(3))
    assert a1 == a2
    first = renderer.render(Identity.from_seed(7), a1)
    again = FaceRenderer(size=64).render(Identity.from_seed(7), a2)
    np.testing.assert_array_equal(first, again)


@pytest.mark.parametrize("size", [15, 0, -64, 32.5])
def test_bad_size_raises(size: float) -> None:
    with pytest.raises(ValueError, match="size"):
        FaceRenderer(size=size)  # type: ignore[arg-type]


def test_bad_supersample_raises() -> None:
    with pytest.raises(ValueError, match="supersample"):
        FaceRenderer(size=64, supersample=0)


def test_identities_differ_more_than_tiny_attribute_changes(
    renderer: FaceRenderer, attribute_samples: list[Attributes]
) -> None:
    identity_diffs, perturbation_diffs = [], []
    for i, attrs in enumerate(attribute_samples):
        a, b = Identity.from_seed(2 * i), Identity.from_seed(2 * i + 1)
        image = renderer.render(a, attrs)
        identity_diffs.append(mean_abs(image, renderer.render(b, attrs)))
        nudged = dataclasses.replace(
            attrs, yaw=attrs.yaw + 0.5, pitch=attrs.pitch + 0.5, smile=attrs.smile * 0.98
        )
        perturbation_diffs.append(mean_abs(image, renderer.render(a, nudged)))
    assert min(identity_diffs) > 0.04
    assert max(perturbation_diffs) < 0.01
    assert min(identity_diffs) > 5 * max(perturbation_diffs)


def test_attributes_change_image_not_identity(
    renderer: FaceRenderer, attribute_samples: list[Attributes]
) -> None:
    identity = Identity.from_seed(11)
    before = dataclasses.replace(identity)
    first = renderer.render(identity, attribute_samples[0])
    second = renderer.render(identity, attribute_samples[1])
    assert mean_abs(first, second) > 0.02
    assert identity == before == Identity.from_seed(11)
    assert renderer.landmarks(identity, attribute_samples[0]).shape == (5, 2)
    assert identity == before


def test_pose_expression_vector() -> None:
    attrs = Attributes(yaw=10.0, pitch=-5.0, roll=3.0, mouth_open=0.2, smile=0.7, blink=0.1)
    vec = attrs.pose_expression()
    assert ATTRIBUTE_NAMES == ("yaw", "pitch", "roll", "mouth_open", "smile", "blink")
    assert vec.dtype == np.float32
    np.testing.assert_allclose(vec, [10.0, -5.0, 3.0, 0.2, 0.7, 0.1])


def test_attribute_sample_ranges() -> None:
    rng = np.random.default_rng(0)
    vecs = np.stack([Attributes.sample(rng).pose_expression() for _ in range(300)])
    np.testing.assert_array_less(np.abs(vecs[:, :3]).max(axis=0), ATTRIBUTE_SCALE[:3])
    assert vecs[:, 3:].min() >= 0.0 and vecs[:, 3:].max() <= 1.0
    # ATTRIBUTE_SCALE (what the estimator divides by) is the full range: the extremes come close to it
    assert (np.abs(vecs).max(axis=0) > 0.9 * np.array(ATTRIBUTE_SCALE)).all()
    assert vecs.std(axis=0).min() > 0.05  # every attribute actually varies
    sample = Attributes.sample(rng)
    assert all(0.0 <= c <= 1.0 for c in sample.background + sample.background2)


def test_identity_samples_cover_hair_styles() -> None:
    styles = {Identity.from_seed(seed).hair_style for seed in range(60)}
    assert {HAIR_LONG, HAIR_BALD} <= styles and len(styles) == 4


def test_yaw_moves_nose_in_image_direction(renderer: FaceRenderer) -> None:
    identity = Identity.from_seed(2)
    xs = [renderer.landmarks(identity, Attributes(yaw=yaw))[2, 0] for yaw in (-30.0, -10.0, 0.0, 10.0, 30.0)]
    assert np.all(np.diff(xs) > 0.5)  # +yaw: nose to the right
    frontal = renderer.landmarks(identity, Attributes())
    turned = renderer.landmarks(identity, Attributes(yaw=25.0))
    # The nose stands off the face, so it moves further than the eyes.
    assert turned[2, 0] - frontal[2, 0] > (turned[:2, 0] - frontal[:2, 0]).mean() + 0.5
    up = renderer.landmarks(identity, Attributes(pitch=15.0))
    assert up[2, 1] < frontal[2, 1] - 0.5  # +pitch: face tilts up


def test_blink_changes_only_the_eyes(renderer: FaceRenderer, attribute_samples: list[Attributes]) -> None:
    size = renderer.size
    for i, attrs in enumerate(attribute_samples[:5]):
        identity = Identity.from_seed(20 + i)
        opened = dataclasses.replace(attrs, blink=0.0)
        closed = dataclasses.replace(attrs, blink=1.0)
        diff = np.abs(renderer.render(identity, opened) - renderer.render(identity, closed)).sum(-1)  # (H, W)
        inside = np.zeros_like(diff, dtype=bool)
        for x, y in renderer.landmarks(identity, opened)[:2]:
            x0, x1 = int(x - 0.11 * size), int(np.ceil(x + 0.11 * size))
            y0, y1 = int(y - 0.07 * size), int(np.ceil(y + 0.07 * size))
            inside[max(y0, 0) : y1 + 1, max(x0, 0) : x1 + 1] = True
        assert diff.sum() > 5.0  # closing the eyes is visible
        assert diff[inside].sum() / diff.sum() > 0.99
        assert inside.mean() < 0.12  # the boxes are a small part of the image


def test_expressions_move_the_mouth(renderer: FaceRenderer) -> None:
    identity = Identity.from_seed(6)
    size = renderer.size
    neutral = renderer.landmarks(identity, Attributes())
    smiling = renderer.landmarks(identity, Attributes(smile=1.0))
    assert (smiling[3:, 1] < neutral[3:, 1] - 0.5).all()  # corners go up
    assert smiling[4, 0] - smiling[3, 0] > neutral[4, 0] - neutral[3, 0]  # and apart
    np.testing.assert_array_equal(smiling[:3], neutral[:3])
    # An open mouth changes pixels around the mouth only.
    diff = np.abs(
        renderer.render(identity, Attributes()) - renderer.render(identity, Attributes(mouth_open=1.0))
    )
    diff = diff.sum(-1)  # (H, W)
    (lx, ly), (rx, _) = neutral[3], neutral[4]
    box = diff[int(ly - 0.08 * size) : int(ly + 0.12 * size), int(lx - 0.05 * size) : int(rx + 0.05 * size)]
    assert diff.sum() > 5.0 and box.sum() / diff.sum() > 0.99


def test_eye_landmarks_match_rendered_pupils() -> None:
    renderer = FaceRenderer(size=128)
    rng = np.random.default_rng(5)
    for _ in range(6):
        # Default identity: brows and lashes lighter than the pupils, so the darkest pixel is a pupil.
        attrs = dataclasses.replace(Attributes.sample(rng), blink=0.0, light_strength=0.0)
        image = renderer.render(Identity(), attrs).sum(-1)
        for x, y in renderer.landmarks(Identity(), attrs)[:2]:
            r = 8
            x0, y0 = round(x) - r, round(y) - r
            window = image[y0 : y0 + 2 * r + 1, x0 : x0 + 2 * r + 1]
            dy, dx = np.unravel_index(np.argmin(window), window.shape)
            assert np.hypot(x0 + dx - x, y0 + dy - y) < 3.0


def test_framing_offsets_shift_landmarks(renderer: FaceRenderer) -> None:
    identity = Identity.from_seed(4)
    base = renderer.landmarks(identity, Attributes())
    shifted = renderer.landmarks(identity, Attributes(offset_x=0.05, offset_y=-0.03))
    np.testing.assert_allclose(shifted - base, np.broadcast_to([3.2, -1.92], base.shape), atol=1e-4)


def test_features_hidden_when_turned_away(renderer: FaceRenderer) -> None:
    identity = Identity.from_seed(3)
    back = Attributes(yaw=180.0)
    image = renderer.render(identity, back)
    for changed in (dict(blink=1.0), dict(mouth_open=1.0, smile=1.0)):
        np.testing.assert_array_equal(image, renderer.render(identity, dataclasses.replace(back, **changed)))
    front = renderer.render(identity, Attributes())
    assert mean_abs(front, renderer.render(identity, Attributes(mouth_open=1.0))) > 1e-3


def test_light_shades_face_not_background(renderer: FaceRenderer) -> None:
    identity = Identity.from_seed(9)
    flat = renderer.render(identity, Attributes(light_strength=0.0))
    lit = renderer.render(identity, Attributes(light_strength=0.4, light_azimuth=0.0))
    np.testing.assert_array_equal(flat[:4, :4], lit[:4, :4])  # top-left corner is background
    face = (slice(20, 44), slice(20, 44))
    assert mean_abs(flat[face], lit[face]) > 0.02
    # Light from the right (azimuth 0): the right half of the face gets brighter, the left darker.
    assert lit[30:40, 40:46].mean() > flat[30:40, 40:46].mean()
    assert lit[30:40, 18:24].mean() < flat[30:40, 18:24].mean()


def test_render_128_downscaled_matches_64(attribute_samples: list[Attributes]) -> None:
    small, large = FaceRenderer(size=64), FaceRenderer(size=128)
    for i, attrs in enumerate(attribute_samples[:4]):
        identity = Identity.from_seed(30 + i)
        down = cv2.resize(large.render(identity, attrs), (64, 64), interpolation=cv2.INTER_AREA)
        assert mean_abs(down, small.render(identity, attrs)) < 0.015
        np.testing.assert_allclose(
            large.landmarks(identity, attrs), (small.landmarks(identity, attrs) + 0.5) * 2 - 0.5, atol=1e-3
        )


def test_landmarks_inside_and_ordered(renderer: FaceRenderer, attribute_samples: list[Attributes]) -> None:
    for seed in range(12):
        identity = Identity.from_seed(seed)
        for attrs in attribute_samples:
            lm = renderer.landmarks(identity, attrs)
            assert lm.dtype == np.float32 and lm.shape == (5, 2)
            assert lm.min() >= 0.0 and lm.max() <= renderer.size - 1
        lm = renderer.landmarks(identity, Attributes()) / renderer.size
        left_eye, right_eye, nose, left_mouth, right_mouth = lm
        assert left_eye[0] < nose[0] < right_eye[0] and left_mouth[0] < right_mouth[0]
        assert max(left_eye[1], right_eye[1]) < nose[1] < min(left_mouth[1], right_mouth[1])
        assert 0.35 < left_eye[1] < 0.45 and 0.7 < left_mouth[1] < 0.8  # an aligned crop's layout


def test_contact_sheet_written(renderer: FaceRenderer, tmp_path) -> None:
    rng = np.random.default_rng(0)
    identities = [Identity.from_seed(seed) for seed in range(8)]
    attributes = [Attributes()] + [Attributes.sample(rng) for _ in range(5)]
    sheet = renderer.render_grid(identities, attributes)
    assert sheet.shape == (8 * 64, 6 * 64, 3)
    np.testing.assert_array_equal(sheet[64:128, 128:192], renderer.render(identities[1], attributes[2]))
    path = tmp_path / "synthetic_sheet.png"
    assert cv2.imwrite(str(path), cv2.cvtColor(np.rint(sheet * 255).astype(np.uint8), cv2.COLOR_RGB2BGR))
    back = cv2.imread(str(path))
    assert back is not None and back.shape == (8 * 64, 6 * 64, 3)


def test_attribute_spread_narrows_every_range_and_rejects_bad_values():
    rng = np.random.default_rng(0)
    narrow = [Attributes.sample(rng, spread=0.5) for _ in range(200)]
    assert max(abs(a.yaw) for a in narrow) <= 15.0 and max(abs(a.roll) for a in narrow) <= 7.5
    assert max(abs(a.offset_x) for a in narrow) <= 0.025
    assert max(abs(a.yaw) for a in narrow) > 10.0  # narrowed, not collapsed
    for bad in (0.0, -1.0, 1.5):
        with pytest.raises(ValueError, match="spread"):
            Attributes.sample(rng, spread=bad)
