"""The inference pipeline: detect → select → smooth (videos) → align → swap → mask → colour →
sharpen (optional) → blend (paste back) → write. Each stage is a small component given to
:class:`FaceSwapPipeline`.

Frames are (H, W, 3) uint8 BGR; the model sees (S, S, 3) RGB crops in [0, 1].
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from swapper.faces.alignment import transform_points
from swapper.faces.detection import Face
from swapper.faces.selection import largest
from swapper.inference.align import Aligner
from swapper.inference.smoothing import FaceSmoother
from swapper.inference.video import VideoReader, VideoWriter
from swapper.ops.progress import tqdm_or_log

__all__ = ["FaceSwapPipeline", "VideoReport", "crop_of_largest_face"]

log = logging.getLogger(__name__)

Detector = Callable[[np.ndarray], list[Face]]
Selector = Callable[[np.ndarray, Sequence[Face]], list[Face]]
SwapStage = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray | None]]
MaskStage = Callable[[np.ndarray, int, np.ndarray | None], np.ndarray]
ColorStage = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]
BlendStage = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], np.ndarray]
SharpenStage = Callable[[np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]
ExpressionStage = Callable[
    [np.ndarray, np.ndarray, list[np.ndarray], np.ndarray | None], tuple[np.ndarray, np.ndarray | None]
]

STAGES = ("decode", "detect", "align", "swap", "expression", "blend", "encode")


@dataclass
class VideoReport:
    source: Path
    target: Path
    frames: int = 0
    frames_with_faces: int = 0
    faces: int = 0
    seconds: float = 0.0


def _rgb01(crop_bgr: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(crop_bgr, cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0


def aligned_crop(image: np.ndarray, size: int) -> np.ndarray:
    """A BGR image that already is an aligned face crop -> (S, S, 3) float RGB at the model's size."""
    if image.shape[:2] != (size, size):
        interpolation = cv2.INTER_AREA if image.shape[0] > size else cv2.INTER_CUBIC
        image = cv2.resize(image, (size, size), interpolation=interpolation)
    return _rgb01(image)


def crop_of_largest_face(image: np.ndarray, detector: Detector, aligner: Aligner, what: str) -> np.ndarray:
    """The aligned (S, S, 3) float RGB crop of the largest face in a BGR image (e.g. a source photo)."""
    faces = largest(detector(image))
    if not faces:
        raise ValueError(f"no face found in {what}")
    crop, _, _ = aligner(image, faces[0].landmarks)
    return _rgb01(crop)


