"""Video in and out: decode with PyAV (FFmpeg's libraries), encode H.264 with the ffmpeg binary that
``imageio-ffmpeg`` ships, copying the source's audio in the same pass (``pip install swapper[video]``).

Frames are (H, W, 3) uint8 BGR, as the detectors and OpenCV take them. The writer encodes into a
hidden temporary file beside the output and renames it into place only when ffmpeg succeeded, so
an interrupted run never leaves a complete-looking broken video.
"""

from __future__ import annotations

import logging
import os
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from swapper.inference.files import publish

__all__ = ["VIDEO_SUFFIXES", "VideoInfo", "VideoReader", "VideoWriter", "ffmpeg_exe", "probe"]

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv")
_HINT = "pip install swapper[video] (PyAV and imageio-ffmpeg)"
# audio codecs that an MP4/MOV container takes as they are; others are re-encoded to AAC
_MP4_AUDIO = {"aac", "mp3", "ac3", "eac3", "alac", "opus"}


def _av():
    try:
        import av
    except ImportError as err:  # pragma: no cover - depends on the installed extras
        raise ImportError(f"reading videos needs PyAV: {_HINT}") from err
    return av


def ffmpeg_exe() -> str:
    """The ffmpeg binary inside the imageio-ffmpeg wheel (``IMAGEIO_FFMPEG_EXE`` overrides it)."""
    try:
        import imageio_ffmpeg
    except ImportError as err:  # pragma: no cover
        raise ImportError(f"writing videos needs imageio-ffmpeg: {_HINT}") from err
    return imageio_ffmpeg.get_ffmpeg_exe()


@dataclass(frozen=True)
class VideoInfo:
    path: Path
    width: int
    height: int
    fps: Fraction  # average frame rate of the video stream (exact, e.g. 30000/1001)
    frames: int  # from the container; may be an estimate (fps × duration) when it holds none
    duration: float  # of the video stream, seconds
    codec: str
    audio_codec: str | None  # first audio stream, None when there is none
    start: float = 0.0  # seconds from the file's start to the first video frame (audio may lead)

    def describe(self) -> str:
        audio = f", audio {self.audio_codec}" if self.audio_codec else ", no audio"
        return (
            f"{self.width}x{self.height} {self.codec} {float(self.fps):.3f} fps, "
            f"{self.frames} frames, {self.duration:.2f} s{audio}"
        )


def _open(path: Path):
    av = _av()
    if not path.is_file():
        raise FileNotFoundError(f"video {path} does not exist")
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError, ValueError) as err:
        raise ValueError(f"cannot read video {path}: {err}") from err
    if not container.streams.video:
        container.close()
        raise ValueError(f"{path} holds no video stream")
    return container


def _info(path: Path, container) -> VideoInfo:
    stream = container.streams.video[0]
    fps = stream.average_rate or stream.base_rate or stream.guessed_rate
    if not fps:
        raise ValueError(f"{path}: the video stream has no frame rate")
    fps = Fraction(fps)
    if stream.duration is not None and stream.time_base is not None:
        duration = float(stream.duration * stream.time_base)
    else:
        duration = (container.duration or 0) / 1_000_000
    frames = stream.frames or int(round(duration * fps))
    audio = container.streams.audio[0].codec_context.name if container.streams.audio else None
    start = 0.0
    if stream.start_time is not None and stream.time_base is not None:
        start = max(
            float(stream.start_time * stream.time_base) - (container.start_time or 0) / 1_000_000, 0.0
        )
    ctx = stream.codec_context
    return VideoInfo(path, ctx.width, ctx.height, fps, frames, duration, ctx.name, audio, start)


def probe(path: str | Path) -> VideoInfo:
    """Size, frame rate, frame count, duration and audio of a video; ValueError when unreadable."""
    path = Path(path).expanduser()
    container = _open(path)
    try:
        return _info(path, container)
    finally:
        container.close()


