"""Masks from landmarks: hull, extended hull, ellipse, feathering; coverage values."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from swapper.faces.alignment import get_template, transform_points
from swapper.faces.masks import ellipse_mask, face_mask, feather, hull_mask


def ring(n: int, centre: tuple[float, float], radius: float) -> np.ndarray:
    """n points on a circle, counter-clockwise from the right."""
    t = 2 * np.pi * np.arange(n) / n
    return np.stack([centre[0] + radius * np.cos(t), centre[1] + radius * np.sin(t)], axis=1)


def polygon_area(points: np.ndarray) -> float:
    x, y = points[:, 0], points[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def rotation(degrees: float, centre: tuple[float, float]) -> np.ndarray:
    return cv2.getRotationMatrix2D(centre, degrees, 1.0)


def test_hull_mask_covers_the_polygon_of_the_points() -> None:
    points = ring(68, (60.0, 50.0), 30.0)
    mask = hull_mask(points, (100, 120))
    assert mask.shape == (100, 120) and mask.dtype == np.float32
    assert 0.0 <= mask.min() and mask.max() == 1.0
    # a 68-gon inscribed in the circle: the supersampled fill matches its area within 1 %
    assert mask.sum() == pytest.approx(polygon_area(points), rel=0.01)
    assert mask[50, 60] == 1.0 and mask[5, 5] == 0.0


def test_extended_hull_raises_the_brows_towards_the_forehead() -> None:
    points = ring(68, (60.0, 60.0), 25.0)
    points[8] = (60.0, 85.0)  # chin at the bottom, nose bridge above the centre: "up" is -y
    points[27] = (60.0, 45.0)
    points[17:27] = np.stack([np.linspace(40, 80, 10), np.full(10, 40.0)], axis=1)
    plain, extended = hull_mask(points, (120, 120)), hull_mask(points, (120, 120), extend=0.5)
    assert (extended >= plain - 1e-6).all()  # it only grows
    raised = points[17:27] + 0.5 * (points[27] - points[8])  # 20 px up
    assert raised[:, 1] == pytest.approx(np.full(10, 20.0))
    assert extended[22, 60] == 1.0 and plain[22, 60] == 0.0
    assert extended.sum() > plain.sum() + 0.8 * 40 * 20  # about the 40×20 px band above the brows
    with pytest.raises(ValueError, match="extend"):
        hull_mask(points, (120, 120), extend=-0.1)


@pytest.mark.parametrize("degrees", [0.0, 35.0, -80.0])
def test_ellipse_mask_area_and_centre(degrees: float) -> None:
    size = 112
    lm = transform_points(get_template("arcface").points5 * size, rotation(degrees, (56.0, 56.0)))
    mask = ellipse_mask(lm, (size, size), width=1.0, height=1.0)
    eye_distance = np.linalg.norm(lm[1] - lm[0])
    eye_mouth = np.linalg.norm(lm[3:5].mean(0) - lm[:2].mean(0))
    assert mask.sum() == pytest.approx(math.pi * eye_distance * eye_mouth, rel=0.01)
    ys, xs = np.mgrid[0:size, 0:size]
    centroid = np.array([(mask * xs).sum(), (mask * ys).sum()]) / mask.sum()
    np.testing.assert_allclose(centroid, (lm[:2].mean(0) + lm[3:5].mean(0)) / 2, atol=0.2)


def test_mask_coverage_of_the_templates() -> None:
    # the share of an aligned crop that each mask covers, on the templates themselves
    size = 256
    arc = get_template("arcface").points5 * size
    coverage = float(ellipse_mask(arc, (size, size)).mean())  # default 1.1 × eye distance wide
    expected = math.pi * 1.1 * (35.2372 / 112) * (40.6711 / 112)  # eye distance, eye-mouth distance
    assert coverage == pytest.approx(expected, rel=0.01) and 0.35 < coverage < 0.4
    mean = get_template("mean_face")
    jaw = ring(17, (0.5, 0.45), 0.3)  # a stand-in jaw line, inside the face
    lm68 = np.concatenate([jaw, mean.points51]) * size
    inner = float(hull_mask(lm68, (size, size)).mean())
    hull = cv2.convexHull(lm68.astype(np.float32))[:, 0]
    assert inner == pytest.approx(polygon_area(hull) / size**2, rel=0.01)


def test_face_mask_kinds() -> None:
    lm5 = get_template("arcface").points5 * 112
    np.testing.assert_array_equal(face_mask(lm5, (112, 112), "ellipse"), ellipse_mask(lm5, (112, 112)))
    with pytest.raises(ValueError, match="68 landmarks.*ellipse"):
        face_mask(lm5, (112, 112), "hull")
    with pytest.raises(ValueError, match="unknown mask kind"):
        face_mask(lm5, (112, 112), "blob")
    lm68 = ring(68, (56.0, 56.0), 30.0)
    assert face_mask(lm68, (112, 112), "extended").sum() >= face_mask(lm68, (112, 112), "hull").sum()
    # 68 points also give an ellipse (through their 5-point summary)
    assert face_mask(lm68, (112, 112), "ellipse").sum() > 0


def test_feather_stays_inside_and_softens_the_edge() -> None:
    mask = np.zeros((100, 100), np.float32)
    mask[20:80, 20:80] = 1.0
    soft = feather(mask, 6)
    assert soft.dtype == np.float32 and 0.0 <= soft.min() and soft.max() <= 1.0
    assert (soft[mask == 0] == 0).all()  # nothing leaks outside the original mask
    assert soft[50, 50] == pytest.approx(1.0)  # the middle stays opaque
    edge = soft[50, 20:33]
    assert (np.diff(edge) >= -1e-6).all() and 0.0 < edge[4] < 1.0  # a monotone ramp over ~radius px
    outward = feather(mask, 6, inside=False)
    assert outward[50, 17] > 0  # centred on the edge: some of the ramp lies outside
    np.testing.assert_array_equal(feather(mask, 0), mask)
    with pytest.raises(ValueError, match="radius"):
        feather(mask, -1)


def test_bad_landmarks_are_rejected() -> None:
    with pytest.raises(ValueError, match="68"):
        hull_mask(np.zeros((5, 2)), (10, 10))
    with pytest.raises(ValueError, match="5 or 68"):
        ellipse_mask(np.zeros((4, 2)), (10, 10))
    with pytest.raises(ValueError, match="shape"):
        hull_mask(ring(68, (5.0, 5.0), 3.0), (0, 10))
