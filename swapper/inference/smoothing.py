"""The smoothing stage (videos): steady landmarks and boxes across frames, and carry-over through
short detection drop-outs. Per-frame detections jitter by a pixel or two, which makes the pasted
face shimmer and change size; a detector that misses a few frames makes it flicker.

Faces are followed as tracks (greedy box-IoU matching from frame to frame). Each track's points
(box corners and landmarks) are split into the face's position (the mean of its 5 landmarks) and
its shape relative to it (size, rotation, expression), and each goes through its own One-Euro
filter (Casiez, Roussel & Vogel, CHI 2012): a low-pass filter whose cutoff rises with speed, so a
still face is smoothed hard and a moving one follows with little lag. Split this way, a head
moving fast across the frame keeps a steady size and angle: the shape changes slowly even then.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from swapper.faces.detection import Face, face_size

__all__ = ["FaceSmoother", "OneEuroFilter", "landmark_motion", "size_angle_jitter"]


def _alpha(cutoff: float, dt: float) -> float:
    tau = 1.0 / (2.0 * math.pi * cutoff)
    return 1.0 / (1.0 + tau / dt)


class OneEuroFilter:
    """One-Euro filter over an array of values, one cutoff for the whole array.

    ``x̂ = x̂ + α(f_c)(x − x̂)`` with ``f_c = min_cutoff + beta · speed`` (Hz); ``speed`` is the
    mean absolute derivative (low-passed at ``d_cutoff``) divided by ``scale``: here the face size,
    so the parameters mean the same for small and large faces. One cutoff for all points keeps
    the face's shape rigid (per-point cutoffs would smooth the slow points of a turning face more).
    """

    def __init__(self, min_cutoff: float = 1.0, beta: float = 1.0, d_cutoff: float = 1.0) -> None:
        if min_cutoff <= 0 or d_cutoff <= 0 or beta < 0:
            raise ValueError(
                f"need min_cutoff, d_cutoff > 0 and beta >= 0, got {min_cutoff}, {d_cutoff}, {beta}"
            )
        self.min_cutoff, self.beta, self.d_cutoff = min_cutoff, beta, d_cutoff
        self.x: np.ndarray | None = None
        self.dx: np.ndarray | None = None
        self.t: float | None = None

    def __call__(self, x: np.ndarray, t: float, scale: float = 1.0) -> np.ndarray:
        x = np.asarray(x, np.float64)
        if self.x is None or self.x.shape != x.shape or self.t is None or t <= self.t:
            self.x, self.dx, self.t = x.copy(), np.zeros_like(x), t
            return x.copy()
        dt = t - self.t
        dx = (x - self.x) / dt
        self.dx = self.dx + _alpha(self.d_cutoff, dt) * (dx - self.dx)
        speed = float(np.abs(self.dx).mean()) / max(scale, 1e-6)
        cutoff = self.min_cutoff + self.beta * speed
        self.x = self.x + _alpha(cutoff, dt) * (x - self.x)
        self.t = t
        return self.x.copy()


def _pack(face: Face) -> np.ndarray:
    parts = [face.box.reshape(2, 2), face.landmarks5]
    if face.landmarks68 is not None:
        parts.append(face.landmarks68)
    return np.concatenate(parts)  # (2 + 5 [+ 68], 2)


def _unpack(points: np.ndarray, like: Face) -> Face:
    """The smoothed face; it keeps the detection's own 68 points (expression moves faster than the shape
    filter lets through) as ``detected68``."""
    lm68 = points[7:] if like.landmarks68 is not None else None
    return Face(points[:2].reshape(4), like.score, points[2:7], lm68, detected68=like.landmarks68)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(x2 - x1, 0.0) * max(y2 - y1, 0.0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


class _TrackFilter:
    """Position and shape of one face, filtered separately (see the module docstring)."""

    def __init__(self, position: OneEuroFilter, shape: OneEuroFilter) -> None:
        self.position, self.shape = position, shape

    def __call__(self, points: np.ndarray, t: float, scale: float) -> np.ndarray:
        centre = points[2:7].mean(0)  # of the 5 landmarks: steadier than the box
        return self.position(centre, t, scale) + self.shape(points - centre, t, scale)


@dataclass
class _Track:
    filter: _TrackFilter
    face: Face  # the last smoothed face
    missed: int = 0


class FaceSmoother:
    """Follow faces from frame to frame, smooth their points and bridge short drop-outs.

    ``min_cutoff``/``beta`` filter the position, ``shape_min_cutoff``/``shape_beta`` the shape
    (lower cutoffs: steadier). ``__call__(faces, t)`` takes the selected faces of the frame at time
    ``t`` (seconds) and returns them smoothed, plus, for each face missing in this frame but seen
    within the last ``max_gap`` frames, its last smoothed position (carry-over). ``match_iou``: the
    least box overlap that continues a track. ``reset()`` forgets all tracks (the pipeline calls
    it on a scene cut).
    """

    def __init__(
        self,
        min_cutoff: float = 1.0,
        beta: float = 20.0,
        shape_min_cutoff: float = 0.3,
        shape_beta: float = 2.0,
        d_cutoff: float = 1.0,
        max_gap: int = 3,
        match_iou: float = 0.3,
    ) -> None:
        OneEuroFilter(min_cutoff, beta, d_cutoff)  # validates the parameters
        OneEuroFilter(shape_min_cutoff, shape_beta, d_cutoff)
        if max_gap < 0 or not 0.0 < match_iou <= 1.0:
            raise ValueError(f"need max_gap >= 0 and match_iou in (0, 1], got {max_gap}, {match_iou}")
        self.position_params = (min_cutoff, beta, d_cutoff)
        self.shape_params = (shape_min_cutoff, shape_beta, d_cutoff)
        self.max_gap, self.match_iou = max_gap, match_iou
        self.tracks: list[_Track] = []

    def reset(self) -> None:
        self.tracks = []

    def _new_filter(self) -> _TrackFilter:
        return _TrackFilter(OneEuroFilter(*self.position_params), OneEuroFilter(*self.shape_params))

    def _match(self, faces: list[Face]) -> dict[int, int]:
        """Greedy one-to-one matching, best overlap first: face index → track index."""
        pairs = sorted(
            (
                (_iou(f.box, tr.face.box), i, j)
                for i, f in enumerate(faces)
                for j, tr in enumerate(self.tracks)
            ),
            reverse=True,
        )
        matched: dict[int, int] = {}
        used: set[int] = set()
        for iou, i, j in pairs:
            if iou < self.match_iou:
                break
            if i not in matched and j not in used:
                matched[i] = j
                used.add(j)
        return matched

    def __call__(self, faces: list[Face], t: float) -> list[Face]:
        matched = self._match(faces)
        out, kept = [], []
        for i, face in enumerate(faces):
            j = matched.get(i)
            track = self.tracks[j] if j is not None else _Track(self._new_filter(), face)
            track.face = _unpack(track.filter(_pack(face), t, face_size(face)), face)
            track.missed = 0
            out.append(track.face)
            kept.append(track)
        for j, track in enumerate(self.tracks):
            if j not in matched.values() and track.missed < self.max_gap:
                track.missed += 1
                out.append(track.face)  # carried over: the face is assumed where it was last seen
                kept.append(track)
        self.tracks = kept
        return out


def landmark_motion(points: np.ndarray, sizes: np.ndarray | None = None) -> tuple[float, float]:
    """Jitter figures of one face track ``points`` (T, N, 2): the mean frame-to-frame motion of a
    landmark and the mean second difference ``|p_t − 2p_{t−1} + p_{t−2}|`` (shake: zero for steady
    motion), in pixels, or in face sizes when ``sizes`` (T,) is given."""
    p = np.asarray(points, np.float64)
    if p.ndim != 3 or len(p) < 3:
        raise ValueError(f"need (T >= 3, N, 2) points, got {p.shape}")
    if sizes is not None:
        p = p / np.asarray(sizes, np.float64)[:, None, None]
    step = np.linalg.norm(np.diff(p, axis=0), axis=-1).mean()
    accel = np.linalg.norm(p[2:] - 2 * p[1:-1] + p[:-2], axis=-1).mean()
    return float(step), float(accel)


def size_angle_jitter(landmarks5: np.ndarray) -> tuple[float, float]:
    """Mean frame-to-frame change of a face track's size (%, RMS spread of its 5 landmarks) and
    angle (degrees, of the eye line): what makes a pasted face pulse and wobble."""
    p = np.asarray(landmarks5, np.float64)
    if p.ndim != 3 or p.shape[1:] != (5, 2) or len(p) < 2:
        raise ValueError(f"need (T >= 2, 5, 2) landmarks, got {p.shape}")
    spread = np.sqrt(((p - p.mean(1, keepdims=True)) ** 2).sum(-1).mean(1))  # (T,)
    eyes = p[:, 1] - p[:, 0]
    angle = np.degrees(np.arctan2(eyes[:, 1], eyes[:, 0]))
    return float(np.abs(np.diff(np.log(spread))).mean() * 100), float(np.abs(np.diff(angle)).mean())
