"""The align stage: frame landmarks → the crop geometry the run was trained on, and back.

Crops made by extraction follow a named template of ``swapper.data.alignment`` (``mean_face`` for
Deepfakes crops, ``arcface`` for SimSwap ones). Synthetic crops are not extracted: the renderer
draws each face at a fixed place in its crop. For runs trained on them the ``synthetic`` template
puts the 5 landmarks where the renderer draws them for the average identity (seeds 0-199) at zero
pose, expression and offset, so a rendered face pasted into a frame aligns back to (almost) the
crop it was drawn in.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from swapper.data.alignment import Template, estimate, get_template, transform_points, warp

__all__ = ["Aligner", "run_template", "synthetic_template"]

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


def _folder_template(folder: Path) -> tuple[str, float] | None:
    """(template, coverage) recorded by extraction in ``folder``/faces.jsonl (or its parent's)."""
    for meta in (folder / "faces.jsonl", folder.parent / "faces.jsonl"):
        if meta.is_file():
            for line in meta.read_text(encoding="utf-8").splitlines():
                try:
                    record = json.loads(line)
                    return str(record["template"]), float(record["coverage"])
                except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                    continue
    return None


def run_template(run_cfg: Mapping[str, Any]) -> tuple[str, float | None]:
    """The template (and coverage, None = the template's default) of the crops a run trained on.

    Synthetic data sets → ``synthetic``; folders of extracted crops → what their ``faces.jsonl``
    records; otherwise the paradigm's usual crops (per-pair: ``mean_face``, injection: ``arcface``).
    """
    data = run_cfg.get("data") or {}
    train = data.get("train") or {}
    target = str(train.get("_target_", ""))
    if "Synthetic" in target:
        return "synthetic", None
    for key in ("folder_a", "folder_b", "root"):
        folder = train.get(key)
        if isinstance(folder, str) and (found := _folder_template(Path(folder).expanduser())):
            return found
    module_target = str((run_cfg.get("module") or {}).get("_target_", ""))
    return ("arcface", None) if "injection" in module_target.lower() else ("mean_face", None)


class Aligner:
    """Cut ``size``×``size`` aligned crops with ``template`` (see ``TEMPLATES``; ``auto`` needs
    :meth:`for_run`) and return the (2, 3) frame → crop matrices used to paste them back."""

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

    def for_run(self, run_cfg: Mapping[str, Any]) -> Aligner:
        """Resolve ``auto`` from the run's data and take its crop size (``image_size``)."""
        self.size = int(run_cfg.get("image_size", self.size))
        if self.template is None:
            name, coverage = run_template(run_cfg)
            self.template = self._build(name, self.coverage if self.coverage is not None else coverage)
            log.info(
                "alignment: template %s (coverage %.3f) from the run's data", name, self.template.coverage
            )
        return self

    def matrix(self, landmarks: np.ndarray) -> np.ndarray:
        if self.template is None:
            raise RuntimeError("Aligner(template='auto') needs for_run(run_cfg) before use")
        return estimate(landmarks, self.template, self.size)

    def __call__(self, image: np.ndarray, landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(crop (S, S, C) of ``image``'s dtype, matrix (2, 3), landmarks in crop pixels)."""
        m = self.matrix(landmarks)
        return warp(image, m, self.size, border=self.border), m, transform_points(landmarks, m)
