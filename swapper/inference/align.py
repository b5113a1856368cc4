"""The align stage: frame landmarks → the crop geometry the run was trained on, and back.

Crops made by extraction follow a named template of ``swapper.faces.alignment`` (``mean_face`` for
Deepfakes crops, ``arcface`` for SimSwap ones). Synthetic crops are not extracted: the renderer
draws each face at a fixed place in its crop. For runs trained on them the ``synthetic`` template
puts the 5 landmarks where the renderer draws them for the average identity (seeds 0-199) at zero
pose, expression and offset, so a rendered face pasted into a frame aligns back to (almost) the
crop it was drawn in.
"""

from __future__ import annotations

import functools
import logging

import numpy as np

from swapper.faces.alignment import Template, estimate, get_template, transform_points, warp
from swapper.inference.loading import CropSpec

__all__ = ["Aligner", "synthetic_template"]

log = logging.getLogger(__name__)

TEMPLATES = ("auto", "arcface", "mean_face", "synthetic")


@functools.lru_cache(maxsize=1)
def _synthetic_points5() -> np.ndarray:
    from swapper.data.synthetic import Attributes, FaceRenderer, Identity

    size = 1024  # landmark pixel coords / size ≈ crop units (the half-pixel offset shrinks with size)
    renderer = FaceRenderer(size=size)
    points = [renderer.landmarks(Identity.from_seed(seed), Attributes()) for seed in range(200)]
    return (np.mean(points, axis=0) + 0.5) / size  # (5, 2) crop units


def synthetic_template(coverage: float = 1.0) -> Template:
    """Where the synthetic renderer draws the 5 landmarks of a frontal average face (crop units)."""
    if not 0.0 < coverage <= 2.0:
        raise ValueError(f"coverage must be in (0, 2], got {coverage}")
    return Template("synthetic", 0.5 + coverage * (_synthetic_points5() - 0.5), None, float(coverage))


class Aligner:
    """Cut ``size``×``size`` aligned crops with ``template`` (see ``TEMPLATES``; ``auto`` needs
    :meth:`for_crop`) and return the (2, 3) frame → crop matrices used to paste them back."""

    def __init__(
        self, template: str = "auto", coverage: float | None = None, size: int = 64, border: str = "constant"
    ) -> None:
        if template not in TEMPLATES:
            raise ValueError(f"unknown alignment template {template!r}; choose one of {TEMPLATES}")
        self.template_name, self.coverage, self.size, self.border = template, coverage, int(size), border
        self.template: Template | None = None if template == "auto" else self._build(template, coverage)

    @staticmethod
    def _build(name: str, coverage: float | None) -> Template:
        if name == "synthetic":
            return synthetic_template(1.0 if coverage is None else coverage)
        return get_template(name, coverage)

    def for_crop(self, crop: CropSpec) -> Aligner:
        """Cut crops like the generator's training crops: their size, and their template unless one
        was chosen here (``auto``)."""
        self.size = int(crop.size)
        if self.template is None:
            coverage = self.coverage if self.coverage is not None else crop.coverage
            self.template = self._build(crop.template, coverage)
            log.info("alignment: template %s (coverage %.3f) of the training crops", crop.template,
                     self.template.coverage)  # fmt: skip
        return self

    def matrix(self, landmarks: np.ndarray) -> np.ndarray:
        if self.template is None:
            raise RuntimeError("Aligner(template='auto') needs for_crop(crop) before use")
        return estimate(landmarks, self.template, self.size)

    def __call__(self, image: np.ndarray, landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(crop (S, S, C) of ``image``'s dtype, matrix (2, 3), landmarks in crop pixels)."""
        m = self.matrix(landmarks)
        return warp(image, m, self.size, border=self.border), m, transform_points(landmarks, m)
