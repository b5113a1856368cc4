"""Swap metrics for real faces, where no ground-truth swap exists.

For a swap of person A into person B's place (the face of B with A's expression and pose):

- **identity transfer**: a face recogniser's embedding of each swap compared with the centroids of
  real A and real B faces: similarity to each, the share closer to B than to A, and the share the
  recogniser calls B by its own threshold (SFace: cosine ≥ 0.363; dlib: distance < 0.6). Two
  independent recognisers: when a loss uses one, the other is the judge.
- **expression and pose kept**: landmarks of the swap vs those of its input, normalised by the
  inter-ocular distance (eye centres); eye and mouth openness (68-point aspect ratios) of swap and
  input correlated over frames.
- **sharpness**: Laplacian energy (variance of the Laplacian in the face region) of the swaps
  relative to that of real faces of the target at the same resolution.

Pure functions on arrays, and torchmetrics that accumulate them over a validation epoch.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

__all__ = [
    "DLIB_DISTANCE_THRESHOLD",
    "SFACE_COSINE_THRESHOLD",
    "IdentityTransfer",
    "PearsonCorrelation",
    "SharpnessRatio",
    "EXPRESSION_FEATURES",
    "centroid",
    "expression_features",
    "eye_aspect_ratio",
    "identity_transfer",
    "inter_ocular",
    "landmark_error",
    "laplacian_energy",
    "mouth_aspect_ratio",
    "pearson",
    "resolution_ceiling",
    "sharpness_ratio",
]

SFACE_COSINE_THRESHOLD = 0.363  # OpenCV's FaceRecognizerSF: same person at cosine >= this
DLIB_DISTANCE_THRESHOLD = 0.6  # dlib's face_recognition_model_v1: same person at distance < this
METRICS = ("cosine", "euclidean")


# ---- identity --------------------------------------------------------------------------------
def centroid(embeddings: Tensor, metric: str = "cosine") -> Tensor:
    """(N, D) → (D,): the re-normalised mean of the unit vectors (``cosine``) or the plain mean
    (``euclidean``, for descriptors compared by distance such as dlib's)."""
    if embeddings.dim() != 2 or len(embeddings) == 0:
        raise ValueError(f"need (N >= 1, D) embeddings, got {tuple(embeddings.shape)}")
    if metric == "cosine":
        return F.normalize(F.normalize(embeddings.float(), dim=1).mean(0), dim=0)
    if metric == "euclidean":
        return embeddings.float().mean(0)
    raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")


def identity_transfer(
    swaps: Tensor, source: Tensor, target: Tensor, metric: str = "cosine", threshold: float | None = None
) -> dict[str, float]:
    """Identity figures of swaps (N, D) given real faces of the source (Ns, D) and target (Nt, D).

    ``target_similarity`` / ``source_similarity``: mean cosine of each swap to the target's / source's
    centroid; ``closer_to_target``: share of swaps nearer the target's centroid (by cosine, or by
    distance with ``euclidean``); ``called_target``: share within the recogniser's threshold of the
    target's centroid (cosine ≥ threshold, or distance < threshold). ``euclidean`` adds the mean
    distances ``target_distance`` / ``source_distance``.
    """
    if threshold is None:
        threshold = SFACE_COSINE_THRESHOLD if metric == "cosine" else DLIB_DISTANCE_THRESHOLD
    c_src, c_tgt = centroid(source, metric), centroid(target, metric)
    x = swaps.float()
    cos_src = F.cosine_similarity(x, c_src[None], dim=1)
    cos_tgt = F.cosine_similarity(x, c_tgt[None], dim=1)
    out = {"target_similarity": cos_tgt.mean().item(), "source_similarity": cos_src.mean().item()}
    if metric == "cosine":
        out["closer_to_target"] = (cos_tgt > cos_src).float().mean().item()
        out["called_target"] = (cos_tgt >= threshold).float().mean().item()
        return out
    d_src, d_tgt = (x - c_src).norm(dim=1), (x - c_tgt).norm(dim=1)
    out["closer_to_target"] = (d_tgt < d_src).float().mean().item()
    out["called_target"] = (d_tgt < threshold).float().mean().item()
    out["target_distance"], out["source_distance"] = d_tgt.mean().item(), d_src.mean().item()
    return out


class IdentityTransfer(Metric):
    """:func:`identity_transfer` over an epoch: ``update(swaps, source, target)`` with embeddings of
    the swaps of source into target and of real faces of both; the centroids are built from every
    update (every rank's under DDP). ``compute`` returns the dict of figures as tensors."""

    is_differentiable = False
    full_state_update = False

    def __init__(self, metric: str = "cosine", threshold: float | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        if metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
        self.metric, self.threshold = metric, threshold
        for name in ("swaps", "source", "target"):
            self.add_state(name, default=[], dist_reduce_fx="cat")

    def update(self, swaps: Tensor, source: Tensor, target: Tensor) -> None:
        self.swaps.append(swaps.detach().float())
        self.source.append(source.detach().float())
        self.target.append(target.detach().float())

    def compute(self) -> dict[str, Tensor]:
        swaps, source, target = (dim_zero_cat(s) for s in (self.swaps, self.source, self.target))
        figures = identity_transfer(swaps, source, target, self.metric, self.threshold)
        return {k: torch.tensor(v, device=self.device) for k, v in figures.items()}


# ---- landmarks and expression ----------------------------------------------------------------
def _eye_centres(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(..., 5 or 68, 2) → the two eye centres (..., 2)."""
    if landmarks.shape[-2] == 68:
        return landmarks[..., 36:42, :].mean(-2), landmarks[..., 42:48, :].mean(-2)
    if landmarks.shape[-2] == 5:
        return landmarks[..., 0, :], landmarks[..., 1, :]
    raise ValueError(f"expected 5 or 68 landmarks, got shape {landmarks.shape}")


def inter_ocular(landmarks: np.ndarray) -> np.ndarray:
    """(..., 5 or 68, 2) → (...) distance between the eye centres."""
    left, right = _eye_centres(np.asarray(landmarks, np.float64))
    return np.linalg.norm(right - left, axis=-1)


def landmark_error(landmarks: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """(N, K, 2), (N, K, 2) → (N,) mean point-to-point distance over the reference's inter-ocular
    distance (rows with NaN landmarks, e.g. undetected faces, give NaN)."""
    p, r = np.asarray(landmarks, np.float64), np.asarray(reference, np.float64)
    if p.shape != r.shape or p.ndim != 3 or p.shape[-1] != 2:
        raise ValueError(f"need two (N, K, 2) landmark arrays of one shape, got {p.shape} and {r.shape}")
    return np.linalg.norm(p - r, axis=-1).mean(-1) / inter_ocular(r)


def _check68(landmarks: np.ndarray) -> np.ndarray:
    lm = np.asarray(landmarks, np.float64)
    if lm.ndim != 3 or lm.shape[1:] != (68, 2):
        raise ValueError(f"openness needs (N, 68, 2) landmarks, got {lm.shape}")
    return lm


def _dist(lm: np.ndarray, i: int, j: int) -> np.ndarray:
    return np.linalg.norm(lm[:, i] - lm[:, j], axis=-1)


def eye_aspect_ratio(landmarks68: np.ndarray) -> np.ndarray:
    """(N, 68, 2) → (N,) eye openness, the mean of both eyes' aspect ratios (Soukupová & Čech 2016):
    (|p2 − p6| + |p3 − p5|) / (2 |p1 − p4|); about 0.3 open, under 0.2 closed."""
    lm = _check68(landmarks68)
    ratios = [
        (_dist(lm, o + 1, o + 5) + _dist(lm, o + 2, o + 4)) / (2 * _dist(lm, o, o + 3)) for o in (36, 42)
    ]
    return (ratios[0] + ratios[1]) / 2


def mouth_aspect_ratio(landmarks68: np.ndarray) -> np.ndarray:
    """(N, 68, 2) → (N,) mouth openness from the inner lips (60-67): the mean of the three vertical
    gaps over the corner-to-corner width; 0 closed."""
    lm = _check68(landmarks68)
    vertical = _dist(lm, 61, 67) + _dist(lm, 62, 66) + _dist(lm, 63, 65)
    return vertical / (3 * _dist(lm, 60, 64))


EXPRESSION_FEATURES = ("eyes", "mouth", "mouth_width", "smile", "brows", "jaw")


def expression_features(landmarks68: np.ndarray) -> np.ndarray:
    """(N, 68, 2) → (N, 6) expression measures in ``EXPRESSION_FEATURES`` order, each unchanged by
    rotation, scale, translation and a horizontal flip (both sides enter alike):

    - ``eyes``, ``mouth``: :func:`eye_aspect_ratio`, :func:`mouth_aspect_ratio`;
    - ``mouth_width``: corner to corner (48-54) over the inter-ocular distance d;
    - ``smile``: how far the mouth corners sit above the lips' centre (51, 57, 62, 66), over d;
    - ``brows``: height of the brow centres (17-21, 22-26) above their eye centres, over d;
    - ``jaw``: chin (8) below the nose tip (33), over d (the jaw drops as the mouth opens).

    Heights are measured along the face's own vertical (perpendicular to the line between the eyes).
    """
    lm = _check68(landmarks68)
    left, right = _eye_centres(lm)
    d = np.linalg.norm(right - left, axis=-1)
    across = (right - left) / d[:, None]
    down = np.stack([-across[:, 1], across[:, 0]], axis=-1)  # image y grows downwards

    def height(points: np.ndarray) -> np.ndarray:  # (N, 2) → (N,) along the face's vertical
        return (points * down).sum(-1)

    lips = lm[:, [51, 57, 62, 66]].mean(1)
    corners = lm[:, [48, 54]].mean(1)
    brows = (height(left) - height(lm[:, 17:22].mean(1)) + height(right) - height(lm[:, 22:27].mean(1))) / 2
    return np.stack(
        [
            eye_aspect_ratio(lm),
            mouth_aspect_ratio(lm),
            _dist(lm, 48, 54) / d,
            (height(lips) - height(corners)) / d,
            brows / d,
            (height(lm[:, 8]) - height(lm[:, 33])) / d,
        ],
        axis=-1,
    )


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation of two series (NaN pairs dropped); NaN when either is constant."""
    x, y = np.asarray(x, np.float64).ravel(), np.asarray(y, np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"need two series of one length, got {x.shape} and {y.shape}")
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 2:
        return float("nan")
    x, y = x[ok] - x[ok].mean(), y[ok] - y[ok].mean()
    denominator = np.sqrt((x * x).sum() * (y * y).sum())
    return float((x * y).sum() / denominator) if denominator > 0 else float("nan")


class PearsonCorrelation(Metric):
    """Pearson correlation of paired values over an epoch (e.g. the eye openness of swap and input)."""

    is_differentiable = False
    full_state_update = False

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("x", default=[], dist_reduce_fx="cat")
        self.add_state("y", default=[], dist_reduce_fx="cat")

    def update(self, x: Tensor, y: Tensor) -> None:
        self.x.append(torch.as_tensor(x, dtype=torch.float64, device=self.device).flatten())
        self.y.append(torch.as_tensor(y, dtype=torch.float64, device=self.device).flatten())

    def compute(self) -> Tensor:
        x, y = dim_zero_cat(self.x).cpu().numpy(), dim_zero_cat(self.y).cpu().numpy()
        return torch.tensor(pearson(x, y), device=self.device)


# ---- sharpness -------------------------------------------------------------------------------
def laplacian_energy(images: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """(N, H, W, 3) RGB (uint8, or float in [0, 1]) → (N,) variance of the Laplacian of the grey
    image (in 0-255 units) inside ``mask`` ((H, W) or (N, H, W) weights; None: everywhere)."""
    x = np.asarray(images)
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"images must be (N, H, W, 3), got {x.shape}")
    x = x.astype(np.float32) * (1.0 if x.dtype == np.uint8 else 255.0)
    w = np.ones(x.shape[1:3], np.float64) if mask is None else np.asarray(mask, np.float64)
    w = np.broadcast_to(w, x.shape[:3])
    energies = []
    for image, weights in zip(x, w, strict=True):
        lap = cv2.Laplacian(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), cv2.CV_32F, ksize=1).astype(np.float64)
        total = weights.sum()
        if total <= 0:
            raise ValueError("the sharpness mask is empty")
        mean = (lap * weights).sum() / total
        energies.append(((lap - mean) ** 2 * weights).sum() / total)
    return np.array(energies)


def sharpness_ratio(swap_energy: np.ndarray, real_energy: np.ndarray) -> float:
    """Mean Laplacian energy of the swaps over that of real faces (1: as sharp; 0.5: half)."""
    real = float(np.mean(real_energy))
    return float(np.mean(swap_energy)) / real if real > 0 else float("nan")


def resolution_ceiling(real: np.ndarray, size: int, mask: np.ndarray | None = None) -> float:
    """The sharpness ratio that real faces ``real`` (N, S, S, 3) reach after passing through ``size``
    px (area-averaged down, bicubic back up to S): what the target's own faces score when drawn
    perfectly at ``size`` px. A model cannot draw detail finer than its pixels; a swap scoring above
    this gets its Laplacian energy from resampling edges, sharpening or compression, not face detail."""
    x = np.asarray(real)
    if x.ndim != 4 or x.shape[1] != x.shape[2] or x.shape[-1] != 3:
        raise ValueError(f"need (N, S, S, 3) square crops, got {x.shape}")
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    if size >= x.shape[1]:
        return 1.0
    return sharpness_ratio(laplacian_energy(through_size(x, size), mask), laplacian_energy(x, mask))


def through_size(crops: np.ndarray, size: int) -> np.ndarray:
    """(N, S, S, C) crops area-averaged down to ``size`` px and bicubic back up to S: what a model that
    draws them perfectly at ``size`` px would show."""
    x = np.asarray(crops)
    s = x.shape[1]
    if size >= s:
        return x
    small = [cv2.resize(c, (size, size), interpolation=cv2.INTER_AREA) for c in x]
    return np.stack([cv2.resize(c, (s, s), interpolation=cv2.INTER_CUBIC) for c in small])


class SharpnessRatio(Metric):
    """:func:`sharpness_ratio` over an epoch: ``update(swap_energy, real_energy)`` (from
    :func:`laplacian_energy`)."""

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("swap", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("real", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("n_swap", default=torch.tensor(0), dist_reduce_fx="sum")
        self.add_state("n_real", default=torch.tensor(0), dist_reduce_fx="sum")

    def update(self, swap_energy: Tensor, real_energy: Tensor) -> None:
        swap = torch.as_tensor(swap_energy, dtype=torch.float64, device=self.device)
        real = torch.as_tensor(real_energy, dtype=torch.float64, device=self.device)
        self.swap += swap.sum()
        self.real += real.sum()
        self.n_swap += swap.numel()
        self.n_real += real.numel()

    def compute(self) -> Tensor:
        real = self.real / self.n_real.clamp(min=1)
        return (self.swap / self.n_swap.clamp(min=1)) / real if real > 0 else torch.tensor(float("nan"))
