"""Pose and expression coverage of the two people of a per-pair model, from extraction's landmarks.

A per-pair model draws the target only in poses and expressions it has seen: where the source turns
its head or opens its mouth further than any target face, the swap blurs or freezes. This module
reads both folders' ``faces.jsonl``, estimates for every face a rough yaw and pitch from its 5 points
(the nose tip's offset from the eye-to-mouth midline and its height between eyes and mouth, against
the frontal ArcFace template) and, with 68 points, eye and mouth openness (aspect ratios), and
compares the histograms: a bin where the source has faces and the target none is a warning.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from swapper.faces.alignment import ARCFACE_112
from swapper.metrics.real_faces import eye_aspect_ratio, mouth_aspect_ratio

__all__ = ["BINS", "CoverageReport", "attributes", "coverage_report", "head_pose"]

log = logging.getLogger(__name__)

# Nose-tip depth in front of the eye centres over half their distance (a generic 3-D face), and the
# projected pitch change per unit of nose height (share of the eye–mouth distance): yaw and pitch
# are rough angles, for comparing two people filmed alike, not head-pose estimates.
NOSE_DEPTH = 0.9
PITCH_SCALE = 2.37
BINS: dict[str, tuple[float, ...]] = {
    "yaw": (-90, -30, -15, -5, 5, 15, 30, 90),  # degrees, + = nose to the image's right
    "pitch": (-90, -20, -10, 0, 10, 20, 90),  # degrees, + = nose low in the face (head down)
    "eyes": (0.0, 0.15, 0.22, 0.3, 1.0),  # eye aspect ratio: < 0.15 closed, > 0.3 wide open
    "mouth": (0.0, 0.05, 0.2, 0.4, 2.0),  # inner-lip aspect ratio: < 0.05 closed, > 0.4 wide open
}


def _pose_terms(lm5: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, 5, 2) → nose offset from the midline over half the eye distance, nose height in [eyes, mouth]."""
    lm = np.asarray(lm5, np.float64)
    eye_l, eye_r, nose, mouth = lm[:, 0], lm[:, 1], lm[:, 2], (lm[:, 3] + lm[:, 4]) / 2
    eyes = (eye_l + eye_r) / 2
    axis_x = eye_r - eye_l
    half = np.linalg.norm(axis_x, axis=1) / 2
    axis_x = axis_x / (2 * half[:, None])
    axis_y = np.stack([-axis_x[:, 1], axis_x[:, 0]], axis=1)  # down the face when the eyes are level

    def coords(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        d = p - eyes
        return (d * axis_x).sum(1), (d * axis_y).sum(1)

    nose_x, nose_y = coords(nose)
    mouth_x, mouth_y = coords(mouth)
    height = nose_y / mouth_y
    midline_x = mouth_x * height  # the eye-to-mouth midline at the nose's height
    return (nose_x - midline_x) / half, height


_FRONTAL_HEIGHT = float(_pose_terms(ARCFACE_112[None])[1][0])


def head_pose(landmarks5: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, 5, 2) ArcFace-order points → rough (yaw, pitch) in degrees, (0, 0) for the ArcFace template."""
    offset, height = _pose_terms(landmarks5)
    yaw = np.degrees(np.arctan(offset / NOSE_DEPTH))
    pitch = np.degrees(np.arctan((height - _FRONTAL_HEIGHT) * PITCH_SCALE))
    return yaw, pitch


def attributes(folder: str | Path) -> dict[str, np.ndarray]:
    """Yaw, pitch, and (NaN without 68 points) eye and mouth openness of every face in
    ``<folder>/faces.jsonl``."""
    from swapper.extract import read_metadata

    lm5, lm68 = [], []
    for record in read_metadata(Path(folder) / "faces.jsonl"):
        for face in record.get("faces", []):
            if face.get("landmarks5") is None:
                continue
            lm5.append(face["landmarks5"])
            lm68.append(face.get("landmarks68") or np.full((68, 2), np.nan))
    if not lm5:
        return {name: np.zeros(0) for name in BINS}
    yaw, pitch = head_pose(np.array(lm5))
    lm68 = np.array(lm68, np.float64)
    with np.errstate(invalid="ignore"):
        return {"yaw": yaw, "pitch": pitch, "eyes": eye_aspect_ratio(lm68), "mouth": mouth_aspect_ratio(lm68)}


def _labels(edges: tuple[float, ...]) -> list[str]:
    fmt = "{:g}".format
    return [f"{fmt(a)}..{fmt(b)}" for a, b in zip(edges[:-1], edges[1:], strict=True)]


def _histogram(values: np.ndarray, edges: tuple[float, ...]) -> np.ndarray:
    v = values[np.isfinite(values)]
    v = np.clip(v, edges[0], edges[-1])  # the outer bins take everything beyond them
    return np.histogram(v, bins=np.array(edges, np.float64))[0]


@dataclass
class CoverageReport:
    """Per attribute and bin: the source's and the target's face counts; warnings for bins where
    the source has at least ``min_share`` of its faces and the target none (``missing``), or where
    the source has 5× that share and the target less than it (``few``)."""

    rows: list[dict[str, Any]] = field(default_factory=list)  # attribute, bin, source, target
    warnings: list[str] = field(default_factory=list)
    source_faces: int = 0
    target_faces: int = 0

    def table(self) -> str:
        lines = [f"{'attribute':<9} {'bin':<12} {'source':>12} {'target':>12}"]
        for row in self.rows:
            share = [
                f"{row[k]:4d} ({100 * row[k] / max(n, 1):3.0f} %)"
                for k, n in (("source", self.source_faces), ("target", self.target_faces))
            ]
            flag = "  <- target has none" if row["missing"] else "  <- target has few" if row["few"] else ""
            lines.append(f"{row['attribute']:<9} {row['bin']:<12} {share[0]:>12} {share[1]:>12}{flag}")
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def coverage_report(source: str | Path, target: str | Path, min_share: float = 0.02) -> CoverageReport:
    """Compare the pose and expression histograms of two extraction folders (see the module doc);
    warnings are also logged. Attributes missing on either side (no 68 points) are left out."""
    a, b = attributes(source), attributes(target)
    report = CoverageReport(source_faces=len(a["yaw"]), target_faces=len(b["yaw"]))
    if not report.source_faces or not report.target_faces:
        report.warnings.append(
            f"no landmarks in {source if not report.source_faces else target}: no coverage"
        )
    else:
        for name, edges in BINS.items():
            if not (np.isfinite(a[name]).any() and np.isfinite(b[name]).any()):
                continue
            ha, hb = _histogram(a[name], edges), _histogram(b[name], edges)
            for label, na, nb in zip(_labels(edges), ha, hb, strict=True):
                share_a, share_b = na / report.source_faces, nb / report.target_faces
                missing = bool(nb == 0 and na > 0 and share_a >= min_share)
                few = bool(not missing and share_a >= 5 * min_share and share_b < min_share)
                report.rows.append({"attribute": name, "bin": label, "source": int(na), "target": int(nb),
                                    "missing": missing, "few": few})  # fmt: skip
                if missing or few:
                    report.warnings.append(
                        f"{name} {label}: {na} source face(s) ({100 * share_a:.0f} %), "
                        + ("no target face like them" if missing else f"only {nb} target face(s)")
                        + ": the swap cannot learn these, expect blur there"
                    )
    for warning in report.warnings:
        log.warning("coverage: %s", warning)
    return report
