"""Extract aligned face crops from photos, folders and videos.

``python -m swapper.extract input=<file|folder|video|[list]> output=<folder> [detector=dlib_hog]``

Writes ``<output>/<source-stem>_<frame:06d>_<face>.png`` (face 0 = the largest, or the best match
of a reference identity) and one JSON-lines metadata file, ``<output>/faces.jsonl``: one line per
processed frame with the source file, frame index, image size, template, crop size and, per face,
the crop file, box, score, 5 (and 68) landmarks in frame pixels and the alignment matrix
(frame → crop). Frames already listed there are skipped, so an interrupted run resumes. Bad inputs
are logged and counted; the run goes on with the rest.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import hydra
import numpy as np
from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf

from swapper.faces.alignment import Template, estimate, get_template, warp
from swapper.faces.detection import Face
from swapper.faces.images import IMAGE_SUFFIXES
from swapper.faces.selection import FaceSelector

__all__ = ["VIDEO_SUFFIXES", "ExtractReport", "extract", "read_metadata"]

log = logging.getLogger("swapper.extract")

VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv")
METADATA = "faces.jsonl"
RESUMED = -1  # frame index marking a frame skipped because the metadata holds it
Detector = Callable[[np.ndarray], list[Face]]


@dataclass
class ExtractReport:
    """What a run did; ``ok`` is false when nothing could be read or no face was found at all."""

    images: int = 0  # photos read
    video_frames: int = 0  # video frames read
    resumed: int = 0  # frames skipped: already in the metadata
    faces: int = 0  # crops written
    no_face: list[str] = field(default_factory=list)  # "<source>[#frame]" read but without a selected face
    missing: list[str] = field(default_factory=list)
    unsupported: list[str] = field(default_factory=list)  # neither an image nor a video suffix
    unreadable: list[str] = field(default_factory=list)  # undecodable images, unopenable videos

    @property
    def ok(self) -> bool:
        read = self.images + self.video_frames
        return (read > 0 and self.faces > 0) or (read == 0 and self.resumed > 0)

    def summary(self) -> str:
        problems = {
            "no face": self.no_face,
            "missing": self.missing,
            "not an image or video": self.unsupported,
            "unreadable": self.unreadable,
        }
        return (
            f"read {self.images} image(s) and {self.video_frames} video frame(s), "
            f"wrote {self.faces} face(s), {self.resumed} frame(s) already extracted; "
            + ", ".join(f"{name}: {len(items)}" for name, items in problems.items())
        )


def _write_atomic(path: Path, data: bytes) -> None:
    """Write beside ``path``, flush, fsync, then rename: a kill never leaves half a file."""
    tmp = path.with_name(f".{path.name}.partial")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def read_metadata(path: str | Path) -> list[dict[str, Any]]:
    """The frame records of a metadata file; a torn last line (crash mid-write) is skipped."""
    path = Path(path)
    if not path.is_file():
        return []
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            log.warning(
                "%s:%d is not valid JSON (interrupted write?): ignored, that frame is redone", path, number
            )
    return records


def _collect(inputs: Sequence[str | Path], recursive: bool, report: ExtractReport) -> list[tuple[Path, str]]:
    """(path, "image" | "video") for every input file, folders expanded; bad entries are counted."""
    found: list[tuple[Path, str]] = []
    for item in inputs:
        path = Path(item).expanduser()
        if not path.exists():
            log.error("input %s does not exist: skipped", path)
            report.missing.append(str(path))
            continue
        if path.is_dir():
            files = sorted(p for p in (path.rglob("*") if recursive else path.iterdir()) if p.is_file())
            files = [p for p in files if not p.name.startswith(".")]
            usable = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES + VIDEO_SUFFIXES]
            if len(usable) < len(files):
                log.info(
                    "%s: ignored %d file(s) that are neither images nor videos",
                    path,
                    len(files) - len(usable),
                )
            if not usable:
                log.error("folder %s holds no images or videos: skipped", path)
                report.missing.append(str(path))
            found += [(p, "video" if p.suffix.lower() in VIDEO_SUFFIXES else "image") for p in usable]
        elif path.suffix.lower() in IMAGE_SUFFIXES:
            found.append((path, "image"))
        elif path.suffix.lower() in VIDEO_SUFFIXES:
            found.append((path, "video"))
        else:
            log.error(
                "%s is neither an image (%s) nor a video (%s): skipped",
                path, " ".join(IMAGE_SUFFIXES), " ".join(VIDEO_SUFFIXES),
            )  # fmt: skip
            report.unsupported.append(str(path))
    unique: dict[Path, tuple[Path, str]] = {}
    for path, kind in found:
        unique.setdefault(path.resolve(), (path.resolve(), kind))
    return list(unique.values())


def _prefetch(items: Iterable[Any], depth: int) -> Iterator[Any]:
    """Iterate ``items`` in a background thread (decoding overlaps detection: cv2 releases the GIL)."""
    if depth <= 0:
        yield from items
        return
    q: queue.Queue = queue.Queue(maxsize=depth)
    done, stop = object(), threading.Event()

    def worker() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        q.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(done)
        except BaseException as err:  # handed to the consumer, raised there
            q.put(err)

    thread = threading.Thread(target=worker, daemon=True)
    thread.start()
    try:
        while (item := q.get()) is not done:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join(timeout=5)


def _read_image(path: Path) -> np.ndarray | None:
    """(H, W, 3) uint8 BGR, or None when the file does not decode (np.fromfile: any path encoding)."""
    data = np.fromfile(str(path), dtype=np.uint8)
    return cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None


def _read_video(
    path: Path, wanted: Callable[[int], bool], done: Callable[[int], bool], stop: int | None = None
) -> Iterator[tuple[int, np.ndarray | None]]:
    """(index, BGR frame) of each wanted frame not done yet, (RESUMED, None) for each done one, and a
    single (0, None) when the video cannot be opened or not one frame decodes."""
    cap = cv2.VideoCapture(str(path))
    try:
        any_frame, index = False, 0
        while cap.isOpened() and (stop is None or index < stop):
            if wanted(index) and not done(index):
                ok, image = cap.read()
            else:
                if wanted(index):
                    yield RESUMED, None
                ok, image = cap.grab(), None  # skipped frames are only grabbed, not converted
            if not ok:
                break
            any_frame = True
            if image is not None:
                yield index, image
            index += 1
        if not any_frame:
            yield 0, None
    finally:
        cap.release()


def _frame_count(cap: cv2.VideoCapture, start: int, stop: int | None, step: int) -> int:
    n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))  # container metadata: may be approximate
    end = n if stop is None else min(n, stop)
    return max(0, (end - start + step - 1) // step)


class _Writer:
    """Crops and the metadata file of one output folder."""

    def __init__(self, output: Path, template: Template, size: int, image_format: str, border: str) -> None:
        self.output, self.template, self.size, self.border = output, template, size, border
        self.suffix = "." + image_format.lower().lstrip(".")
        if self.suffix not in (".png", ".jpg", ".jpeg", ".webp", ".bmp"):
            raise ValueError(f"image_format must be png, jpg, webp or bmp, got {image_format!r}")
        output.mkdir(parents=True, exist_ok=True)
        self.path = output / METADATA
        for stale in output.glob(".*.partial"):  # a crop being written when a run was killed
            stale.unlink(missing_ok=True)
        records = self._reconcile(read_metadata(self.path))
        self.done = {(r["source"], int(r["frame"])) for r in records}
        self.prefixes: dict[str, str] = {}
        for r in records:
            self.prefixes.setdefault(r["source"], r["prefix"])
            same = (r["template"], float(r["coverage"]), int(r["size"]))
            if same != (template.name, float(template.coverage), size):
                raise ValueError(
                    f"{output} holds crops made with template={r['template']} coverage={r['coverage']} "
                    f"size={r['size']}, not template={template.name} coverage={template.coverage} "
                    f"size={size}: "
                    "use another output folder (or the same settings to resume)"
                )
        self._file = self.path.open("a", encoding="utf-8")
        if self.path.stat().st_size and not self.path.read_bytes().endswith(b"\n"):
            self._file.write("\n")  # end a torn last line so the next record starts on its own

    def _reconcile(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Keep the frames whose crops are all on disk; rewrite the metadata file (atomically) when some
        are not, so those frames are extracted again instead of being listed without their files."""
        kept = [r for r in records if all((self.output / f["file"]).is_file() for f in r.get("faces", []))]
        on_disk = self.path.read_bytes() if self.path.is_file() else b""
        text = "".join(json.dumps(r) + "\n" for r in kept)
        if len(kept) != len(records):
            log.warning(
                "%s lists %d frame(s) whose crops are missing: they will be extracted again",
                self.path, len(records) - len(kept),
            )  # fmt: skip
        if len(kept) != len(records) or (on_disk and on_disk.count(b"\n") != len(records)):
            _write_atomic(self.path, text.encode("utf-8"))
        return kept

    def prefix(self, source: str, stem: str) -> str:
        """``stem``, or ``stem-2``, ``stem-3``... when another source already uses the name."""
        if source not in self.prefixes:
            taken, name, k = set(self.prefixes.values()), stem, 1
            while name in taken:
                k += 1
                name = f"{stem}-{k}"
            self.prefixes[source] = name
        return self.prefixes[source]

    def write(self, source: Path, frame: int, image: np.ndarray, faces: Sequence[Face]) -> int:
        """Cut, save and record the faces of one frame; returns how many were written."""
        key = str(source)
        prefix = self.prefix(key, source.stem)
        entries = []
        for k, face in enumerate(faces):
            matrix = estimate(face.landmarks, self.template, self.size)
            crop = warp(image, matrix, self.size, border=self.border)
            name = f"{prefix}_{frame:06d}_{k}{self.suffix}"
            ok, data = cv2.imencode(self.suffix, crop)
            if not ok:
                raise OSError(f"cannot encode {name}")
            _write_atomic(self.output / name, data.tobytes())
            entries.append({"file": name, **face.to_dict(), "matrix": np.round(matrix, 8).tolist()})
        record = {
            "source": key, "frame": frame, "prefix": prefix, "image_size": list(image.shape[:2]),
            "template": self.template.name, "coverage": self.template.coverage, "size": self.size,
            "faces": entries,
        }  # fmt: skip
        # one line per frame, flushed: a crash loses at most the frame being written
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        self.done.add((key, frame))
        return len(entries)

    def close(self) -> None:
        self._file.close()


