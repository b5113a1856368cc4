"""The mask stage: which pixels of the swapped crop replace the frame's (crop space, (S, S) in [0, 1]).

Every mask is called as ``mask(landmarks, size, predicted)`` with the face's landmarks in crop
pixels and the model's predicted mask (RGBA decoders) or ``None``.
"""

from __future__ import annotations

import numpy as np

from swapper.faces.masks import face_mask

__all__ = ["BoxMask", "LandmarkMask", "PredictedMask"]


class BoxMask:
    """The whole crop square, less ``inset`` (share of the side) on each edge: the articles' direct
    overlay, whose square edge shows unless blended."""

    def __init__(self, inset: float = 0.0) -> None:
        if not 0.0 <= inset < 0.5:
            raise ValueError(f"inset must be in [0, 0.5), got {inset}")
        self.inset = inset

    def __call__(self, landmarks: np.ndarray, size: int, predicted: np.ndarray | None = None) -> np.ndarray:
        mask = np.zeros((size, size), np.float32)
        k = int(round(self.inset * size))
        mask[k : size - k, k : size - k] = 1.0
        return mask


class LandmarkMask:
    """A face shape drawn from the landmarks: ``hull`` / ``extended`` (68 points: a detector with
    dlib landmarks, e.g. detector=yunet_68) or ``ellipse`` (5 or 68 points)."""

    def __init__(self, kind: str = "ellipse", extend: float = 0.3) -> None:
        if kind not in ("hull", "extended", "ellipse"):
            raise ValueError(f"landmark mask kind must be hull, extended or ellipse, got {kind!r}")
        self.kind, self.extend = kind, extend

    def __call__(self, landmarks: np.ndarray, size: int, predicted: np.ndarray | None = None) -> np.ndarray:
        return face_mask(landmarks, (size, size), self.kind, self.extend)


class PredictedMask:
    """The mask an RGBA decoder predicts with the face; ``threshold`` > 0 cuts its faint tail
    (values below it become 0) so the blend leaves the background's pixels exactly as they were."""

    def __init__(self, threshold: float = 0.05) -> None:
        if not 0.0 <= threshold < 1.0:
            raise ValueError(f"threshold must be in [0, 1), got {threshold}")
        self.threshold = threshold

    def __call__(self, landmarks: np.ndarray, size: int, predicted: np.ndarray | None = None) -> np.ndarray:
        if predicted is None:
            raise ValueError(
                "infer/mask=predicted needs a model that predicts a mask (an RGBA decoder, e.g. "
                "decoder=deepfakes_rgba); this run's model does not: use infer/mask=ellipse, hull or box"
            )
        mask = np.clip(np.asarray(predicted, np.float32), 0.0, 1.0)
        if mask.shape != (size, size):
            raise ValueError(f"predicted mask {mask.shape} does not match the crop size {size}")
        return np.where(mask >= self.threshold, mask, 0.0).astype(np.float32)
