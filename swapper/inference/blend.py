"""The blend stage: put a swapped crop back into its frame through the inverse alignment.

Every blender is called as ``blend(frame, face, mask, matrix)``: ``frame`` (H, W, 3) uint8,
``face`` (S, S, 3) float32 in the frame's channel order and 0-255 range, ``mask`` (S, S) in [0, 1]
(crop space), ``matrix`` the (2, 3) frame → crop transform. It returns a new frame; pixels the
(processed) mask does not reach are returned bit for bit.
"""

from __future__ import annotations

import cv2
import numpy as np

from swapper.faces.alignment import invert, paste_back, transform_points

__all__ = ["Feather", "Overlay", "Poisson"]


class Overlay:
    """Direct (masked) overlay: ``frame·(1 − m) + face·m`` with the mask as it is."""

    def __call__(
        self, frame: np.ndarray, face: np.ndarray, mask: np.ndarray, matrix: np.ndarray
    ) -> np.ndarray:
        return paste_back(frame, face, matrix, mask)


def _pixels(share: float, size: int) -> int:
    return int(round(share * size))


class Feather:
    """Erode the mask by ``erosion`` and soften its edge with a Gaussian blur of radius ``blur``
    (both shares of the crop side, so they scale with the face). With ``erosion >= blur`` the soft
    edge stays inside the original mask."""

    def __init__(self, erosion: float = 0.04, blur: float = 0.04) -> None:
        if erosion < 0 or blur < 0:
            raise ValueError(f"erosion and blur must be >= 0, got {erosion}, {blur}")
        self.erosion, self.blur = erosion, blur

    def soften(self, mask: np.ndarray) -> np.ndarray:
        size = mask.shape[0]
        m = np.asarray(mask, np.float32)
        if (e := _pixels(self.erosion, size)) > 0:
            m = cv2.erode(m, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * e + 1, 2 * e + 1)))
        if (r := _pixels(self.blur, size)) > 0:
            # kernel radius r, sigma r / 2: the ramp reaches no further than r pixels
            m = cv2.GaussianBlur(m, (2 * r + 1, 2 * r + 1), r / 2.0, borderType=cv2.BORDER_CONSTANT)
        return np.clip(m, 0.0, 1.0)

    def __call__(
        self, frame: np.ndarray, face: np.ndarray, mask: np.ndarray, matrix: np.ndarray
    ) -> np.ndarray:
        return paste_back(frame, face, matrix, self.soften(mask))


class Poisson:
    """Poisson ("seamless clone") blending with OpenCV: the face's gradients inside the mask, the
    frame's colours on its edge, so lighting and skin tone adapt. ``mixed`` keeps the stronger of
    the two gradients (textures of the frame show through). The mask is cut at ``threshold``."""

    PAD = 4  # OpenCV's solver needs the mask off the image border

    def __init__(self, mixed: bool = False, threshold: float = 0.5, erosion: float = 0.0) -> None:
        if not 0.0 < threshold < 1.0 or erosion < 0:
            raise ValueError(f"threshold must be in (0, 1) and erosion >= 0, got {threshold}, {erosion}")
        self.flag = cv2.MIXED_CLONE if mixed else cv2.NORMAL_CLONE
        self.threshold, self.erosion = threshold, erosion

    def __call__(
        self, frame: np.ndarray, face: np.ndarray, mask: np.ndarray, matrix: np.ndarray
    ) -> np.ndarray:
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(
                f"poisson blending needs (H, W, 3) uint8 frames, got {frame.shape} {frame.dtype}"
            )
        size = face.shape[0]
        m = (np.asarray(mask, np.float32) >= self.threshold).astype(np.uint8)
        if (e := _pixels(self.erosion, size)) > 0:
            m = cv2.erode(m, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * e + 1, 2 * e + 1)))
        # the crop's bounding box in the frame (the region to solve in)
        edge = size - 0.5
        corners = transform_points(
            np.array([[-0.5, -0.5], [edge, -0.5], [-0.5, edge], [edge, edge]]), invert(matrix)
        )
        h, w = frame.shape[:2]
        x0, y0 = np.maximum(np.floor(corners.min(0)).astype(int), 0)
        x1, y1 = np.minimum(np.ceil(corners.max(0)).astype(int) + 1, [w, h])
        if x1 <= x0 or y1 <= y0:
            return frame.copy()
        roi = np.asarray(matrix, np.float64).copy()
        roi[:, 2] += roi[:, :2] @ np.array([x0, y0], np.float64)  # ROI pixel → crop pixel
        dsize, flags = (int(x1 - x0), int(y1 - y0)), cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
        src = cv2.warpAffine(np.clip(face, 0, 255).astype(np.float32), roi, dsize, flags=flags,
                             borderMode=cv2.BORDER_REPLICATE)  # fmt: skip
        alpha = cv2.warpAffine(m * np.uint8(255), roi, dsize, flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP)
        if not alpha.any():
            return frame.copy()
        p = self.PAD
        dst = cv2.copyMakeBorder(frame[y0:y1, x0:x1], p, p, p, p, cv2.BORDER_REPLICATE)
        src = cv2.copyMakeBorder(np.rint(src).astype(np.uint8), p, p, p, p, cv2.BORDER_REPLICATE)
        alpha = cv2.copyMakeBorder(alpha, p, p, p, p, cv2.BORDER_CONSTANT, value=0)
        inside = alpha[p:-p, p:-p, None] > 0  # before the clone: OpenCV may write into the mask
        bx, by, bw, bh = cv2.boundingRect(alpha)
        # OpenCV places the mask's bounding box at centre − (w // 2, h // 2): this centre keeps it in place
        cloned = cv2.seamlessClone(src, dst, alpha.copy(), (bx + bw // 2, by + bh // 2), self.flag)
        out = frame.copy()
        out[y0:y1, x0:x1] = np.where(inside, cloned[p:-p, p:-p], frame[y0:y1, x0:x1])
        return out
