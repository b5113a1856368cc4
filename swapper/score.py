"""Score swaps of real people without a ground truth (see ``swapper.metrics.real_faces``).

``python -m swapper.score swaps=<folder of swapped crops | video> source=<crops of the person swapped
from> target=<crops of the person swapped to> [output=<report.json>] [split=val]``

Swapped crops are paired with their inputs by file name (``infer.py`` on a folder of crops keeps the
stems); a swapped video is detected and aligned frame by frame with the template of the source's crops
(``faces.jsonl`` tells which), frame ``i`` pairing with the source crop of frame ``i + video.offset``.
Prints and writes identity transfer (SFace and dlib), landmark error and openness correlation of swap
vs input, sharpness vs the target's real faces, the same identity and sharpness figures for the unswapped
inputs (the no-swap baseline) and the pose/expression coverage of the two people. Scoring the unswapped input
video itself as ``swaps`` gives what a perfect swap of this footage reaches (the measurement's own noise).
:func:`score_crops` scores aligned crop tensors (a validation step).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import hydra
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor

from swapper.data.datasets import METADATA, FaceFolder, evenly_spaced
from swapper.faces.alignment import ARCFACE_112, Template, get_template, umeyama, warp
from swapper.faces.images import list_images, read_image
from swapper.faces.masks import ellipse_mask
from swapper.metrics import real_faces as rf

__all__ = ["Judge", "crop_geometry", "expression_ceiling", "score_crops", "score_features", "to_uint8"]

log = logging.getLogger("swapper.score")

RECOGNISERS = {
    "sface": ("cosine", rf.SFACE_COSINE_THRESHOLD),
    "dlib": ("euclidean", rf.DLIB_DISTANCE_THRESHOLD),
}
DETECT_SIZE = 256  # crops are upscaled to this side for the landmarkers and dlib's descriptor


def crop_geometry(folder: str | Path) -> tuple[Template, int, bool] | None:
    """(template, crop size, whether 68 points were stored) of a folder made by extraction, or None."""
    from swapper.extract import read_metadata

    for record in read_metadata(Path(folder) / METADATA):
        has68 = any(face.get("landmarks68") for face in record.get("faces", []))
        return get_template(record["template"], record["coverage"]), int(record["size"]), has68
    return None


class Judge:
    """Recognisers and landmarkers for aligned crops of one ``template``.

    ``features(crops)`` on (N, S, S, 3) uint8 RGB crops gives per crop: ``sface`` / ``dlib``
    embeddings (N, 128), ``landmarks68`` (dlib's predictor in the template's face box), ``landmarks5``
    (YuNet; NaN where it finds no face) in crop pixels, and ``sharpness`` (Laplacian energy inside
    the template's face ellipse).
    """

    def __init__(
        self, template: Template, recognisers: Sequence[str] = ("sface", "dlib"), device: str = "cpu"
    ) -> None:
        unknown = set(recognisers) - set(RECOGNISERS)
        if unknown:
            raise ValueError(f"unknown recognisers {sorted(unknown)}; choose from {sorted(RECOGNISERS)}")
        from swapper.faces.detection import DlibLandmarker, YuNetDetector

        self.template, self.recognisers, self.device = template, tuple(recognisers), torch.device(device)
        self.landmarker = DlibLandmarker()
        self.detector = YuNetDetector(score_threshold=0.5, max_side=None)
        self._sface = self._dlib_net = None
        if "sface" in self.recognisers:
            from swapper.models.pretrained.sface import SFace

            self._sface = SFace().to(self.device)
        if "dlib" in self.recognisers:
            import dlib
            import face_recognition_models

            self._dlib = dlib
            self._dlib_net = dlib.face_recognition_model_v1(
                face_recognition_models.face_recognition_model_location()
            )

    def _sface_embed(self, crops: np.ndarray) -> np.ndarray:
        s = crops.shape[1]
        matrix = umeyama(self.template.points5 * s, ARCFACE_112)  # the crop's template → SFace's 112 layout
        aligned = np.stack([warp(c, matrix, 112) for c in crops])
        batch = torch.from_numpy(aligned).to(self.device).permute(0, 3, 1, 2).float() / 255
        with torch.no_grad():
            return self._sface.embed(batch).cpu().numpy()

    @staticmethod
    def _checked(crops: np.ndarray) -> np.ndarray:
        crops = np.asarray(crops)
        if (
            crops.ndim != 4
            or crops.shape[-1] != 3
            or crops.dtype != np.uint8
            or crops.shape[1] != crops.shape[2]
        ):
            raise ValueError(f"need (N, S, S, 3) uint8 RGB crops, got {crops.shape} {crops.dtype}")
        return crops

    def _upscaled(self, crops: np.ndarray):
        """(scale k, the template's dlib box at that scale, an iterator of crops upscaled to DETECT_SIZE)."""
        s = crops.shape[1]
        k = max(1.0, DETECT_SIZE / s)
        big_s = round(s * k)
        box = self.landmarker.box_from_landmarks5(self.template.points5 * big_s)
        bigs = (cv2.resize(c, (big_s, big_s), interpolation=cv2.INTER_CUBIC) if k > 1 else c for c in crops)
        return k, box, bigs

    def landmarks68(self, crops: np.ndarray) -> np.ndarray:
        """(N, 68, 2) dlib landmarks (crop pixels) of (N, S, S, 3) uint8 RGB crops, as :meth:`features`."""
        k, box, bigs = self._upscaled(self._checked(crops))
        return np.stack([(self.landmarker.predict(big, box) + 0.5) / k - 0.5 for big in bigs])

    def features(self, crops: np.ndarray) -> dict[str, np.ndarray]:
        crops = self._checked(crops)
        n, s = len(crops), crops.shape[1]
        k, box, bigs = self._upscaled(crops)
        big_s = round(s * k)
        lm68, lm5, descriptors = np.zeros((n, 68, 2)), np.full((n, 5, 2), np.nan), np.zeros((n, 128))
        for i, big in enumerate(bigs):
            points = self.landmarker.predict(big, box)
            lm68[i] = (points + 0.5) / k - 0.5
            faces = self.detector(cv2.cvtColor(big, cv2.COLOR_RGB2BGR))
            if faces:  # the face nearest the crop centre
                centre = np.array([big_s / 2, big_s / 2])
                face = min(faces, key=lambda f: np.linalg.norm(f.landmarks5.mean(0) - centre))
                lm5[i] = (face.landmarks5 + 0.5) / k - 0.5
            if self._dlib_net is not None:
                d = self._dlib
                rect = d.rectangle(*(round(float(v)) for v in box))
                shape = d.full_object_detection(rect, [d.point(int(x), int(y)) for x, y in points])
                descriptors[i] = np.array(self._dlib_net.compute_face_descriptor(big, shape))
        out = {"landmarks68": lm68, "landmarks5": lm5}
        if self._dlib_net is not None:
            out["dlib"] = descriptors
        if self._sface is not None:
            out["sface"] = self._sface_embed(crops)
        mask = ellipse_mask(self.template.points5 * s, (s, s))
        out["sharpness"] = rf.laplacian_energy(crops, mask)
        return out


def score_features(
    swaps: dict[str, np.ndarray],
    source: dict[str, np.ndarray],
    target: dict[str, np.ndarray],
    inputs: dict[str, np.ndarray] | None = None,
) -> dict[str, float]:
    """Figures of swaps of source into target, from :meth:`Judge.features` of the swaps, of real
    faces of both people and (row for row with the swaps) of the swaps' inputs, when known."""
    out: dict[str, float] = {"faces": float(len(swaps["sharpness"]))}
    for name, (metric, threshold) in RECOGNISERS.items():
        if name not in swaps:
            continue
        emb = {
            k: torch.from_numpy(np.asarray(v[name])) for k, v in (("s", source), ("t", target), ("x", swaps))
        }
        for key, value in rf.identity_transfer(emb["x"], emb["s"], emb["t"], metric, threshold).items():
            out[f"identity/{name}/{key}"] = value
        if inputs is not None:
            baseline = torch.from_numpy(np.asarray(inputs[name]))
            for key, value in rf.identity_transfer(baseline, emb["s"], emb["t"], metric, threshold).items():
                out[f"baseline/{name}/{key}"] = value
    if inputs is not None:
        out["landmarks/dlib68_error"] = float(
            np.mean(rf.landmark_error(swaps["landmarks68"], inputs["landmarks68"]))
        )
        error5 = rf.landmark_error(swaps["landmarks5"], inputs["landmarks5"])
        out["landmarks/yunet5_error"] = (
            float(np.nanmean(error5)) if np.isfinite(error5).any() else float("nan")
        )
        out["landmarks/yunet5_found"] = float(np.isfinite(swaps["landmarks5"][:, 0, 0]).mean())
        for part, ratio in (("eyes", rf.eye_aspect_ratio), ("mouth", rf.mouth_aspect_ratio)):
            swapped, given = ratio(swaps["landmarks68"]), ratio(inputs["landmarks68"])
            out[f"expression/{part}_correlation"] = rf.pearson(swapped, given)
            # the correlation ignores a mouth held open throughout; the mean gap says how far it is
            out[f"expression/{part}_abs_error"] = float(np.mean(np.abs(swapped - given)))
    out["sharpness/swaps"] = float(np.mean(swaps["sharpness"]))
    out["sharpness/target"] = float(np.mean(target["sharpness"]))
    out["sharpness/ratio"] = rf.sharpness_ratio(swaps["sharpness"], target["sharpness"])
    if inputs is not None:
        # the unswapped inputs against the target's faces: a swap that drew its face with the detail of the
        # footage it is pasted into scores this; a grainier target's footage puts the goal out of reach
        out["baseline/sharpness/ratio"] = rf.sharpness_ratio(inputs["sharpness"], target["sharpness"])
    return out


def to_uint8(images: Tensor) -> np.ndarray:
    """(N, 3, S, S) in [0, 1] → (N, S, S, 3) uint8."""
    return (
        (images.detach().float().clamp(0, 1).cpu().numpy().transpose(0, 2, 3, 1) * 255)
        .round()
        .astype(np.uint8)
    )


def score_crops(
    swaps: Tensor, inputs: Tensor, source: Tensor, target: Tensor, judge: Judge
) -> dict[str, float]:
    """:func:`score_features` of aligned crop tensors (N, 3, S, S) in [0, 1]: swaps of ``source``'s
    person into ``target``'s, made from ``inputs`` (row for row), and real faces of both people."""
    if swaps.shape != inputs.shape:
        raise ValueError(
            f"swaps {tuple(swaps.shape)} and inputs {tuple(inputs.shape)} must match row for row"
        )
    feats = [judge.features(to_uint8(x)) for x in (swaps, inputs, source, target)]
    return score_features(feats[0], feats[2], feats[3], feats[1])


# ---- the command --------------------------------------------------------------------------------
def _read_crops(paths: Sequence[Path], size: int) -> np.ndarray:
    images = [read_image(p, size) for p in paths]
    return (np.stack([im for im in images if im is not None]) * 255).round().astype(np.uint8)


def _video_crops(
    video: Path, template: Template, size: int, has68: bool, offset: int, step: int
) -> tuple[list[int], np.ndarray]:
    """(source frame indices, aligned crops) of the largest face of every ``step``-th frame."""
    from swapper.faces.alignment import estimate
    from swapper.faces.detection import DlibLandmarker, YuNetDetector

    detector = YuNetDetector(landmarker=DlibLandmarker() if has68 else None)
    frames, crops = [], []
    cap = cv2.VideoCapture(str(video))
    index = 0
    try:
        while True:
            ok, image = cap.read()
            if not ok:
                break
            if index % step == 0:
                faces = detector(image)
                if faces:
                    face = max(faces, key=lambda f: f.area)
                    crop = warp(image, estimate(face.landmarks, template, size), size)
                    frames.append(index + offset)
                    crops.append(cv2.cvtColor(crop, cv2.COLOR_BGR2RGB))
            index += 1
    finally:
        cap.release()
    if not crops:
        raise ValueError(f"no face found in {video} ({index} frame(s) read)")
    log.info("%s: %d frame(s) read, %d with a face scored", video, index, len(crops))
    return frames, np.stack(crops)


def score(
    swaps: str | Path,
    source: str | Path,
    target: str | Path,
    split: str | None = None,
    val_fraction: float = 0.15,
    gap: int = 30,
    recognisers: Sequence[str] = ("sface", "dlib"),
    max_reference: int | None = 150,
    offset: int = 0,
    step: int = 1,
    device: str = "cpu",
    model_sizes: Sequence[int] = (),
) -> dict[str, Any]:
    """The figures of the module doc. ``split="val"``: only swaps of the source's held-out frames;
    ``max_reference``: real faces per person for the centroids (evenly spaced; None: all);
    ``model_sizes``: also ``sharpness/ceiling_<n>px``, the ratio the target's real faces reach
    through n px (:func:`~swapper.metrics.real_faces.resolution_ceiling`): the detail a model drawing
    at n px can hold; and ``expression/<part>_ceiling_<n>px`` (:func:`expression_ceiling`)."""
    swaps, source, target = (Path(p).expanduser() for p in (swaps, source, target))
    geometry = crop_geometry(source) or crop_geometry(target)
    if geometry is None:
        raise ValueError(f"neither {source} nor {target} holds a {METADATA}: which template made the crops?")
    template, stored_size, has68 = geometry
    held = (
        {p.name for p in FaceFolder(source, split=split, val_fraction=val_fraction, gap=gap).files}
        if split
        else None
    )
    source_files = list_images(source)
    by_stem = {p.stem: p for p in source_files}
    if swaps.is_dir():
        swap_files = [
            p
            for p in list_images(swaps)
            if held is None or (by_stem.get(p.stem) and by_stem[p.stem].name in held)
        ]
        if not swap_files:
            raise ValueError(f"no swapped crop of {swaps} to score (split={split})")
        size = read_image(swap_files[0]).shape[0]
        swap_crops = _read_crops(swap_files, size)
        input_files = [by_stem.get(p.stem) for p in swap_files]
    else:
        size = stored_size
        frames, swap_crops = _video_crops(swaps, template, size, has68, offset, step)
        from swapper.data.datasets import read_crop_info

        by_frame = {}
        for name, info in sorted(read_crop_info(source).items(), reverse=True):
            by_frame[info.frame] = source / name  # face 0 of a frame wins: sorted last
        input_files = [by_frame.get(f) for f in frames]
        keep = [i for i, p in enumerate(input_files) if held is None or (p is not None and p.name in held)]
        swap_crops, input_files = swap_crops[keep], [input_files[i] for i in keep]
        if not keep:
            raise ValueError(f"no frame of {swaps} falls in the source's {split} split")
    paired = all(p is not None for p in input_files)
    if not paired:
        log.warning("%d of %d swap(s) have no input crop in %s: expression and landmark figures skipped",
                    sum(p is None for p in input_files), len(input_files), source)  # fmt: skip
    judge = Judge(template, recognisers, device)

    def reference(folder: Path) -> np.ndarray:
        files = list_images(folder)
        if max_reference is not None and len(files) > max_reference:
            files = [files[i] for i in evenly_spaced(max_reference, len(files))]
        return _read_crops(files, size)  # at the swaps' size: the same detail for both

    log.info("scoring %d swap(s) at %d px against %s and %s", len(swap_crops), size, source, target)
    target_crops = reference(target)
    inputs = _read_crops(input_files, size) if paired else None
    input_features = judge.features(inputs) if inputs is not None else None
    figures = score_features(
        judge.features(swap_crops),
        judge.features(reference(source)),
        judge.features(target_crops),
        input_features,
    )
    face = ellipse_mask(template.points5 * size, (size, size))
    for n in model_sizes:
        figures[f"sharpness/ceiling_{n}px"] = rf.resolution_ceiling(target_crops, int(n), face)
        if inputs is not None:
            figures.update(expression_ceiling(judge, inputs, int(n), input_features["landmarks68"]))
    return {"swaps": str(swaps), "source": str(source), "target": str(target), "split": split,
            "figures": figures}  # fmt: skip


def expression_ceiling(
    judge: Judge, inputs: np.ndarray, size: int, seen: np.ndarray | None = None
) -> dict[str, float]:
    """``expression/<part>_ceiling_<n>px``: the openness correlation of the inputs with themselves passed
    through ``size`` px (:func:`~swapper.metrics.real_faces.through_size`), i.e. what a swap drawing every
    input's expression perfectly at that size would score. Where the inputs barely move (a mouth that stays
    closed), landmark noise at that size is all there is to correlate, and the ceiling is low. ``seen``: the
    inputs' landmarks when already found (:meth:`Judge.features`)."""
    seen = judge.landmarks68(inputs) if seen is None else seen
    drawn = judge.landmarks68(rf.through_size(inputs, size))
    return {
        f"expression/{part}_ceiling_{size}px": rf.pearson(ratio(drawn), ratio(seen))
        for part, ratio in (("eyes", rf.eye_aspect_ratio), ("mouth", rf.mouth_aspect_ratio))
    }


def format_figures(figures: dict[str, float]) -> str:
    width = max(map(len, figures))
    return "\n".join(f"{name:<{width}}  {value:8.3f}" for name, value in figures.items())


@hydra.main(version_base="1.3", config_path="../conf", config_name="score")
def main(cfg: DictConfig) -> None:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        result = score(
            cfg.swaps, cfg.source, cfg.target, split=cfg.split, val_fraction=cfg.val_fraction, gap=cfg.gap,
            recognisers=list(OmegaConf.to_container(cfg.recognisers)), max_reference=cfg.max_reference,
            offset=cfg.video.offset, step=cfg.video.step, device=cfg.device,
            model_sizes=list(cfg.model_sizes or []),
        )  # fmt: skip
    except (ImportError, FileNotFoundError, ValueError) as err:
        log.error("%s", err)
        sys.exit(2)
    from swapper.data.coverage import coverage_report

    coverage = coverage_report(cfg.source, cfg.target)
    result["coverage"] = coverage.as_dict()
    print(format_figures(result["figures"]))
    print(coverage.table())
    if cfg.output:
        path = Path(cfg.output).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=2, allow_nan=True) + "\n")
        log.info("wrote %s", path)


if __name__ == "__main__":
    main()
