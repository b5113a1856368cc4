"""Whole synthetic frames with a rendered face at a known place: inference tests and benchmarks with an
exact ground truth (the same frame with another identity drawn with the same attributes)."""

from __future__ import annotations

from collections.abc import Iterable

import cv2
import numpy as np

from swapper.data.synthetic import Attributes, FaceRenderer, Identity
from swapper.faces.detection import Face

__all__ = ["KnownFaces", "background", "render_frame"]


def background(width: int, height: int, seed: int = 0) -> np.ndarray:
    """(H, W, 3) uint8 BGR: smooth colour blobs plus fine noise (texture for the blenders to keep)."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(40, 220, (4, 6, 3)).astype(np.float32)
    smooth = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    return np.clip(smooth + rng.normal(0, 6, (height, width, 3)), 0, 255).astype(np.uint8)


def render_frame(
    identity: Identity,
    attributes: Attributes,
    frame: np.ndarray,
    face_size: int,
    top_left: tuple[int, int],
    renderer: FaceRenderer | None = None,
) -> tuple[np.ndarray, Face]:
    """A copy of ``frame`` (BGR uint8) with the ``face_size`` render pasted at ``top_left`` (x, y),
    and the face as a detector would report it (5 landmarks exact, box = the render's square)."""
    renderer = renderer if renderer is not None and renderer.size == face_size else FaceRenderer(face_size)
    x, y = top_left
    h, w = frame.shape[:2]
    if x < 0 or y < 0 or x + face_size > w or y + face_size > h:
        raise ValueError(f"a {face_size} px face at {top_left} does not fit a {w}x{h} frame")
    face = cv2.cvtColor(
        np.rint(renderer.render(identity, attributes) * 255).astype(np.uint8), cv2.COLOR_RGB2BGR
    )
    out = frame.copy()
    out[y : y + face_size, x : x + face_size] = face
    landmarks = renderer.landmarks(identity, attributes).astype(np.float64) + (x, y)
    box = np.array([x, y, x + face_size, y + face_size], np.float64)
    return out, Face(box, 1.0, landmarks)


class KnownFaces:
    """A stand-in detector that returns given faces, one list per call, in order (frames of a clip)."""

    def __init__(self, faces_per_frame: Iterable[list[Face]]) -> None:
        self._faces = iter(list(faces_per_frame))

    def __call__(self, image: np.ndarray) -> list[Face]:
        faces = next(self._faces, None)
        if faces is None:
            raise RuntimeError("KnownFaces was called for more frames than it was given")
        return faces