class VideoReader:
    """Iterate the frames of a video as (H, W, 3) uint8 BGR arrays; ``info`` describes it."""

    def __init__(self, path: str | Path, threads: int = 0) -> None:
        self.path = Path(path).expanduser()
        self._container = _open(self.path)
        self.info = _info(self.path, self._container)
        stream = self._container.streams.video[0]
        stream.thread_type = "AUTO"  # frame + slice threads inside FFmpeg
        if threads:
            stream.thread_count = threads
        self._stream = stream

    def __iter__(self) -> Iterator[np.ndarray]:
        av = _av()
        count = 0
        try:
            for frame in self._container.decode(self._stream):
                yield frame.to_ndarray(format="bgr24")
                count += 1
        except av.error.FFmpegError as err:
            if not count:
                raise ValueError(f"cannot decode video {self.path}: {err}") from err
            log.warning("%s: decoding stopped after %d frames: %s", self.path, count, err)
        if not count:
            raise ValueError(f"video {self.path} holds no decodable frame")

    def close(self) -> None:
        self._container.close()

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class VideoWriter:
    """Encode BGR frames to H.264 (``codec``, ``crf``, ``preset``: libx264's) at ``fps``, with the
    audio of ``audio_from`` (a video or audio file) copied when it has any. ``start``: seconds the
    first frame comes after the start of ``audio_from`` (``VideoInfo.start``), which keeps the
    audio in sync when the source's video starts later than its audio.

    ``write(frame)`` pipes raw frames to ffmpeg; ``close()`` waits for it and renames the
    temporary file to ``path``; ``abort()`` (or an exception inside ``with``) removes it.
    """

    def __init__(
        self,
        path: str | Path,
        width: int,
        height: int,
        fps: Fraction | float,
        audio_from: str | Path | None = None,
        codec: str = "libx264",
        crf: int = 18,
        preset: str = "fast",
        pix_fmt: str = "yuv420p",
        start: float = 0.0,
    ) -> None:
        self.path = Path(path).expanduser()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.size = (int(height), int(width))
        fps = Fraction(fps).limit_denominator(1_000_000)
        fd, tmp = tempfile.mkstemp(
            dir=self.path.parent, prefix=f".{self.path.stem}.", suffix=self.path.suffix
        )
        os.close(fd)  # ffmpeg writes the file (-y): the name keeps the suffix that picks the container
        self._tmp = Path(tmp)
        audio_codec = None
        if audio_from is not None:
            audio_codec = (
                probe(audio_from).audio_codec if Path(audio_from).suffix.lower() in VIDEO_SUFFIXES else "?"
            )
        cmd = [
            ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-itsoffset", f"{start:.6f}",
            "-f", "rawvideo", "-pix_fmt", "bgr24", "-s", f"{width}x{height}", "-framerate", f"{fps}",
            "-i", "-",
        ]  # fmt: skip
        if audio_codec is not None:
            cmd += ["-i", str(audio_from), "-map", "0:v:0", "-map", "1:a?"]
        if width % 2 or height % 2:  # 4:2:0 chroma needs even sides: pad one black row / column
            cmd += ["-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2"]
        cmd += ["-c:v", codec, "-pix_fmt", pix_fmt, "-fps_mode", "passthrough"]  # one frame out per frame in
        if codec.startswith("libx264"):
            cmd += ["-crf", str(crf), "-preset", preset]
        if audio_codec is not None:
            container_takes_it = self.path.suffix.lower() in (".mkv",) or audio_codec in _MP4_AUDIO
            cmd += ["-c:a", "copy"] if container_takes_it else ["-c:a", "aac", "-b:a", "192k"]
        if self.path.suffix.lower() in (".mp4", ".mov", ".m4v"):
            cmd += ["-movflags", "+faststart"]
        cmd.append(str(self._tmp))
        self.command = cmd
        self._stderr = tempfile.TemporaryFile()
        self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=self._stderr)
        self.frames = 0
        self._closed = False

    def _error(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace").strip()[-2000:]

    def write(self, frame: np.ndarray) -> None:
        if frame.shape[:2] != self.size or frame.dtype != np.uint8:
            raise ValueError(f"frames must be {self.size} uint8 BGR, got {frame.shape} {frame.dtype}")
        try:
            self._proc.stdin.write(np.ascontiguousarray(frame).data)
        except BrokenPipeError as err:
            self._proc.wait()
            raise RuntimeError(f"ffmpeg stopped while writing {self.path}: {self._error()}") from err
        self.frames += 1

    def close(self) -> Path:
        """Finish encoding and move the video into place; RuntimeError (and no file) if ffmpeg failed."""
        try:
            self._proc.stdin.close()
        except BrokenPipeError:
            pass
        code = self._proc.wait()
        if code != 0 or not self._tmp.is_file() or self._tmp.stat().st_size == 0:
            message = self._error()
            self.abort()
            raise RuntimeError(f"ffmpeg failed to write {self.path} (exit {code}): {message}")
        self._stderr.close()
        self._closed = True
        return publish(self._tmp, self.path)

    def abort(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        self._tmp.unlink(missing_ok=True)
        if not self._stderr.closed:
            self._stderr.close()

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()
        elif not self._closed:
            self.close()
