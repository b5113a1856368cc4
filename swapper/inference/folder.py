"""Swap a folder (or one file) of aligned face crops with a per-pair model, writing PNGs."""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm.auto import tqdm

from swapper.data.datasets import IMAGE_SUFFIXES, list_images, read_image, to_tensor

log = logging.getLogger(__name__)


@dataclass
class SwapReport:
    written: list[Path] = field(default_factory=list)
    skipped_existing: list[Path] = field(default_factory=list)
    unreadable: list[Path] = field(default_factory=list)


def write_image_atomic(path: Path, image: np.ndarray) -> None:
    """(H, W, 3) float RGB in [0, 1] → PNG, written to a temporary file then renamed into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    bgr = cv2.cvtColor((np.clip(image, 0, 1) * 255).round().astype(np.uint8), cv2.COLOR_RGB2BGR)
    ok, encoded = cv2.imencode(path.suffix or ".png", bgr)
    if not ok:
        raise ValueError(f"cannot encode {path.suffix} images")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(encoded.tobytes())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def input_files(source: str | Path) -> list[Path]:
    source = Path(source).expanduser()
    if source.is_file():
        if source.suffix.lower() not in IMAGE_SUFFIXES:
            raise ValueError(f"{source} is not an image file ({', '.join(IMAGE_SUFFIXES)})")
        return [source]
    if not source.exists():
        raise FileNotFoundError(f"input {source} does not exist")
    return list_images(source)


@torch.no_grad()
def swap_folder(
    model: torch.nn.Module,
    source: str | Path,
    output: str | Path,
    image_size: int,
    direction: str = "a2b",
    batch_size: int = 32,
    overwrite: bool = False,
    progress: bool = True,
) -> SwapReport:
    """Swap every aligned face in ``source`` into ``output/<stem>.png`` (a file for a single input)."""
    files = input_files(source)
    output = Path(output).expanduser()
    single = len(files) == 1 and Path(source).is_file() and output.suffix.lower() in IMAGE_SUFFIXES
    targets = [output if single else output / f"{f.stem}.png" for f in files]
    report = SwapReport()
    todo = []
    for f, t in zip(files, targets, strict=True):
        if t.exists() and not overwrite:
            report.skipped_existing.append(t)
        else:
            todo.append((f, t))
    device = next(model.parameters()).device
    bar = tqdm(total=len(todo), desc=f"swap {direction}", unit="img", disable=not progress)
    for start in range(0, len(todo), batch_size):
        chunk = todo[start : start + batch_size]
        images, outs = [], []
        for f, t in chunk:
            image = read_image(f, image_size)
            if image is None:
                report.unreadable.append(f)
                log.warning("cannot decode %s: skipped", f)
                continue
            images.append(to_tensor(image))
            outs.append(t)
        if images:
            swapped = model.swap(torch.stack(images).to(device), direction).float().cpu().numpy()
            for image, t in zip(swapped, outs, strict=True):
                write_image_atomic(t, image.transpose(1, 2, 0))
                report.written.append(t)
        bar.update(len(chunk))
    bar.close()
    return report
