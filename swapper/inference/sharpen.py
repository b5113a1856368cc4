"""The sharpen stage: a swapped crop smaller than its face in the frame is upscaled to that size
and unsharp-masked before it is pasted back.

A 64 px model pasted over a 250 px face is a 4× bilinear stretch: soft, with no detail left at
the frame's scale. Like faceswap's convert "sharpening" and DeepFaceLab's merger "sharpen" options,
:class:`UnsharpMask` sharpens at the frame's scale: it upscales the crop by the integer factor
that brings it to (at least) the face's size in the frame (bicubic), then adds ``amount`` times
the difference to a Gaussian blur of it. It is called as ``sharpen(face, mask, matrix)`` with the
blend stage's arguments (``face`` (S, S, 3) float 0-255, ``mask`` (S, S) in [0, 1], ``matrix`` the
(2, 3) frame → crop transform) and returns the three for the larger crop, so every blender works
on its output unchanged (their sizes are shares of the crop side).
"""

from __future__ import annotations

import math

import cv2
import numpy as np

__all__ = ["UnsharpMask", "frame_scale", "upscaled"]


def frame_scale(matrix: np.ndarray) -> float:
    """Frame pixels per crop pixel of a (2, 3) frame → crop similarity (or affine) transform."""
    det = abs(float(np.linalg.det(np.asarray(matrix, np.float64)[:, :2])))
    if det <= 0:
        raise ValueError(f"the alignment matrix is singular: {np.asarray(matrix).tolist()}")
    return 1.0 / math.sqrt(det)


def upscaled(
    face: np.ndarray, mask: np.ndarray, matrix: np.ndarray, factor: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``face`` and ``mask`` resized ``factor``× (bicubic / bilinear) and the frame → crop matrix of
    the larger crop: pixel centres map as ``x_big = factor·x + (factor − 1)/2`` (OpenCV's resize)."""
    if factor < 1:
        raise ValueError(f"the upscale factor must be >= 1, got {factor}")
    if factor == 1:
        return face, mask, np.asarray(matrix, np.float64)
    size = face.shape[0] * factor
    big_face = cv2.resize(np.asarray(face, np.float32), (size, size), interpolation=cv2.INTER_CUBIC)
    big_mask = cv2.resize(np.asarray(mask, np.float32), (size, size), interpolation=cv2.INTER_LINEAR)
    big_matrix = np.asarray(matrix, np.float64) * factor
    big_matrix[:, 2] += (factor - 1) / 2.0
    return big_face, np.clip(big_mask, 0.0, 1.0), big_matrix


class UnsharpMask:
    """Upscale a crop to its face's size in the frame, then ``face + amount·(face − blur(face))``.

    ``radius``: the blur's sigma as a share of the (upscaled) crop side, so the sharpened detail
    has the same size on every face; ``amount`` 1.5 is faceswap's default overshoot (150 %).
    ``threshold`` (0-255): differences smaller than it are left alone (keeps skin and compression
    noise flat). ``max_factor`` bounds the upscale (memory on huge faces); ``upscale=false``
    sharpens at the model's size.
    """

    def __init__(
        self,
        amount: float = 1.5,
        radius: float = 0.015,
        threshold: float = 0.0,
        upscale: bool = True,
        max_factor: int = 8,
    ) -> None:
        if amount < 0 or radius <= 0 or threshold < 0 or max_factor < 1:
            raise ValueError(
                "need amount >= 0, radius > 0, threshold >= 0 and max_factor >= 1; got "
                f"amount={amount}, radius={radius}, threshold={threshold}, max_factor={max_factor}"
            )
        self.amount, self.radius, self.threshold = amount, radius, threshold
        self.upscale, self.max_factor = upscale, max_factor

    def factor(self, matrix: np.ndarray) -> int:
        if not self.upscale:
            return 1
        return int(min(self.max_factor, max(1, math.ceil(frame_scale(matrix) - 1e-6))))

    def __call__(
        self, face: np.ndarray, mask: np.ndarray, matrix: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        face, mask, matrix = upscaled(face, mask, matrix, self.factor(matrix))
        face = np.asarray(face, np.float32)
        if self.amount == 0:
            return face, mask, matrix
        sigma = max(self.radius * face.shape[0], 0.5)
        detail = face - cv2.GaussianBlur(face, (0, 0), sigma, borderType=cv2.BORDER_REPLICATE)
        if self.threshold > 0:
            detail = np.where(np.abs(detail) >= self.threshold, detail, 0.0).astype(np.float32)
        return np.clip(face + self.amount * detail, 0.0, 255.0), mask, matrix
