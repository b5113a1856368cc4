"""The expression stage (videos): the swapped face's eyes, brows, mouth and jaw move as the input face's do.

A per-pair decoder draws the expressions its person shows in the training footage; where the other
person opens her mouth wider, winks or raises her brows, the swap keeps its own habitual face (the
coverage report warns of it), and lip-sync is lost: the audio speaks while the mouth stays still.
:class:`ExpressionWarp` corrects the geometry after the model. It finds the 68 landmarks of the swapped
crop (``S``), takes the input crop's 68 landmarks (``I``, from the detector, already smoothed over time)
and bends the swapped crop with a thin-plate spline (crop border fixed) to targets:

- openings (``opening``: mouth, eyes): the gaps between the inner lips (eyelids) become the input's, as a
  share of the mouth's (eye's) width, so a closed mouth is closed on anyone; a mouth opens mostly
  downwards (lower lip and chin take 3/4 of the change), an eye by its upper lid (4/5); gaps the swap
  already draws within ``deadband`` of the input's are left alone;
- other regions (``regions``): ``S + ((I − S) − mean(I − S))``, the mean running over the faces of the
  video so far. I − S holds what the swap did not follow (expression) plus what differs between the two
  people (face shape); subtracting its mean keeps the target person's shape and moves only by the
  expression changes. At the first frame the mean is that frame's offset: it starts unchanged and settles
  within a few frames.

The defaults open the mouth and the eyelids as the input's and move mouth corners, chin and brows with the
input's changes; the eyes are not in ``regions``: on the real pair (person_a ↔ person_b, 64 px) moving whole
eyes with the input's changes lowered the A→B eye figure (blurred eyes behind B's glasses, and the spline
moved the frames with them), while copying the eyelids' opening raised it.
A spline that opens closed lips stretches them; with ``interior`` the input's mouth interior (teeth, the
dark of the mouth) is mapped into the opened lips, as face reenactment systems copy a mouth interior from
the driving footage. The predicted mask moves with the face. Still images have no video to compare with
and are left as they are (the pipeline calls this stage for videos only).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import cv2
import numpy as np
import torch

from swapper.faces.alignment import landmarks_68_to_5
from swapper.faces.detection import dlib_box
from swapper.faces.masks import polygon_mask
from swapper.faces.tps import border_points, to_grid_frame, tps_warp

__all__ = ["OPENINGS", "REGIONS", "ExpressionWarp", "opening_moves", "region_weights"]

# iBUG 300-W 68-point indices (0-based) of the regions that carry expression
REGIONS: dict[str, tuple[int, ...]] = {
    "jaw": tuple(range(4, 13)),  # the lower jaw line (jaw drop); its upper ends follow the pose only
    "brows": tuple(range(17, 27)),
    "eyes": tuple(range(36, 48)),
    "mouth": tuple(range(48, 68)),
}

Landmarker = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (RGB uint8 image, box x1 y1 x2 y2) → (68, 2)


# Opening transfer: (upper, lower) point pairs whose gap is copied, the width it is measured against, and
# how a change of gap moves the points: (point, pair it follows, share of the change, direction: -1 up,
# +1 down). A mouth opens mostly downwards (the jaw drops), an eye mostly by its upper lid.
_OPENINGS: dict[
    str, tuple[tuple[tuple[int, int], ...], tuple[int, int], tuple[tuple[int, int, float, int], ...]]
] = {
    "mouth": (
        ((61, 67), (62, 66), (63, 65)),
        (60, 64),
        (
            (61, 0, 0.25, -1),
            (62, 1, 0.25, -1),
            (63, 2, 0.25, -1),  # inner upper lip
            (67, 0, 0.75, 1),
            (66, 1, 0.75, 1),
            (65, 2, 0.75, 1),  # inner lower lip
            (50, 0, 0.25, -1),
            (51, 1, 0.25, -1),
            (52, 2, 0.25, -1),  # outer upper lip
            (49, 0, 0.12, -1),
            (53, 2, 0.12, -1),
            (58, 0, 0.75, 1),
            (57, 1, 0.75, 1),
            (56, 2, 0.75, 1),  # outer lower lip
            (59, 0, 0.4, 1),
            (55, 2, 0.4, 1),
            (7, 0, 0.75, 1),
            (8, 1, 0.75, 1),
            (9, 2, 0.75, 1),  # chin
            (6, 0, 0.4, 1),
            (10, 2, 0.4, 1),
        ),
    ),
    "left_eye": (
        ((37, 41), (38, 40)),
        (36, 39),
        ((37, 0, 0.8, -1), (38, 1, 0.8, -1), (41, 0, 0.2, 1), (40, 1, 0.2, 1)),
    ),
    "right_eye": (
        ((43, 47), (44, 46)),
        (42, 45),
        ((43, 0, 0.8, -1), (44, 1, 0.8, -1), (47, 0, 0.2, 1), (46, 1, 0.2, 1)),
    ),
}
OPENINGS = {"mouth": ("mouth",), "eyes": ("left_eye", "right_eye")}


def _down(points: np.ndarray) -> np.ndarray:
    """The face's unit downward direction: perpendicular to the line through the outer eye corners."""
    across = points[45] - points[36]
    across = across / max(float(np.linalg.norm(across)), 1e-12)
    return np.array([-across[1], across[0]])


