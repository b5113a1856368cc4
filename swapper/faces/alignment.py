"""Face alignment shared by extraction, training and inference: templates, Umeyama, warp, paste back.

Conventions: points are (N, 2) float arrays of (x, y) in OpenCV pixel coordinates (pixel centres at
integers); a *matrix* is a (2, 3) float64 similarity transform that maps frame pixels to crop
pixels, so ``warp(frame, matrix, size)`` cuts the aligned crop and ``invert(matrix)`` maps back.

Landmark sets: 5 points in the ArcFace / YuNet order (eye on the image's left, eye on the right,
nose tip, mouth corner on the left, mouth corner on the right) or dlib's 68 points (iBUG 300-W,
0-based: jaw 0-16, brows 17-26, nose 27-35, eyes 36-47, mouth 48-67).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

__all__ = [
    "ARCFACE_112",
    "MEAN_FACE_51",
    "TEMPLATE_NAMES",
    "Template",
    "estimate",
    "get_template",
    "invert",
    "landmarks_68_to_5",
    "paste_back",
    "transform_points",
    "umeyama",
    "warp",
]

# InsightFace's ArcFace template: where the 5 points sit in a 112×112 recognition crop (pixels).
ARCFACE_112 = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]]
)

# The Deepfakes / faceswap mean face: iBUG points 17-67 (the 68 minus the jaw line) in a unit square,
# the numbers of the original reddit code. Later faceswap versions shift x by +0.009873 so that the
# nose line (0.490127) sits at exactly 0.5; we do the same so crops are centred.
_MEAN_FACE_X = np.array([
    0.000213256, 0.0752622, 0.18113, 0.29077, 0.393397, 0.586856, 0.689483, 0.799124, 0.904991, 0.98004,
    0.490127, 0.490127, 0.490127, 0.490127, 0.36688, 0.426036, 0.490127, 0.554217, 0.613373, 0.121737,
    0.187122, 0.265825, 0.334606, 0.260918, 0.182743, 0.645647, 0.714428, 0.793132, 0.858516, 0.79751,
    0.719335, 0.254149, 0.340985, 0.428858, 0.490127, 0.551395, 0.639268, 0.726104, 0.642159, 0.556721,
    0.490127, 0.423532, 0.338094, 0.290379, 0.428096, 0.490127, 0.552157, 0.689874, 0.553364, 0.490127,
    0.42689,
])  # fmt: skip
_MEAN_FACE_Y = np.array([
    0.106454, 0.038915, 0.0187482, 0.0344891, 0.0773906, 0.0773906, 0.0344891, 0.0187482, 0.038915,
    0.106454, 0.203352, 0.307009, 0.409805, 0.515625, 0.587326, 0.609345, 0.628106, 0.609345, 0.587326,
    0.216423, 0.178758, 0.179852, 0.231733, 0.245099, 0.244077, 0.231733, 0.179852, 0.178758, 0.216423,
    0.244077, 0.245099, 0.780233, 0.745405, 0.727388, 0.742578, 0.727388, 0.745405, 0.780233, 0.864805,
    0.902192, 0.909281, 0.902192, 0.864805, 0.784792, 0.778746, 0.785343, 0.778746, 0.784792, 0.824182,
    0.831803, 0.824182,
])  # fmt: skip
MEAN_FACE_51 = np.stack([_MEAN_FACE_X + (0.5 - 0.490127), _MEAN_FACE_Y], axis=1)  # (51, 2)

# faceswap's extraction keeps the mean face's unit square in the middle 160 px of a 256 crop
# (padding = 0.1875 of the side on each side), i.e. 62.5 % of the crop side.
MEAN_FACE_COVERAGE = 0.625

_BORDERS = {
    "constant": cv2.BORDER_CONSTANT,
    "replicate": cv2.BORDER_REPLICATE,
    "reflect": cv2.BORDER_REFLECT101,
}
_INTERPOLATIONS = {"nearest": cv2.INTER_NEAREST, "linear": cv2.INTER_LINEAR, "cubic": cv2.INTER_CUBIC}


def landmarks_68_to_5(landmarks: np.ndarray) -> np.ndarray:
    """(68, 2) iBUG points → (5, 2) ArcFace-order points: eye centres, nose tip, mouth corners."""
    lm = _check_points(landmarks, "landmarks")
    if len(lm) != 68:
        raise ValueError(f"expected 68 landmarks, got {len(lm)}")
    return np.stack([lm[36:42].mean(0), lm[42:48].mean(0), lm[30], lm[48], lm[54]])


@dataclass(frozen=True, eq=False)
class Template:
    """Where landmarks land in a square crop, in crop units (0 = left/top edge, 1 = right/bottom).

    ``points5`` is always set (5-point detectors); ``points51`` (iBUG 17-67) when the template is
    defined for 68-point landmarks, which then take precedence: 51 points fix the crop more
    steadily than 5.
    """

    name: str
    points5: np.ndarray  # (5, 2)
    points51: np.ndarray | None = None  # (51, 2)
    coverage: float = 1.0


def _with_coverage(points: np.ndarray, coverage: float) -> np.ndarray:
    # face units → crop units: the face's unit square shrinks about the crop centre
    return 0.5 + coverage * (points - 0.5)


def get_template(name: str, coverage: float | None = None) -> Template:
    """A named template: ``arcface`` (SimSwap / ArcFace crops; coverage 1 = InsightFace's 112 layout)
    or ``mean_face`` (Deepfakes crops; ``coverage`` = share of the crop side the mean face spans,
    default 0.625 as faceswap's). Smaller coverage zooms out (more context around the face)."""
    if coverage is not None and not 0.0 < coverage <= 2.0:
        raise ValueError(f"coverage must be in (0, 2], got {coverage}")
    if name == "arcface":
        c = 1.0 if coverage is None else float(coverage)
        return Template(name, _with_coverage(ARCFACE_112 / 112.0, c), None, c)
    if name == "mean_face":
        c = MEAN_FACE_COVERAGE if coverage is None else float(coverage)
        points51 = _with_coverage(MEAN_FACE_51, c)
        # 5-point version of the same face (for YuNet): iBUG eyes 36-47 are rows 19-30 of the 51
        full = np.concatenate([np.zeros((17, 2)), points51])
        return Template(name, landmarks_68_to_5(full), points51, c)
    raise ValueError(f"unknown alignment template {name!r}; choose one of {', '.join(TEMPLATE_NAMES)}")


TEMPLATE_NAMES = ("arcface", "mean_face")


def _check_points(points: np.ndarray, what: str) -> np.ndarray:
    p = np.asarray(points, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != 2:
        raise ValueError(f"{what} must have shape (N, 2), got {p.shape}")
    if not np.isfinite(p).all():
        raise ValueError(f"{what} contain NaN or infinite values")
    return p


def umeyama(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation) with ``dst ≈ M @ [src, 1]``.

    Umeyama (1991), "Least-squares estimation of transformation parameters between two point
    patterns": SVD of the cross-covariance; the sign fix keeps it a rotation, never a reflection.
    Returns the (2, 3) matrix.
    """
    src, dst = _check_points(src, "src"), _check_points(dst, "dst")
    if src.shape != dst.shape or len(src) < 2:
        raise ValueError(
            f"need the same number (>= 2) of src and dst points, got {src.shape} and {dst.shape}"
        )
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    var_s = (s**2).sum() / len(src)
    if var_s < 1e-12:
        raise ValueError("src points all coincide: no transform can be estimated")
    u, sigma, vt = np.linalg.svd(d.T @ s / len(src))  # cross-covariance (2, 2)
    sign = np.array([1.0, 1.0 if np.linalg.det(u) * np.linalg.det(vt) >= 0 else -1.0])
    rotation = u @ np.diag(sign) @ vt
    scale = float((sigma * sign).sum() / var_s)
    matrix = np.empty((2, 3))
    matrix[:, :2] = scale * rotation
    matrix[:, 2] = mu_d - matrix[:, :2] @ mu_s
    return matrix


def estimate(landmarks: np.ndarray, template: Template, size: int) -> np.ndarray:
    """The (2, 3) matrix that maps ``landmarks`` (5 or 68 points, frame pixels) onto ``template``
    in a ``size``×``size`` crop."""
    lm = _check_points(landmarks, "landmarks")
    if size <= 0:
        raise ValueError(f"crop size must be positive, got {size}")
    if len(lm) == 68 and template.points51 is not None:
        return umeyama(lm[17:], template.points51 * size)
    if len(lm) == 68:
        lm = landmarks_68_to_5(lm)
    if len(lm) != 5:
        raise ValueError(f"alignment needs 5 or 68 landmarks, got {len(lm)}")
    return umeyama(lm, template.points5 * size)


def transform_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply a (2, 3) affine matrix to (N, 2) points."""
    p = _check_points(points, "points")
    m = _check_matrix(matrix)
    return p @ m[:, :2].T + m[:, 2]


def _check_matrix(matrix: np.ndarray) -> np.ndarray:
    m = np.asarray(matrix, dtype=np.float64)
    if m.shape != (2, 3) or not np.isfinite(m).all():
        raise ValueError(f"an alignment matrix must be a finite (2, 3) array, got shape {m.shape}")
    return m


def invert(matrix: np.ndarray) -> np.ndarray:
    """The inverse (2, 3) affine transform (crop pixels → frame pixels)."""
    m = _check_matrix(matrix)
    det = np.linalg.det(m[:, :2])
    if abs(det) < 1e-12:
        raise ValueError("alignment matrix is singular and cannot be inverted")
    inv = np.empty((2, 3))
    inv[:, :2] = np.linalg.inv(m[:, :2])
    inv[:, 2] = -inv[:, :2] @ m[:, 2]
    return inv


def warp(
    image: np.ndarray,
    matrix: np.ndarray,
    size: int,
    border: str = "constant",
    interpolation: str = "linear",
) -> np.ndarray:
    """Cut the aligned ``size``×``size`` crop out of ``image`` (H, W[, C]); dtype is kept.

    ``border``: what fills crop pixels outside the frame (``constant`` = 0, ``replicate``,
    ``reflect``).
    """
    if border not in _BORDERS or interpolation not in _INTERPOLATIONS:
        raise ValueError(
            f"border must be one of {list(_BORDERS)} and interpolation one of {list(_INTERPOLATIONS)}, "
            f"got {border!r}, {interpolation!r}"
        )
    m = _check_matrix(matrix)
    return cv2.warpAffine(
        image, m, (int(size), int(size)), flags=_INTERPOLATIONS[interpolation], borderMode=_BORDERS[border]
    )


def paste_back(
    frame: np.ndarray, face: np.ndarray, matrix: np.ndarray, mask: np.ndarray | None = None
) -> np.ndarray:
    """Blend an aligned crop back into a copy of ``frame``: ``frame·(1 − m) + face·m``.

    ``face`` is (S, S, C) in the crop made with ``matrix``; ``mask`` (S, S) in [0, 1] in crop space
    (``None`` = the whole square). Pixels that the warped mask does not reach are returned
    unchanged, bit for bit. Only the crop's bounding box in the frame is touched (fast on big frames).
    """
    m = _check_matrix(matrix)
    if face.ndim != frame.ndim or face.shape[0] != face.shape[1] or face.shape[2:] != frame.shape[2:]:
        raise ValueError(f"face {face.shape} must be a square crop with the channels of frame {frame.shape}")
    s = face.shape[0]
    if mask is None:
        mask = np.ones((s, s), np.float32)
    if mask.shape != (s, s):
        raise ValueError(f"mask {mask.shape} must be one channel of the crop's size ({s}, {s})")
    out = frame.copy()
    # bounding box of the crop's corners in the frame, clipped to it
    edge = s - 0.5
    corners = transform_points(np.array([[-0.5, -0.5], [edge, -0.5], [-0.5, edge], [edge, edge]]), invert(m))
    h, w = frame.shape[:2]
    x0, y0 = np.maximum(np.floor(corners.min(0)).astype(int), 0)
    x1, y1 = np.minimum(np.ceil(corners.max(0)).astype(int) + 1, [w, h])
    if x1 <= x0 or y1 <= y0:
        return out  # the crop lies outside the frame
    roi = m.copy()
    roi[:, 2] += m[:, :2] @ np.array([x0, y0], dtype=np.float64)  # ROI pixel → crop pixel
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP  # the matrix already maps destination → source
    size = (int(x1 - x0), int(y1 - y0))
    face_f = cv2.warpAffine(face.astype(np.float32), roi, size, flags=flags, borderMode=cv2.BORDER_CONSTANT)
    alpha = cv2.warpAffine(mask.astype(np.float32), roi, size, flags=flags, borderMode=cv2.BORDER_CONSTANT)
    region = out[y0:y1, x0:x1].astype(np.float32)
    face_f = face_f.reshape(region.shape)  # cv2 drops a trailing channel axis of 1
    alpha = np.clip(alpha, 0.0, 1.0).reshape(region.shape[:2] + (1,) * (region.ndim - 2))
    blended = region * (1.0 - alpha) + face_f * alpha
    if np.issubdtype(frame.dtype, np.integer):
        info = np.iinfo(frame.dtype)
        blended = np.clip(np.rint(blended), info.min, info.max)
    out[y0:y1, x0:x1] = blended.astype(frame.dtype)
    return out
