"""Face masks from landmarks, for the mask loss and for blending a swapped face back.

All masks are (H, W) float32 in [0, 1], drawn in whatever space the landmarks are in (transform
frame landmarks into crop space with ``alignment.transform_points(points, matrix)`` first).
Shapes are drawn at 4× and averaged down, so edge pixels hold the share of them that is covered.
"""

from __future__ import annotations

import cv2
import numpy as np

from swapper.faces.alignment import landmarks_68_to_5

__all__ = [
    "MASK_KINDS",
    "ellipse_mask",
    "eye_mouth_masks",
    "face_mask",
    "feather",
    "hull_mask",
    "inter_ocular",
    "region_weights",
]

MASK_KINDS = ("hull", "extended", "ellipse")
_SHIFT = 4  # fractional bits handed to cv2's fill functions
_SS = 4  # supersampling factor of the drawn masks


def _shape(shape: tuple[int, ...]) -> tuple[int, int]:
    h, w = int(shape[0]), int(shape[1])
    if h <= 0 or w <= 0:
        raise ValueError(f"mask shape must be positive, got {shape}")
    return h, w


def _check(landmarks: np.ndarray, count: int | tuple[int, ...]) -> np.ndarray:
    lm = np.asarray(landmarks, dtype=np.float64)
    counts = (count,) if isinstance(count, int) else count
    if lm.ndim != 2 or lm.shape[1] != 2 or len(lm) not in counts or not np.isfinite(lm).all():
        raise ValueError(f"expected finite ({' or '.join(map(str, counts))}, 2) landmarks, got {lm.shape}")
    return lm