def opening_moves(
    swapped: np.ndarray, reference: np.ndarray, parts: Sequence[str], deadband: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Moves (68, 2) that give the swap's ``parts`` (of ``OPENINGS``: mouth, eyes) the reference face's
    opening, each gap as a share of its part's width (identity-free: a closed mouth is closed on anyone),
    and a (68,) bool of the points they govern. ``deadband`` (share of the width): gaps the swap already
    draws within this of the reference's are left alone, twice as far are moved in full (a linear ramp
    between), so landmark noise on a still mouth does not shake a swap that got it right."""
    moves, governed = np.zeros((68, 2)), np.zeros(68, bool)
    down_s, down_r = _down(swapped), _down(reference)
    for part in parts:
        for name in OPENINGS[part]:
            pairs, (c0, c1), movers = _OPENINGS[name]
            width_s = float(np.linalg.norm(swapped[c1] - swapped[c0]))
            width_r = max(float(np.linalg.norm(reference[c1] - reference[c0])), 1e-12)
            change = [
                max((reference[lo] - reference[up]) @ down_r, 0.0) / width_r * width_s
                - max((swapped[lo] - swapped[up]) @ down_s, 0.0)
                for up, lo in pairs
            ]
            if deadband > 0:
                band = deadband * width_s
                change = [c * min(max(abs(c) / band - 1.0, 0.0), 1.0) for c in change]
            for point, pair, share, direction in movers:
                moves[point] = direction * share * change[pair] * down_s
                governed[point] = True
    return moves, governed


def region_weights(regions: Sequence[str]) -> np.ndarray:
    """(68,) 1 on the points of ``regions`` (names of :data:`REGIONS`), 0 elsewhere."""
    unknown = sorted(set(regions) - set(REGIONS))
    if unknown:
        raise ValueError(f"unknown expression regions {unknown}; choose from {sorted(REGIONS)}")
    weights = np.zeros(68)
    for name in regions:
        weights[list(REGIONS[name])] = 1.0
    return weights


class ExpressionWarp:
    """Bend each swapped crop so its ``opening`` parts open as the input face's and its ``regions`` follow
    the input's expression changes; ``interior``: show the input's mouth interior in opened lips (see the
    module doc). ``strength`` scales every move.

    ``landmarker``: an object with ``predict(RGB uint8 image, face box) → (68, 2) points``, or such a
    callable (dlib's 68-point predictor by default: ``swapper.faces.detection.DlibLandmarker``); it sees the
    swapped crop upscaled ``upscale``×
    (bicubic), the size it was trained on. ``max_shift``: no point moves further than this share of the
    inter-ocular distance (a landmark slip cannot tear the face). ``regularisation``: the spline's ridge
    (keeps it finite when the target closes a mouth); ``border``: fixed points per side of the crop.
    One running mean serves all faces of a video (their crops share the alignment's frame).
    """

    def __init__(
        self,
        strength: float = 1.0,
        regions: Sequence[str] = ("brows", "mouth", "jaw"),
        opening: Sequence[str] = ("mouth", "eyes"),
        interior: bool = True,
        deadband: float = 0.05,
        landmarker: Landmarker | object | None = None,
        upscale: int = 4,
        max_shift: float = 0.5,
        regularisation: float = 1e-3,
        border: int = 5,
    ) -> None:
        if not 0.0 <= strength <= 2.0:
            raise ValueError(f"strength must be in [0, 2], got {strength}")
        if upscale < 1 or max_shift <= 0 or regularisation < 0 or border < 2:
            raise ValueError(
                "need upscale >= 1, max_shift > 0, regularisation >= 0 and border >= 2; got "
                f"upscale={upscale}, max_shift={max_shift}, regularisation={regularisation}, border={border}"
            )
        self.strength, self.weights = float(strength), region_weights(list(regions))
        unknown = sorted(set(opening) - set(OPENINGS))
        if unknown:
            raise ValueError(f"unknown opening parts {unknown}; choose from {sorted(OPENINGS)}")
        self.opening, self.interior = tuple(opening), bool(interior)
        if not 0.0 <= deadband < 1.0:
            raise ValueError(f"deadband must be in [0, 1), got {deadband}")
        self.deadband = float(deadband)
        self.upscale, self.max_shift = int(upscale), float(max_shift)
        self.regularisation, self.border = float(regularisation), int(border)
        if landmarker is None:
            from swapper.faces.detection import DlibLandmarker

            landmarker = DlibLandmarker()  # needs dlib (pip install swapper[dlib])
        self._landmarker = landmarker
        self.reset()

    def reset(self) -> None:
        """Forget the video so far (call between videos)."""
        self._sum, self._count = np.zeros((68, 2)), 0

    @property
    def mean_offset(self) -> np.ndarray | None:
        """The mean input − swap landmark offset so far (crop pixels), None before the first face."""
        return self._sum / self._count if self._count else None

    def _predict(self, landmarker, rgb: np.ndarray, box: np.ndarray) -> np.ndarray:
        predict = getattr(landmarker, "predict", landmarker)
        return np.asarray(predict(rgb, box), np.float64)

    def landmarks(self, face: np.ndarray, reference: np.ndarray) -> np.ndarray:
        """(68, 2) crop-pixel landmarks of a swapped (S, S, 3) float RGB [0, 1] crop; the face box comes from
        the input crop's landmarks ``reference`` (the swap sits where its input was)."""
        f = self.upscale
        size = face.shape[0] * f
        rgb = np.clip(np.asarray(face, np.float32) * 255.0 + 0.5, 0, 255).astype(np.uint8)
        if f > 1:
            rgb = cv2.resize(rgb, (size, size), interpolation=cv2.INTER_CUBIC)
        big = reference * f + (f - 1) / 2.0  # OpenCV's resize: pixel centres map as x·f + (f − 1)/2
        box = dlib_box(landmarks_68_to_5(big))
        return (self._predict(self._landmarker, rgb, box) - (f - 1) / 2.0) / f

    def targets(self, swapped_points: np.ndarray, input_points: np.ndarray) -> np.ndarray:
        """Where the swap's landmarks go (adds this face's offset to the running mean first)."""
        offset = input_points - swapped_points
        self._sum += offset
        self._count += 1
        move = self.weights[:, None] * (offset - self.mean_offset)
        if self.opening:
            opened, governed = opening_moves(swapped_points, input_points, self.opening, self.deadband)
            move[governed] = opened[governed]
        move = self.strength * move
        eyes = input_points[36:42].mean(0), input_points[42:48].mean(0)
        limit = self.max_shift * float(np.linalg.norm(eyes[1] - eyes[0]))
        length = np.linalg.norm(move, axis=1, keepdims=True)
        move = move * np.minimum(1.0, limit / np.maximum(length, 1e-12))
        return swapped_points + move

    @staticmethod
    def mouth_interior(
        face: np.ndarray, crop: np.ndarray, reference: np.ndarray, target: np.ndarray
    ) -> np.ndarray:
        """``face`` with the input ``crop``'s mouth interior (inside its inner lips, ``reference`` 60-67)
        mapped (least-squares affine) into the inner lips of ``target`` (60-67): the teeth and the dark of an
        open mouth, which a spline that opens closed lips cannot draw."""
        inner = target[60:68]
        x, y = inner[:, 0], inner[:, 1]
        if abs(float(x @ np.roll(y, -1) - y @ np.roll(x, -1))) / 2 < 0.5:  # closed (under half a pixel²)
            return face
        mask = polygon_mask(inner, face.shape[:2])
        source = np.concatenate([reference[60:68], np.ones((8, 1))], 1)
        affine = np.linalg.lstsq(source, inner, rcond=None)[0].T  # (2, 3): reference → target
        size = face.shape[1], face.shape[0]
        inside = cv2.warpAffine(np.asarray(crop, np.float32), affine, size, flags=cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_REPLICATE)  # fmt: skip
        return (mask[..., None] * inside + (1.0 - mask[..., None]) * face).astype(face.dtype, copy=False)

    def __call__(
        self,
        swapped: np.ndarray,
        crops: np.ndarray,
        points: Sequence[np.ndarray],
        predicted: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """(N, S, S, 3) swapped crops, the (N, S, S, 3) input crops they were made from, the inputs' (68, 2)
        crop-pixel landmarks, the (N, S, S) predicted masks or None → the warped crops and masks (new
        arrays)."""
        points = [np.asarray(p, np.float64) for p in points]
        if len(points) != len(swapped):
            raise ValueError(f"{len(swapped)} swapped crops but landmarks for {len(points)}")
        if any(p.shape != (68, 2) for p in points):
            shapes = sorted({p.shape for p in points})
            raise ValueError(
                f"infer/expression=warp needs 68 input landmarks per face, got shapes {shapes}: "
                "use a 68-point detector (detector=yunet_68, dlib_hog or dlib_cnn)"
            )
        if len(swapped) == 0 or self.strength == 0:
            return swapped, predicted
        size = swapped.shape[1]
        sources, targets = [], []
        for face, reference in zip(swapped, points, strict=True):
            found = self.landmarks(face, reference)
            sources.append(found)
            targets.append(self.targets(found, reference))
        fixed = border_points(self.border, dtype=torch.float64).expand(len(points), -1, -1)
        source = torch.cat([to_grid_frame(np.stack(sources), size, dtype=torch.float64), fixed], 1)
        target = torch.cat([to_grid_frame(np.stack(targets), size, dtype=torch.float64), fixed], 1)
        images = torch.from_numpy(np.ascontiguousarray(swapped, np.float32)).permute(0, 3, 1, 2)
        if predicted is not None:
            images = torch.cat([images, torch.from_numpy(np.asarray(predicted, np.float32))[:, None]], 1)
        warped = tps_warp(images.double(), source, target, self.regularisation, resolution=None).float()
        out = np.clip(warped[:, :3].permute(0, 2, 3, 1).numpy(), 0.0, 1.0).astype(swapped.dtype, copy=False)
        masks = None if predicted is None else np.clip(warped[:, 3].numpy(), 0.0, 1.0)
        if self.interior and "mouth" in self.opening:
            out = np.stack(
                [self.mouth_interior(*face) for face in zip(out, crops, points, targets, strict=True)]
            )
        return out, masks
