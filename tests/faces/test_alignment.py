"""Alignment maths: Umeyama, templates, warp / inverse / paste back, on exact and synthetic faces."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest

from swapper.data.synthetic import Attributes, FaceRenderer, Identity
from swapper.faces.alignment import (
    ARCFACE_112,
    MEAN_FACE_51,
    estimate,
    get_template,
    invert,
    landmarks_68_to_5,
    paste_back,
    transform_points,
    umeyama,
    warp,
)


def similarity(scale: float, degrees: float, tx: float, ty: float) -> np.ndarray:
    a = np.radians(degrees)
    return np.array([[scale * np.cos(a), -scale * np.sin(a), tx], [scale * np.sin(a), scale * np.cos(a), ty]])


def smooth_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """(H, W, 3) float32 in [0, 1], band-limited so bilinear resampling is nearly exact."""
    noise = np.random.default_rng(seed).random((h, w, 3)).astype(np.float32)
    img = cv2.GaussianBlur(noise, (0, 0), 6.0)
    return (img - img.min()) / (img.max() - img.min())


@pytest.mark.parametrize(("scale", "degrees"), [(1.0, 0.0), (2.5, 37.0), (0.3, -120.0), (1.7, 179.0)])
def test_umeyama_recovers_a_known_similarity_exactly(scale: float, degrees: float) -> None:
    src = np.random.default_rng(1).uniform(-50, 150, (12, 2))
    matrix = similarity(scale, degrees, 13.5, -7.25)
    np.testing.assert_allclose(umeyama(src, transform_points(src, matrix)), matrix, atol=1e-9)


def test_umeyama_is_least_squares_and_never_reflects() -> None:
    rng = np.random.default_rng(2)
    src = rng.uniform(0, 100, (30, 2))
    matrix = similarity(1.3, 20.0, 5.0, 9.0)
    dst = transform_points(src, matrix) + rng.normal(0, 0.5, src.shape)
    fit = umeyama(src, dst)
    residual = np.linalg.norm(transform_points(src, fit) - dst, axis=1).mean()
    assert residual < np.linalg.norm(transform_points(src, matrix) - dst, axis=1).mean() + 1e-9
    mirrored = src * [-1, 1]  # a reflection: the best *rotation* has a positive determinant
    assert np.linalg.det(umeyama(src, mirrored)[:, :2]) > 0


def test_umeyama_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="coincide"):
        umeyama(np.ones((5, 2)), np.zeros((5, 2)))
    with pytest.raises(ValueError, match="same number"):
        umeyama(np.zeros((5, 2)), np.zeros((4, 2)))
    with pytest.raises(ValueError, match="NaN"):
        umeyama(np.full((5, 2), np.nan), np.zeros((5, 2)))


def test_templates() -> None:
    arc = get_template("arcface")
    np.testing.assert_allclose(arc.points5 * 112, ARCFACE_112)  # coverage 1 = InsightFace's 112 layout
    np.testing.assert_allclose(arc.points5 * 224, ARCFACE_112 * 2)  # scales to any crop size
    mean = get_template("mean_face")
    assert mean.coverage == 0.625 and mean.points51.shape == (51, 2)
    np.testing.assert_allclose(mean.points51, 0.5 + 0.625 * (MEAN_FACE_51 - 0.5))
    assert mean.points51[10:14, 0] == pytest.approx([0.5] * 4)  # the nose line is centred
    assert mean.points5[0, 0] < 0.5 < mean.points5[1, 0]  # eye on the image's left first
    wide = get_template("mean_face", coverage=0.5)
    assert np.ptp(wide.points51, axis=0) == pytest.approx(np.ptp(mean.points51, axis=0) * 0.5 / 0.625)
    with pytest.raises(ValueError, match="unknown alignment template"):
        get_template("ffhq")
    with pytest.raises(ValueError, match="coverage"):
        get_template("arcface", coverage=0.0)


@pytest.mark.parametrize("name", ["arcface", "mean_face"])
@pytest.mark.parametrize("size", [64, 112, 256])
def test_estimate_maps_landmarks_onto_the_template(name: str, size: int) -> None:
    template = get_template(name)
    truth = similarity(0.4, 25.0, 30.0, -12.0)  # frame -> crop
    frame5 = transform_points(template.points5 * size, invert(truth))
    np.testing.assert_allclose(estimate(frame5, template, size), truth, atol=1e-9)
    if template.points51 is not None:  # 68 points use the 51 non-jaw ones; the jaw does not matter
        frame68 = np.concatenate([np.random.default_rng(0).uniform(0, 99, (17, 2)), template.points51 * size])
        np.testing.assert_allclose(
            estimate(transform_points(frame68, invert(truth)), template, size), truth, atol=1e-9
        )


def test_estimate_rejects_other_landmark_counts() -> None:
    with pytest.raises(ValueError, match="5 or 68"):
        estimate(np.zeros((7, 2)) + np.arange(7)[:, None], get_template("arcface"), 112)


def test_landmarks_68_to_5() -> None:
    lm = np.arange(136, dtype=np.float64).reshape(68, 2)
    five = landmarks_68_to_5(lm)
    np.testing.assert_allclose(five, [lm[36:42].mean(0), lm[42:48].mean(0), lm[30], lm[48], lm[54]])


def test_invert_composes_to_the_identity() -> None:
    m = similarity(1.7, -33.0, 40.0, 2.0)
    inv = invert(m)
    pts = np.random.default_rng(3).uniform(-100, 100, (20, 2))
    np.testing.assert_allclose(transform_points(transform_points(pts, m), inv), pts, atol=1e-9)
    np.testing.assert_allclose(invert(inv), m, atol=1e-12)
    with pytest.raises(ValueError, match="singular"):
        invert(np.zeros((2, 3)))


def test_warp_then_inverse_is_nearly_the_identity() -> None:
    frame = smooth_image(200, 240)
    matrix = similarity(1.6, 20.0, -60.0, -100.0)  # crop = frame zoomed in 1.6× and turned
    crop = warp(frame, matrix, 192)
    back = paste_back(np.zeros_like(frame), crop, matrix)  # full-square mask: pure inverse warp
    # compare where the crop saw the frame, 3 px away from the crop's edges
    inside = paste_back(np.zeros((200, 240), np.float32), np.ones((192, 192), np.float32), matrix)
    inside = cv2.erode(inside, np.ones((7, 7), np.uint8)) > 0.999
    assert inside.sum() > 10_000
    error = np.abs(back - frame)[inside]
    assert error.mean() < 2e-3 and error.max() < 0.02


def test_warp_follows_transform_points_to_subpixel_precision() -> None:
    # a Gaussian blob at p in the frame lands, centroid for centroid, at transform_points(p) in the crop
    yy, xx = np.mgrid[0:120, 0:160].astype(np.float32)
    p = np.array([70.3, 55.8])
    blob = np.exp(-((xx - p[0]) ** 2 + (yy - p[1]) ** 2) / (2 * 4.0**2))
    matrix = similarity(1.4, 30.0, -20.0, 10.0)
    crop = warp(blob, matrix, 160)
    cy, cx = np.mgrid[0:160, 0:160]
    centroid = np.array([(crop * cx).sum(), (crop * cy).sum()]) / crop.sum()
    np.testing.assert_allclose(centroid, transform_points(p[None], matrix)[0], atol=0.05)


def test_warp_rejects_unknown_modes() -> None:
    with pytest.raises(ValueError, match="border"):
        warp(np.zeros((8, 8, 3), np.uint8), np.eye(2, 3), 8, border="wrap")


def test_paste_back_leaves_pixels_outside_the_mask_unchanged() -> None:
    rng = np.random.default_rng(4)
    frame = rng.integers(0, 256, (180, 220, 3), dtype=np.uint8)
    face = (smooth_image(96, 96, seed=5) * 255).astype(np.uint8)  # smooth: sub-pixel rounding is harmless
    mask = np.zeros((96, 96), np.float32)
    cv2.circle(mask, (48, 48), 30, 1.0, -1)
    matrix = similarity(0.8, 15.0, -40.0, -20.0)
    out = paste_back(frame, face, matrix, mask)
    assert out.dtype == frame.dtype and out.shape == frame.shape
    # the mask warped into the frame independently, grown by 2 px: nothing outside it may change
    warped = cv2.warpAffine(mask, invert(matrix), (220, 180), flags=cv2.INTER_LINEAR)
    reach = cv2.dilate((warped > 0).astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    np.testing.assert_array_equal(out[~reach], frame[~reach])
    assert (out != frame).any(axis=2).sum() > 0.9 * np.pi * (30 / 0.8) ** 2  # the disc did change
    # well inside the mask the frame now shows the face
    core = cv2.erode((warped > 0.999).astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    expected = cv2.warpAffine(face, invert(matrix), (220, 180), flags=cv2.INTER_LINEAR)
    assert core.sum() > 1500
    assert np.abs(out[core].astype(int) - expected[core].astype(int)).max() <= 2
    # a zero mask, or a crop entirely off the frame, changes nothing
    np.testing.assert_array_equal(paste_back(frame, face, matrix, np.zeros_like(mask)), frame)
    off = similarity(1.0, 0.0, 1000.0, 1000.0)
    np.testing.assert_array_equal(paste_back(frame, face, off), frame)


def test_paste_back_checks_shapes() -> None:
    frame = np.zeros((50, 50, 3), np.uint8)
    with pytest.raises(ValueError, match="square"):
        paste_back(frame, np.zeros((20, 30, 3), np.uint8), np.eye(2, 3))
    with pytest.raises(ValueError, match="mask"):
        paste_back(frame, np.zeros((20, 20, 3), np.uint8), np.eye(2, 3), np.ones((10, 10)))


@pytest.fixture(scope="module")
def synthetic_faces() -> list[tuple[np.ndarray, np.ndarray]]:
    """(image, 5 landmarks) of rendered faces placed off-centre, smaller and turned in a 256 frame."""
    renderer = FaceRenderer(size=160)
    rng = np.random.default_rng(7)
    out = []
    for seed in range(6):
        attrs = dataclasses.replace(
            Attributes.sample(rng), yaw=rng.uniform(-12, 12), pitch=rng.uniform(-8, 8)
        )
        face = (renderer.render(Identity.from_seed(seed), attrs) * 255).astype(np.uint8)
        lm = renderer.landmarks(Identity.from_seed(seed), attrs).astype(np.float64)
        place = similarity(
            rng.uniform(0.7, 1.3), rng.uniform(-25, 25), rng.uniform(20, 60), rng.uniform(20, 60)
        )
        frame = cv2.warpAffine(face, place, (256, 256), flags=cv2.INTER_LINEAR)
        out.append((frame, transform_points(lm, place)))
    return out


@pytest.mark.parametrize("name", ["arcface", "mean_face"])
def test_synthetic_faces_align_onto_the_template(synthetic_faces, name: str) -> None:
    template, size = get_template(name), 112
    for frame, lm in synthetic_faces:
        matrix = estimate(lm, template, size)
        crop = warp(frame, matrix, size)
        assert crop.shape == (size, size, 3) and crop.std() > 10  # a face, not black
        error = np.linalg.norm(transform_points(lm, matrix) - template.points5 * size, axis=1)
        # what remains is the face's own shape and pose (±12° yaw), not placement: < 5 % of the crop
        assert error.mean() < 0.05 * size, error
        # undoing the placement: the eyes are level and the face is upright in every crop
        eyes = transform_points(lm[:2], matrix)
        assert abs(eyes[1, 1] - eyes[0, 1]) < 0.015 * size
        assert transform_points(lm[3:5], matrix)[:, 1].mean() > eyes[:, 1].mean() + 0.2 * size


def test_synthetic_crops_do_not_depend_on_placement(synthetic_faces) -> None:
    # the same rendered face placed two ways in the frame gives the same aligned crop
    renderer = FaceRenderer(size=160)
    idt, attrs = Identity.from_seed(3), Attributes()
    face = (renderer.render(idt, attrs) * 255).astype(np.uint8)
    lm = renderer.landmarks(idt, attrs).astype(np.float64)
    template, crops = get_template("arcface"), []
    for place in (similarity(1.2, 20.0, 10.0, 40.0), similarity(1.0, -30.0, 60.0, 120.0)):
        frame = cv2.warpAffine(face, place, (320, 320), flags=cv2.INTER_CUBIC)
        crops.append(warp(frame, estimate(transform_points(lm, place), template, 96), 96).astype(np.float32))
    inner = (slice(20, 76), slice(20, 76))
    assert np.abs(crops[0][inner] - crops[1][inner]).mean() < 4.0  # of 255: resampling blur only