def _supersampled(shape: tuple[int, int], draw) -> np.ndarray:
    """Draw hard-edged at ``_SS``× and average down: each pixel gets its covered share (cv2's own
    anti-aliasing fattens shapes by about half a pixel)."""
    canvas = np.zeros((shape[0] * _SS, shape[1] * _SS), np.uint8)
    draw(canvas)
    return cv2.resize(canvas, (shape[1], shape[0]), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0


def _fixed(points: np.ndarray) -> np.ndarray:
    # output pixel i spans supersampled pixels _SS·i ... _SS·i + _SS - 1, centred at _SS·i + (_SS - 1) / 2
    return np.round((points * _SS + (_SS - 1) / 2) * (1 << _SHIFT)).astype(np.int32)


def _fill(points: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    hull = cv2.convexHull(_fixed(points))
    return _supersampled(shape, lambda canvas: cv2.fillConvexPoly(canvas, hull, 255, cv2.LINE_8, _SHIFT))


def polygon_mask(points: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """(H, W) float coverage in [0, 1] of the polygon through ``points`` (N, 2) pixel (x, y), in order."""
    points = np.asarray(points, np.float64)
    if points.ndim != 2 or points.shape[1] != 2 or len(points) < 3 or not np.isfinite(points).all():
        raise ValueError(f"a polygon needs finite (N >= 3, 2) points, got {points.shape}")
    ring = _fixed(points)[None]
    return _supersampled(_shape(shape), lambda canvas: cv2.fillPoly(canvas, ring, 255, cv2.LINE_8, _SHIFT))


def hull_mask(landmarks68: np.ndarray, shape: tuple[int, ...], extend: float = 0.0) -> np.ndarray:
    """Convex hull of the 68 points (jaw to brows). ``extend`` > 0 raises the brows by that share of
    the nose-bridge-to-chin distance, along the face's up direction, to cover the forehead
    (the *extended* hull; 0.3 reaches about the hairline)."""
    lm = _check(landmarks68, 68).copy()
    if extend < 0:
        raise ValueError(f"extend must be >= 0, got {extend}")
    if extend > 0:
        up = lm[27] - lm[8]  # chin → top of the nose bridge
        lm[17:27] += extend * up  # the 10 brow points
    return _fill(lm, _shape(shape))


def ellipse_mask(
    landmarks5: np.ndarray, shape: tuple[int, ...], width: float = 1.1, height: float = 1.0
) -> np.ndarray:
    """An ellipse from the 5 points: centred between the eye centre and the mouth centre, turned with
    the eye line; half-width ``width`` × the eye distance, half-height ``height`` × the eye–mouth
    distance (the defaults reach from the brows to the chin on an ArcFace-aligned face)."""
    lm = _check(landmarks5, (5, 68))
    if len(lm) == 68:
        lm = landmarks_68_to_5(lm)
    if width <= 0 or height <= 0:
        raise ValueError(f"width and height must be positive, got {width}, {height}")
    eyes, mouth = lm[:2].mean(0), lm[3:5].mean(0)
    centre = (eyes + mouth) / 2
    eye_vector = lm[1] - lm[0]
    angle = float(np.degrees(np.arctan2(eye_vector[1], eye_vector[0])))
    axes = (width * float(np.linalg.norm(eye_vector)), height * float(np.linalg.norm(mouth - eyes)))
    centre_fixed = tuple(int(v) for v in _fixed(centre[None])[0])
    axes_fixed = tuple(int(round(v * _SS * (1 << _SHIFT))) for v in axes)
    return _supersampled(
        _shape(shape),
        lambda canvas: cv2.ellipse(
            canvas, centre_fixed, axes_fixed, angle, 0, 360, 255, -1, cv2.LINE_8, _SHIFT
        ),
    )


def face_mask(
    landmarks: np.ndarray, shape: tuple[int, ...], kind: str = "hull", extend: float = 0.3
) -> np.ndarray:
    """``hull`` / ``extended`` (need 68 points; ``extend`` for the latter) or ``ellipse`` (5 or 68)."""
    if kind == "ellipse":
        return ellipse_mask(landmarks, shape)
    if kind in ("hull", "extended"):
        if len(landmarks) != 68:
            raise ValueError(
                f"a {kind} mask needs 68 landmarks (dlib), got {len(landmarks)}: use kind='ellipse' with "
                "5-point detectors such as YuNet, or add a DlibLandmarker"
            )
        return hull_mask(landmarks, shape, extend if kind == "extended" else 0.0)
    raise ValueError(f"unknown mask kind {kind!r}; choose one of {MASK_KINDS}")


def feather(mask: np.ndarray, radius: float, inside: bool = True) -> np.ndarray:
    """Soften a mask's edge over about ``radius`` pixels. ``inside`` first erodes by ``radius`` so
    the soft edge stays within the original mask (nothing outside it is touched when blending)."""
    if radius < 0:
        raise ValueError(f"radius must be >= 0, got {radius}")
    m = np.asarray(mask, dtype=np.float32)
    if radius == 0:
        return m.copy()
    r = int(np.ceil(radius))
    if inside:
        m = cv2.erode(m, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1)))
    # sigma = radius / 2 puts ~95 % of the ramp within ±radius of the edge
    return np.clip(cv2.GaussianBlur(m, (2 * r + 1, 2 * r + 1), radius / 2.0), 0.0, 1.0)


def inter_ocular(landmarks: np.ndarray) -> float:
    """Distance between the eye centres of 5 or 68 landmarks (the scale of a face in pixels)."""
    lm = _check(landmarks, (5, 68))
    if len(lm) == 68:
        lm = landmarks_68_to_5(lm)
    return float(np.linalg.norm(lm[1] - lm[0]))


def _grown(shape: tuple[int, int], groups: list[np.ndarray], radius: float) -> np.ndarray:
    """The convex hull of each group of points (a point, a segment or a polygon), grown by ``radius``
    pixels (a disc, a capsule, a rounded polygon)."""
    r = max(int(round(radius * _SS)), 0)

    def draw(canvas: np.ndarray) -> None:
        for points in groups:
            hull = cv2.convexHull(_fixed(points))
            cv2.fillConvexPoly(canvas, hull, 255, cv2.LINE_8, _SHIFT)
            # a point or a segment has no area: its outline is what gets grown
            cv2.polylines(canvas, [hull], True, 255, 1, cv2.LINE_8, _SHIFT)
        if r > 0:
            kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
            canvas[:] = cv2.dilate(canvas, kernel)

    return _supersampled(shape, draw)


def eye_mouth_masks(
    landmarks: np.ndarray,
    shape: tuple[int, ...],
    eye_radius: float | None = None,
    mouth_radius: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(eyes, mouth) region masks. 68 points: the hull of each eye (36-41, 42-47) and of the outer lips
    (48-59), grown by 0.15 / 0.1 × the inter-ocular distance (the lids, the lip edges); 5 points: a disc
    of 0.3 × it around each eye centre and a capsule of 0.25 × it joining the mouth corners. Radii in
    pixels override the defaults."""
    lm = _check(landmarks, (5, 68))
    iod = inter_ocular(lm)
    hw = _shape(shape)
    if len(lm) == 68:
        eyes = _grown(hw, [lm[36:42], lm[42:48]], 0.15 * iod if eye_radius is None else eye_radius)
        mouth = _grown(hw, [lm[48:60]], 0.1 * iod if mouth_radius is None else mouth_radius)
    else:
        eyes = _grown(hw, [lm[0:1], lm[1:2]], 0.3 * iod if eye_radius is None else eye_radius)
        mouth = _grown(hw, [lm[3:5]], 0.25 * iod if mouth_radius is None else mouth_radius)
    return eyes, mouth


def region_weights(
    landmarks: np.ndarray,
    shape: tuple[int, ...],
    face: np.ndarray | None = None,
    eyes_weight: float = 3.0,
    mouth_weight: float = 2.0,
    background_weight: float = 0.1,
) -> np.ndarray:
    """Per-pixel loss weights (DeepFaceLab's eye and mouth priority): ``background_weight`` outside the
    face mask, 1 inside, times ``eyes_weight`` in the eyes and ``mouth_weight`` in the mouth (soft edges
    blend linearly). ``face``: the face mask (default: ``face_mask`` hull for 68 points, else ellipse)."""
    if min(eyes_weight, mouth_weight, background_weight) < 0:
        raise ValueError(f"weights must be >= 0, got {eyes_weight}, {mouth_weight}, {background_weight}")
    lm = _check(landmarks, (5, 68))
    if face is None:
        face = face_mask(lm, shape, "hull" if len(lm) == 68 else "ellipse")
    eyes, mouth = eye_mouth_masks(lm, shape)
    base = background_weight + (1.0 - background_weight) * face
    return (base * (1 + (eyes_weight - 1) * eyes) * (1 + (mouth_weight - 1) * mouth)).astype(np.float32)
