"""The colour stage: match the swapped face's colours to the face it replaces (the two people's skin
tones and the two shots' lighting differ).

Every corrector is called as ``correct(swapped, original, mask)``: (S, S, 3) float32 RGB crops in
[0, 1] and the (S, S) blend mask; statistics come from the pixels where the mask is at least 0.5.
It returns the corrected swapped crop.
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["HistogramMatch", "MeanStdTransfer", "NoColorCorrection"]

_MIN_PIXELS = 16  # fewer masked pixels than this: too few for statistics, the crop is returned as it is


def _region(mask: np.ndarray) -> np.ndarray:
    return np.asarray(mask) >= 0.5


class NoColorCorrection:
    def __call__(self, swapped: np.ndarray, original: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return swapped


class MeanStdTransfer:
    """Reinhard et al. (2001) colour transfer: shift and scale each channel of the swapped face in Lab
    to the mean and standard deviation of the original face. ``strength`` in [0, 1] blends the
    result with the uncorrected face; ``max_scale`` bounds the std ratio (flat regions)."""

    def __init__(self, strength: float = 1.0, max_scale: float = 3.0) -> None:
        if not 0.0 <= strength <= 1.0 or max_scale < 1.0:
            raise ValueError(f"strength must be in [0, 1] and max_scale >= 1, got {strength}, {max_scale}")
        self.strength, self.max_scale = strength, max_scale

    def __call__(self, swapped: np.ndarray, original: np.ndarray, mask: np.ndarray) -> np.ndarray:
        region = _region(mask)
        if region.sum() < _MIN_PIXELS:
            return swapped
        lab_s = cv2.cvtColor(np.clip(swapped, 0, 1).astype(np.float32), cv2.COLOR_RGB2LAB)
        lab_o = cv2.cvtColor(np.clip(original, 0, 1).astype(np.float32), cv2.COLOR_RGB2LAB)
        mean_s, std_s = lab_s[region].mean(0), lab_s[region].std(0)
        mean_o, std_o = lab_o[region].mean(0), lab_o[region].std(0)
        scale = np.clip(std_o / np.maximum(std_s, 1e-3), 1.0 / self.max_scale, self.max_scale)
        matched = (lab_s - mean_s) * scale + mean_o
        out = cv2.cvtColor(matched.astype(np.float32), cv2.COLOR_LAB2RGB)
        out = self.strength * out + (1.0 - self.strength) * swapped
        return np.clip(out, 0.0, 1.0).astype(np.float32)


class HistogramMatch:
    """Map each RGB channel of the swapped face through the quantile function of the original's, so
    their histograms inside the mask agree (``bins`` quantiles, linear in between)."""

    def __init__(self, bins: int = 256, strength: float = 1.0) -> None:
        if bins < 2 or not 0.0 <= strength <= 1.0:
            raise ValueError(f"bins must be >= 2 and strength in [0, 1], got {bins}, {strength}")
        self.bins, self.strength = bins, strength

    def __call__(self, swapped: np.ndarray, original: np.ndarray, mask: np.ndarray) -> np.ndarray:
        region = _region(mask)
        if region.sum() < _MIN_PIXELS:
            return swapped
        q = np.linspace(0.0, 1.0, self.bins)
        out = np.empty_like(swapped, dtype=np.float32)
        for c in range(3):
            source_q = np.quantile(swapped[..., c][region], q)
            target_q = np.quantile(original[..., c][region], q)
            # np.interp needs increasing x: flat stretches of the source quantiles are nudged apart
            source_q = np.maximum.accumulate(source_q + np.arange(self.bins) * 1e-9)
            out[..., c] = np.interp(swapped[..., c], source_q, target_q)
        out = self.strength * out + (1.0 - self.strength) * swapped
        return np.clip(out, 0.0, 1.0).astype(np.float32)
