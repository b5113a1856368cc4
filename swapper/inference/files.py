"""Reading and atomically writing images: a temporary file beside the target, then a rename, so an
interrupted run never leaves a complete-looking broken file."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import cv2
import numpy as np

__all__ = ["publish", "read_bgr", "write_bgr_atomic", "write_image_atomic"]

_JPEG_QUALITY = 95


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def publish(tmp: str | Path, path: str | Path) -> Path:
    """Move a finished temporary file onto ``path`` (atomic on one file system), with the permissions
    a newly created file would have (mkstemp makes it private)."""
    os.chmod(tmp, 0o666 & ~_umask())
    os.replace(tmp, path)
    return Path(path)


def read_bgr(path: str | Path) -> np.ndarray | None:
    """(H, W, 3) uint8 BGR, or None when the file does not decode (np.fromfile: any path encoding)."""
    data = np.fromfile(str(path), dtype=np.uint8)
    return cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None


def write_bgr_atomic(path: str | Path, image: np.ndarray) -> Path:
    """(H, W, 3) uint8 BGR → an image file of ``path``'s format (JPEG at quality 95)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower() or ".png"
    params = [cv2.IMWRITE_JPEG_QUALITY, _JPEG_QUALITY] if suffix in (".jpg", ".jpeg") else []
    ok, encoded = cv2.imencode(suffix, image, params)
    if not ok:
        raise ValueError(f"cannot encode {suffix} images")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(encoded.tobytes())
        publish(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_image_atomic(path: str | Path, image: np.ndarray) -> Path:
    """(H, W, 3) float RGB in [0, 1] → an image file, atomically."""
    bgr = cv2.cvtColor((np.clip(image, 0, 1) * 255).round().astype(np.uint8), cv2.COLOR_RGB2BGR)
    return write_bgr_atomic(path, bgr)