def extract(
    inputs: str | Path | Sequence[str | Path],
    output: str | Path,
    detector: Detector,
    selector: FaceSelector | None = None,
    template: str = "mean_face",
    coverage: float | None = None,
    size: int = 256,
    start: int = 0,
    stop: int | None = None,
    step: int = 1,
    recursive: bool = False,
    image_format: str = "png",
    border: str = "constant",
    prefetch: int = 16,
    progress: bool = True,
) -> ExtractReport:
    """Detect, select, align and save every face of ``inputs`` into ``output`` (see the module doc).

    Video frames ``start, start + step, ... < stop`` are read (``stop=None``: to the end).
    """
    if step < 1 or start < 0 or size < 8:
        raise ValueError(f"need step >= 1, start >= 0 and size >= 8, got {step}, {start}, {size}")
    from tqdm.contrib.logging import logging_redirect_tqdm

    from swapper.ops.progress import tqdm_or_log

    selector = selector or FaceSelector()
    selector.prepare(detector)
    items = [inputs] if isinstance(inputs, (str, Path)) else list(inputs)
    report = ExtractReport()
    sources = _collect(items, recursive, report)
    writer = _Writer(Path(output).expanduser(), get_template(template, coverage), size, image_format, border)

    def wanted(index: int) -> bool:
        return index >= start and (stop is None or index < stop) and (index - start) % step == 0

    def frames() -> Iterator[tuple[Path, str, int, np.ndarray | None]]:
        # (source, kind, frame index or RESUMED, BGR image or None when the source is unreadable)
        for path, kind in sources:
            if kind == "image":
                done = (str(path), 0) in writer.done
                yield path, kind, RESUMED if done else 0, None if done else _read_image(path)
            else:
                for index, image in _read_video(
                    path, wanted, lambda i, p=str(path): (p, i) in writer.done, stop
                ):
                    yield path, kind, index, image

    total = 0
    for path, kind in sources:
        if kind == "image":
            total += 1
        else:
            cap = cv2.VideoCapture(str(path))
            total += _frame_count(cap, start, stop, step) if cap.isOpened() else 1
            cap.release()

    per_video: dict[Path, list[int]] = {}  # frames read, frames without a face
    try:
        with logging_redirect_tqdm(), tqdm_or_log(total, "extract", "frame", disable=not progress) as bar:
            for path, kind, index, image in _prefetch(frames(), prefetch):
                bar.update(1)
                if index == RESUMED:
                    report.resumed += 1
                    continue
                if image is None:
                    if kind == "image":
                        log.error("cannot decode image %s (corrupt or not an image): skipped", path)
                    else:
                        log.error("cannot open video %s (corrupt, or a codec OpenCV lacks): skipped", path)
                    report.unreadable.append(str(path))
                    continue
                faces = selector(image, detector(image))
                written = writer.write(path, index, image, faces)
                report.faces += written
                if kind == "image":
                    report.images += 1
                    if not written:
                        log.warning("no face found in %s", path)
                        report.no_face.append(str(path))
                else:
                    report.video_frames += 1
                    counts = per_video.setdefault(path, [0, 0])
                    counts[0] += 1
                    if not written:
                        counts[1] += 1
                        report.no_face.append(f"{path}#{index}")
    finally:
        writer.close()
    for path, (read, empty) in per_video.items():
        log.info("%s: %d frame(s) read, a face on %d, no face on %d", path, read, read - empty, empty)
    log.info("%s", report.summary())
    return report


@hydra.main(version_base="1.3", config_path="../conf", config_name="extract")
def main(cfg: DictConfig) -> None:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before a detector loads torch: see train.py
    inputs = cfg.input
    inputs = list(OmegaConf.to_container(inputs)) if isinstance(inputs, ListConfig) else inputs
    try:
        report = extract(
            inputs, cfg.output, instantiate(cfg.detector), instantiate(cfg.select),
            template=cfg.template, coverage=cfg.coverage, size=cfg.size, start=cfg.frames.start,
            stop=cfg.frames.stop, step=cfg.frames.step, recursive=cfg.recursive,
            image_format=cfg.image_format, border=cfg.border, prefetch=cfg.prefetch, progress=cfg.progress,
        )  # fmt: skip
    except (ImportError, FileNotFoundError, ValueError) as err:
        log.error("%s", err)
        sys.exit(2)
    if not report.ok:
        log.error("nothing was extracted: no input could be read or no face was found")
        sys.exit(1)


if __name__ == "__main__":
    main()
