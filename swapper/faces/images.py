"""Image files on disk: which suffixes count as images, listing a folder of them, reading one."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

__all__ = ["IMAGE_SUFFIXES", "list_images", "read_image"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


def list_images(folder: str | Path) -> list[Path]:
    """Image files directly inside ``folder``, sorted; clear errors for a missing or empty folder."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(f"face folder {folder} does not exist (or is not a folder)")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise ValueError(
            f"face folder {folder} holds no images (looked for {', '.join(IMAGE_SUFFIXES)}); "
            "point it at a folder of aligned face crops, e.g. the output of extraction"
        )
    return files


def read_image(path: str | Path, image_size: int | None = None) -> np.ndarray | None:
    """Read an image as (H, W, 3) float32 RGB in [0, 1], resized to a square ``image_size``.

    Returns ``None`` for a file that cannot be decoded, so callers can skip and count it.
    """
    data = np.fromfile(str(path), dtype=np.uint8)
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if bgr is None:
        return None
    if image_size is not None and bgr.shape[:2] != (image_size, image_size):
        interp = cv2.INTER_AREA if bgr.shape[0] > image_size else cv2.INTER_CUBIC
        bgr = cv2.resize(bgr, (image_size, image_size), interpolation=interp)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0
