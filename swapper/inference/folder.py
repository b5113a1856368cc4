"""Crops mode: swap a folder (or one file) of already aligned face crops, writing PNGs.

No detection or pasting back: each crop is resized to the model's ``image_size`` and swapped as
it is (e.g. the output of extraction).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from swapper.faces.images import IMAGE_SUFFIXES, list_images, read_image
from swapper.inference.files import write_image_atomic
from swapper.ops.progress import tqdm_or_log

__all__ = [
    "SwapReport",
    "check_crop_sizes",
    "crop_targets",
    "input_files",
    "swap_folder",
    "write_image_atomic",
]

log = logging.getLogger(__name__)

SwapStage = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray | None]]  # (N, S, S, 3) → swapped, masks


@dataclass
class SwapReport:
    written: list[Path] = field(default_factory=list)
    skipped_existing: list[Path] = field(default_factory=list)
    unreadable: list[Path] = field(default_factory=list)


def input_files(source: str | Path) -> list[Path]:
    source = Path(source).expanduser()
    if source.is_file():
        if source.suffix.lower() not in IMAGE_SUFFIXES:
            raise ValueError(f"{source} is not an image file ({', '.join(IMAGE_SUFFIXES)})")
        return [source]
    if not source.exists():
        raise FileNotFoundError(f"input {source} does not exist")
    return list_images(source)


def crop_targets(source: str | Path, output: str | Path) -> list[tuple[Path, Path]]:
    """(crop, output PNG) pairs: ``output/<stem>.png``, or ``output`` itself for a single input file
    when it has an image suffix."""
    files = input_files(source)
    output = Path(output).expanduser()
    single = len(files) == 1 and Path(source).is_file() and output.suffix.lower() in IMAGE_SUFFIXES
    return [(f, output if single else output / f"{f.stem}.png") for f in files]


def check_crop_sizes(files: list[Path], image_size: int, stretch: bool = False) -> int:
    """Refuse non-square crops (resizing them to ``image_size`` would stretch the face) unless ``stretch``;
    returns how many square crops of another size will be rescaled (a uniform scale keeps the alignment)."""
    rescaled, bad = 0, []
    for f in files:
        try:
            with Image.open(f) as image:
                w, h = image.size
        except OSError:
            continue  # undecodable: reported (and skipped) when it is read
        if w != h and not stretch:
            bad.append(f"{f} is {w}x{h} px")
        elif (w, h) != (image_size, image_size):
            rescaled += 1
    if bad:
        raise ValueError(
            f"{'; '.join(bad[:5])}{' ...' if len(bad) > 5 else ''}: the model takes square aligned crops of "
            f"{image_size}x{image_size} px. Re-extract them, or give stretch_crops=true to stretch them to "
            f"{image_size}x{image_size} (the face is then distorted)"
        )
    if rescaled:
        log.info("rescaling %d square crop(s) to the model's %d px", rescaled, image_size)
    return rescaled


def swap_folder(
    swap: SwapStage,
    source: str | Path,
    output: str | Path,
    image_size: int,
    batch_size: int = 32,
    overwrite: bool = False,
    progress: bool = True,
) -> SwapReport:
    """Swap every aligned face in ``source`` into ``output/<stem>.png`` with the swap stage."""
    report = SwapReport()
    todo = []
    for f, t in crop_targets(source, output):
        if t.exists() and not overwrite:
            report.skipped_existing.append(t)
        else:
            todo.append((f, t))
    bar = tqdm_or_log(len(todo), "swap crops", "img", disable=not progress)
    for start in range(0, len(todo), batch_size):
        chunk = todo[start : start + batch_size]
        images, outs = [], []
        for f, t in chunk:
            image = read_image(f, image_size)
            if image is None:
                report.unreadable.append(f)
                log.warning("cannot decode %s: skipped", f)
                continue
            images.append(image)
            outs.append(t)
        if images:
            swapped, _ = swap(np.stack(images))
            for image, t in zip(swapped, outs, strict=True):
                report.written.append(write_image_atomic(t, image))
        bar.update(len(chunk))
    bar.close()
    return report