class FaceSwapPipeline:
    """Swap the faces of frames with the given stages.

    ``smoother`` (videos only; None = per-frame detections as they are) follows faces over time;
    it is reset on a scene cut: a mean absolute change above ``scene_cut`` (share of the 0-255
    range) between 32×32 grey thumbnails of consecutive frames. ``batch_frames`` frames are
    detected, then all their faces swapped in one batch. ``sharpen`` (None = off) takes each
    colour-matched face with its mask and matrix before the blend, and may return a larger crop
    (see :mod:`swapper.inference.sharpen`). ``expression`` (videos only, None = off) bends the swapped
    crops (and predicted masks) after the model so their expression follows the input faces' landmarks
    as detected, not as smoothed: the smoother steadies the face's shape, and would slow the mouth
    (see :mod:`swapper.inference.expression`). ``timings`` adds up seconds per stage.
    """

    def __init__(
        self,
        detector: Detector,
        selector: Selector,
        aligner: Aligner,
        swap: SwapStage,
        mask: MaskStage,
        blend: BlendStage,
        color: ColorStage,
        smoother: FaceSmoother | None = None,
        scene_cut: float | None = 0.08,
        batch_frames: int = 8,
        sharpen: SharpenStage | None = None,
        expression: ExpressionStage | None = None,
    ) -> None:
        if batch_frames < 1:
            raise ValueError(f"batch_frames must be >= 1, got {batch_frames}")
        self.detector, self.selector, self.aligner, self.swap = detector, selector, aligner, swap
        self.mask, self.blend, self.color, self.smoother = mask, blend, color, smoother
        self.scene_cut, self.batch_frames, self.sharpen = scene_cut, batch_frames, sharpen
        self.expression = expression
        self.timings: dict[str, float] = defaultdict(float)
        self._thumb: np.ndarray | None = None

    @contextmanager
    def _timed(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.timings[stage] += time.perf_counter() - start

    def reset(self) -> None:
        """Forget the previous frames (call between videos)."""
        self._thumb = None
        if self.smoother is not None:
            self.smoother.reset()
        if self.expression is not None and hasattr(self.expression, "reset"):
            self.expression.reset()

    def _is_cut(self, frame: np.ndarray) -> bool:
        thumb = cv2.resize(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY), (32, 32), interpolation=cv2.INTER_AREA)
        previous, self._thumb = self._thumb, thumb.astype(np.float32)
        if previous is None or self.scene_cut is None:
            return False
        return float(np.abs(self._thumb - previous).mean()) / 255.0 > self.scene_cut

    def find_faces(self, frame: np.ndarray, t: float | None = None) -> list[Face]:
        """Detected and selected faces; smoothed and carried over when ``t`` (seconds) is given."""
        with self._timed("detect"):
            faces = self.selector(frame, self.detector(frame))
            if t is not None and self.smoother is not None:
                if self._is_cut(frame):
                    self.smoother.reset()
                faces = self.smoother(faces, t)
        return faces

    def swap_frames(
        self, frames: Sequence[np.ndarray], times: Sequence[float] | None = None
    ) -> tuple[list[np.ndarray], list[int]]:
        """The swapped frames (new arrays; a frame without a face is returned as it is, never
        modified in place) and the number of faces swapped in each. ``times`` (seconds, videos)
        turns on smoothing."""
        found = [self.find_faces(f, None if times is None else times[i]) for i, f in enumerate(frames)]
        with self._timed("align"):
            jobs = []  # (frame index, crop BGR, matrix, crop landmarks, crop landmarks as detected)
            for i, faces in enumerate(found):
                for face in faces:
                    crop, matrix, points = self.aligner(frames[i], face.landmarks)
                    detected = (
                        points if face.detected68 is None else transform_points(face.detected68, matrix)
                    )
                    jobs.append((i, crop, matrix, points, detected))
            crops = np.stack([_rgb01(j[1]) for j in jobs]) if jobs else None
        out = list(frames)  # blenders return new frames
        if crops is None:
            return out, [0] * len(frames)
        with self._timed("swap"):
            swapped, predicted = self.swap(crops)
        if self.expression is not None and times is not None:
            with self._timed("expression"):
                swapped, predicted = self.expression(swapped, crops, [j[4] for j in jobs], predicted)
        with self._timed("blend"):
            size = crops.shape[1]
            for k, (i, _, matrix, points, _) in enumerate(jobs):
                mask = self.mask(points, size, None if predicted is None else predicted[k])
                face = self.color(swapped[k], crops[k], mask)
                face_bgr = cv2.cvtColor(face.astype(np.float32), cv2.COLOR_RGB2BGR) * 255.0
                if self.sharpen is not None:
                    face_bgr, mask, matrix = self.sharpen(face_bgr, mask, matrix)
                out[i] = self.blend(out[i], face_bgr, mask, matrix)
        return out, [len(f) for f in found]

    def swap_image(self, image: np.ndarray) -> tuple[np.ndarray, int]:
        frames, counts = self.swap_frames([image])
        return frames[0], counts[0]

    def _decoded(self, reader: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        frames = iter(reader)
        while True:
            with self._timed("decode"):
                frame = next(frames, None)
            if frame is None:
                return
            yield frame

    def swap_video(
        self,
        source: str | Path,
        target: str | Path,
        audio: bool = True,
        writer_options: dict[str, Any] | None = None,
        progress: bool = True,
    ) -> VideoReport:
        """Swap every frame of a video into ``target`` (H.264 at the source frame rate, audio copied)."""
        start = time.perf_counter()
        self.reset()
        with VideoReader(source) as reader:
            info = reader.info
            report = VideoReport(Path(source), Path(target))
            writer = VideoWriter(
                target, info.width, info.height, info.fps, audio_from=source if audio else None,
                start=info.start if audio else 0.0, **(writer_options or {}),
            )  # fmt: skip
            bar = tqdm_or_log(info.frames or None, Path(source).name, "frame", disable=not progress)
            try:
                chunk: list[np.ndarray] = []

                def flush() -> None:
                    first = report.frames
                    times = [(first + i) / float(info.fps) for i in range(len(chunk))]
                    frames, counts = self.swap_frames(chunk, times)
                    with self._timed("encode"):
                        for frame in frames:
                            writer.write(frame)
                    report.frames += len(frames)
                    report.frames_with_faces += sum(c > 0 for c in counts)
                    report.faces += sum(counts)
                    bar.update(len(frames))
                    chunk.clear()

                for frame in self._decoded(reader):
                    chunk.append(frame)
                    if len(chunk) == self.batch_frames:
                        flush()
                if chunk:
                    flush()
                with self._timed("encode"):
                    writer.close()
            except BaseException:
                writer.abort()
                raise
            finally:
                bar.close()
        report.seconds = time.perf_counter() - start
        return report
