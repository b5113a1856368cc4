"""Which detected faces to keep: all, the largest, or those of a reference identity.

Extraction and inference use the same :class:`FaceSelector`. Identity matching embeds each face
with SFace (OpenCV Zoo's recognition network, ported to torch in
``swapper.models.pretrained.sface``) on an ArcFace-aligned 112 crop and keeps faces whose cosine
similarity to the reference reaches ``threshold`` (0.363: OpenCV's SFace threshold).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np

from swapper.faces.alignment import estimate, get_template, warp
from swapper.faces.detection import Face, face_size

__all__ = ["SFACE_COSINE_THRESHOLD", "FaceSelector", "SFaceDescriptor", "by_identity", "largest"]

log = logging.getLogger(__name__)

SFACE_COSINE_THRESHOLD = 0.363  # OpenCV's FaceRecognizerSF cosine threshold (same person above it)
MODES = ("all", "largest", "reference")

Embedder = Callable[[np.ndarray, Sequence[Face]], np.ndarray]  # (BGR image, faces) -> (N, D) unit rows


def by_size(faces: Sequence[Face]) -> list[Face]:
    """Faces sorted from the largest box to the smallest (a stable face index for file names)."""
    return sorted(faces, key=lambda f: -f.area)


def largest(faces: Sequence[Face]) -> list[Face]:
    """The face with the largest box (an empty list when there is none)."""
    return by_size(faces)[:1]


def by_identity(
    faces: Sequence[Face],
    embeddings: np.ndarray,
    reference: np.ndarray,
    threshold: float = SFACE_COSINE_THRESHOLD,
) -> list[tuple[Face, float]]:
    """Faces whose embedding's best cosine similarity to any ``reference`` row reaches ``threshold``,
    most similar first, with that similarity. ``embeddings`` (N, D), ``reference`` (D,) or (R, D)."""
    emb = _unit(np.atleast_2d(np.asarray(embeddings, dtype=np.float64)))
    ref = _unit(np.atleast_2d(np.asarray(reference, dtype=np.float64)))
    if len(emb) != len(faces) or emb.shape[1] != ref.shape[1]:
        raise ValueError(
            f"{len(faces)} faces need (N={len(faces)}, D) embeddings; got {emb.shape} vs {ref.shape}"
        )
    if not len(faces):
        return []
    similarity = (emb @ ref.T).max(axis=1)  # (N,)
    order = np.argsort(-similarity, kind="stable")
    return [(faces[i], float(similarity[i])) for i in order if similarity[i] >= threshold]


def _unit(x: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    if (norm == 0).any():
        raise ValueError("an embedding is all zeros")
    return x / norm


class SFaceDescriptor:
    """Identity descriptors of detected faces, numpy in and out: (BGR image, faces) → (N, 128)
    L2-normalised embeddings of ArcFace-aligned 112 crops by the frozen ``SFace`` network."""

    def __init__(self, weights: str | Path | None = None, device: str = "cpu") -> None:
        import torch

        from swapper.models.pretrained.sface import INPUT_SIZE, SFace

        self._torch = torch
        self.device = torch.device(device)
        self.net = SFace(weights).to(self.device)
        self.size = INPUT_SIZE
        self.template = get_template("arcface")

    def crops(self, image: np.ndarray, faces: Sequence[Face]) -> np.ndarray:
        """(N, 112, 112, 3) uint8 RGB aligned crops (5-point alignment, as SFace was trained)."""
        out = [
            cv2.cvtColor(
                warp(image, estimate(f.landmarks5, self.template, self.size), self.size), cv2.COLOR_BGR2RGB
            )
            for f in faces
        ]
        return np.stack(out) if out else np.zeros((0, self.size, self.size, 3), np.uint8)

    def __call__(self, image: np.ndarray, faces: Sequence[Face]) -> np.ndarray:
        if not faces:
            return np.zeros((0, 128), np.float32)
        torch = self._torch
        batch = torch.from_numpy(self.crops(image, faces)).to(self.device).permute(0, 3, 1, 2).float() / 255
        with torch.no_grad():
            return self.net.embed(batch).cpu().numpy()  # (N, 128)


class FaceSelector:
    """Keep ``all`` faces, the ``largest``, or those matching a ``reference`` identity.

    ``reference``: a photo of the person (its largest face is used) or a folder of such photos
    (any of them may match); ``prepare(detector)`` embeds it once before the first call.
    ``min_size`` drops faces whose box is smaller (geometric mean of the sides, pixels);
    ``max_faces`` keeps at most that many per image. The returned faces are sorted from the
    largest (``all``) or the most similar (``reference``).
    """

    def __init__(
        self,
        mode: str = "all",
        reference: str | Path | None = None,
        threshold: float = SFACE_COSINE_THRESHOLD,
        min_size: float = 0.0,
        max_faces: int | None = None,
        embedder: Embedder | None = None,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"face selection mode must be one of {MODES}, got {mode!r}")
        if mode == "reference" and reference is None:
            raise ValueError("mode='reference' needs reference=<photo or folder of photos of the person>")
        if max_faces is not None and max_faces < 1:
            raise ValueError(f"max_faces must be >= 1 or None, got {max_faces}")
        self.mode, self.threshold, self.min_size, self.max_faces = mode, threshold, min_size, max_faces
        self.reference = Path(reference).expanduser() if reference is not None else None
        self._embedder = embedder
        self.reference_embeddings: np.ndarray | None = None
        self.last_similarities: list[float] = []  # of the faces the last call returned (reference mode)

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            self._embedder = SFaceDescriptor()
        return self._embedder

    def prepare(self, detector: Callable[[np.ndarray], list[Face]]) -> None:
        """Embed the reference photo(s) with ``detector``; a no-op unless ``mode='reference'``."""
        if self.mode != "reference" or self.reference_embeddings is not None:
            return
        assert self.reference is not None
        if self.reference.is_dir():
            files = sorted(p for p in self.reference.iterdir() if p.is_file())
        elif self.reference.is_file():
            files = [self.reference]
        else:
            raise FileNotFoundError(f"reference {self.reference} does not exist")
        rows = []
        for path in files:
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            faces = largest(detector(image)) if image is not None else []
            if faces:
                rows.append(self.embedder(image, faces)[0])
            elif len(files) == 1:
                why = "cannot be decoded as an image" if image is None else "holds no detectable face"
                raise ValueError(f"reference {path} {why}")
        if not rows:
            raise ValueError(f"no reference face found in {self.reference}")
        self.reference_embeddings = np.stack(rows)
        log.info("reference identity: %d face(s) from %s", len(rows), self.reference)

    def __call__(self, image: np.ndarray, faces: Sequence[Face]) -> list[Face]:
        kept = [f for f in faces if face_size(f) >= self.min_size]
        self.last_similarities = []
        if self.mode == "reference" and kept:
            if self.reference_embeddings is None:
                raise RuntimeError("FaceSelector(mode='reference') needs prepare(detector) before use")
            matches = by_identity(kept, self.embedder(image, kept), self.reference_embeddings, self.threshold)
            kept = [f for f, _ in matches]
            self.last_similarities = [s for _, s in matches][: self.max_faces]
        elif self.mode == "largest":
            kept = largest(kept)
        else:
            kept = by_size(kept)
        return kept[: self.max_faces]
