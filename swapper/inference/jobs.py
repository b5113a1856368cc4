"""What an inference run will do: the (kind, source, target) jobs for an input file or folder.

Kinds: ``image`` (a photo: detect, swap, paste back), ``video`` (every frame, audio kept) and
``crops`` (a folder or file of aligned face crops, swapped as they are). ``mode=auto`` picks crops
for extraction output (a ``faces.jsonl`` beside the images) and for images that are all square and
at most ``CROP_MAX_SIDE`` pixels; photos otherwise.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from swapper.faces.images import IMAGE_SUFFIXES
from swapper.inference.folder import crop_targets
from swapper.inference.video import VIDEO_SUFFIXES

__all__ = ["MODES", "Job", "check_outputs", "looks_like_crops", "plan_jobs"]

MODES = ("auto", "frames", "crops")
CROP_MAX_SIDE = 512
_SAMPLE = 16  # images looked at to guess whether a folder holds crops


@dataclass(frozen=True)
class Job:
    kind: str  # image | video | crops
    source: Path
    target: Path


def _square_and_small(path: Path) -> bool:
    try:
        with Image.open(path) as image:
            w, h = image.size
    except OSError:
        return False
    return w == h and w <= CROP_MAX_SIDE


def looks_like_crops(images: list[Path]) -> bool:
    if not images:
        return False
    folder = images[0].parent
    if (folder / "faces.jsonl").is_file():
        return True
    return all(_square_and_small(p) for p in images[:_SAMPLE])


def _video_target(source: Path, output: Path, single: bool) -> Path:
    return output if single and output.suffix.lower() in VIDEO_SUFFIXES else output / f"{source.stem}.mp4"


def _image_target(source: Path, output: Path, single: bool) -> Path:
    return output if single and output.suffix.lower() in IMAGE_SUFFIXES else output / source.name


def _first_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_outputs(jobs: list[Job], source: Path, output: Path) -> None:
    """Raise ``ValueError`` when an output would replace an input (whatever ``overwrite`` says) or cannot
    be written (a file where a folder must be, no write permission)."""
    if output.resolve() == source.resolve():
        raise ValueError(f"output {output} is the input itself: choose another output (inputs are kept)")
    inputs = {j.source.resolve() for j in jobs}
    for job in jobs:
        if job.target.resolve() in inputs:
            raise ValueError(
                f"output {job.target} would replace the input {job.target}: choose another output folder "
                "(inputs are never overwritten, whatever overwrite says)"
            )
    for folder in sorted({j.target.parent for j in jobs}):
        existing = _first_existing(folder)
        if not existing.is_dir():
            raise ValueError(f"output {output}: {existing} is a file, not a folder; choose another output")
        if not os.access(existing, os.W_OK | os.X_OK):
            raise ValueError(f"output {output}: cannot write in {existing} (permission denied)")


def plan_jobs(source: str | Path, output: str | Path, mode: str = "auto") -> list[Job]:
    """The jobs for ``source`` (an image, a video or a folder of them) writing under ``output``; an output
    that would replace an input or cannot be written is refused (``ValueError``)."""
    jobs = _plan(source, output, mode)
    check_outputs(jobs, Path(source).expanduser(), Path(output).expanduser())
    return jobs


def _plan(source: str | Path, output: str | Path, mode: str) -> list[Job]:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    source, output = Path(source).expanduser(), Path(output).expanduser()
    if not source.exists():
        raise FileNotFoundError(f"input {source} does not exist")
    if source.is_file():
        suffix = source.suffix.lower()
        if suffix in VIDEO_SUFFIXES:
            if mode == "crops":
                raise ValueError(f"mode=crops takes aligned face images, not the video {source}")
            return [Job("video", source, _video_target(source, output, True))]
        if suffix not in IMAGE_SUFFIXES:
            images, videos = " ".join(IMAGE_SUFFIXES), " ".join(VIDEO_SUFFIXES)
            raise ValueError(f"{source} is neither an image ({images}) nor a video ({videos})")
        if mode == "crops" or (mode == "auto" and looks_like_crops([source])):
            return [Job("crops", s, t) for s, t in crop_targets(source, output)]
        return [Job("image", source, _image_target(source, output, True))]
    files = sorted(p for p in source.iterdir() if p.is_file() and not p.name.startswith("."))
    images = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
    videos = [p for p in files if p.suffix.lower() in VIDEO_SUFFIXES]
    if not images and not videos:
        raise ValueError(f"folder {source} holds no images or videos")
    if mode == "crops" or (mode == "auto" and not videos and looks_like_crops(images)):
        return [Job("crops", s, t) for s, t in crop_targets(source, output)]
    return [Job("image", p, _image_target(p, output, False)) for p in images] + [
        Job("video", p, _video_target(p, output, False)) for p in videos
    ]
