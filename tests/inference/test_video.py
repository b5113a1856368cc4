"""Video in and out: frame count, frame rate, duration and audio survive; faceless frames pass through;
unreadable videos and interrupted writes fail cleanly. Real-clip checks skip without ../shared."""

from __future__ import annotations

import subprocess
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

av = pytest.importorskip("av")
imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")

from synthetic_frames import KnownFaces, background, render_frame  # noqa: E402

from swapper.data.synthetic import Attributes, FaceRenderer, Identity  # noqa: E402
from swapper.inference.align import Aligner  # noqa: E402
from swapper.inference.blend import Feather  # noqa: E402
from swapper.inference.color import NoColorCorrection  # noqa: E402
from swapper.inference.mask import LandmarkMask  # noqa: E402
from swapper.inference.pipeline import FaceSwapPipeline  # noqa: E402
from swapper.inference.smoothing import FaceSmoother, size_angle_jitter  # noqa: E402
from swapper.inference.swap import build_swap  # noqa: E402
from swapper.inference.video import VideoReader, VideoWriter, probe  # noqa: E402
from swapper.models.generators import PerPairGenerator, SwapGenerator  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared"
CLIP = SHARED / "data" / "faces" / "short_hamilton_clip.mp4"
FPS = Fraction(30000, 1001)
FRAMES, WITH_FACE, MISSED = 16, 8, 4  # the face leaves after frame 8; the detector misses it in frame 4


class Negative(PerPairGenerator):
    """A stand-in per-pair model: 'swaps' a face to its colour negative."""

    def __init__(self) -> None:
        SwapGenerator.__init__(self)
        self.w = torch.nn.Parameter(torch.zeros(()))

    def decode(self, faces, identity):
        return 1 - faces + self.w, None


def _ffmpeg(*args: str, stdin: bytes | None = None) -> None:
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", *args]
    subprocess.run(cmd, input=stdin, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> tuple[Path, list[list]]:
    """A 160×120 H.264 clip at 29.97 fps with a 440 Hz AAC tone, made by ffmpeg itself; a face moves
    across the first frames; the video starts 0.2 s after the audio. Returns the clip and the faces a
    detector reports in each frame."""
    folder = tmp_path_factory.mktemp("clip")
    renderer, identity = FaceRenderer(56), Identity.from_seed(3)
    frames, faces = [], []
    for k in range(FRAMES):
        bg = background(160, 120, 0)
        if k < WITH_FACE:
            frame, face = render_frame(identity, Attributes(yaw=3.0 * k), bg, 56, (30 + 4 * k, 30), renderer)
            frames.append(frame), faces.append([] if k == MISSED else [face])
        else:
            frames.append(bg), faces.append([])
    path = folder / "tone.mp4"
    video_in = [
        "-itsoffset",
        "0.2",
        "-f",
        "rawvideo",
        "-pix_fmt",
        "bgr24",
        "-s",
        "160x120",
        "-framerate",
        str(FPS),
        "-i",
        "-",
    ]
    tone = ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100:duration=0.6"]
    encode = ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", str(path)]
    _ffmpeg(*video_in, *tone, *encode, stdin=np.stack(frames).tobytes())
    return path, faces


def _pipeline(faces) -> FaceSwapPipeline:
    return FaceSwapPipeline(
        KnownFaces(faces), lambda image, found: list(found), Aligner("synthetic", size=32),
        build_swap(Negative()), LandmarkMask("ellipse"), Feather(), NoColorCorrection(),
        FaceSmoother(max_gap=1),
    )  # fmt: skip


def _frames(path: Path) -> np.ndarray:
    with VideoReader(path) as reader:
        return np.stack(list(reader))


def _audio_seconds(path: Path) -> float:
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        return float(stream.duration * stream.time_base)


def _video_delay(path: Path) -> float:
    """Seconds from the first audio sample to the first video frame (A/V sync)."""
    with av.open(str(path)) as container:
        video, audio = container.streams.video[0], container.streams.audio[0]
        return float(video.start_time * video.time_base - audio.start_time * audio.time_base)


def test_swapped_video_keeps_frames_rate_duration_and_audio(clip, tmp_path):
    source, faces = clip
    target = tmp_path / "out" / "swapped.mp4"
    report = _pipeline(faces).swap_video(source, target, progress=False)
    before, after = probe(source), probe(target)
    # the missed frame is bridged by carry-over, and so is one frame after the face left (max_gap=1)
    assert (report.frames, report.frames_with_faces, report.faces) == (FRAMES, WITH_FACE + 1, WITH_FACE + 1)
    assert after.frames == before.frames == FRAMES and after.fps == before.fps == FPS
    assert after.duration == pytest.approx(before.duration, abs=1e-3)
    assert (after.codec, after.audio_codec) == ("h264", "aac")
    assert _audio_seconds(target) == pytest.approx(_audio_seconds(source), abs=1e-3)
    assert _video_delay(source) == pytest.approx(0.2, abs=0.03)
    assert _video_delay(target) == pytest.approx(_video_delay(source), abs=1e-3)  # still in sync
    original, swapped = _frames(source).astype(float), _frames(target).astype(float)
    assert len(swapped) == FRAMES
    face_change = np.abs(swapped[:WITH_FACE] - original[:WITH_FACE]).max(-1)  # (T, H, W)
    assert (face_change > 60).mean(axis=(1, 2)).min() > 0.02  # every face frame got a new face
    # faceless frames pass through: only the codec's noise, never a changed region
    passed = np.abs(swapped[WITH_FACE + 1 :] - original[WITH_FACE + 1 :]).max(-1)
    assert (passed > 40).mean() < 1e-3 and passed.mean() < 4
    assert [p.name for p in target.parent.iterdir()] == ["swapped.mp4"]  # no temporary file left


def test_video_without_audio_gets_none_and_audio_can_be_dropped(clip, tmp_path):
    source, faces = clip
    silent = tmp_path / "silent.mp4"
    frames = _frames(source)
    with VideoWriter(silent, 160, 120, FPS) as writer:
        for frame in frames:
            writer.write(frame)
    assert probe(silent).audio_codec is None and probe(silent).frames == FRAMES
    out = tmp_path / "out.mp4"
    _pipeline(faces).swap_video(silent, out, progress=False)
    assert probe(out).audio_codec is None
    _pipeline(faces).swap_video(source, tmp_path / "muted.mp4", audio=False, progress=False)
    assert probe(tmp_path / "muted.mp4").audio_codec is None


def test_unreadable_video_is_a_clear_error(tmp_path):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"not a video at all" * 100)
    with pytest.raises(ValueError, match="cannot read video"):
        probe(bad)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        VideoReader(tmp_path / "missing.mp4")


def test_interrupted_write_leaves_no_file(tmp_path):
    target = tmp_path / "partial.mp4"
    with pytest.raises(RuntimeError, match="interrupted"):
        with VideoWriter(target, 64, 48, 25) as writer:
            writer.write(np.zeros((48, 64, 3), np.uint8))
            raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="frames must be"):
        with VideoWriter(target, 64, 48, 25) as writer:
            writer.write(np.zeros((50, 64, 3), np.uint8))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_shared_clip_segment_keeps_its_audio_and_smoothing_steadies_the_face(tmp_path):
    if not CLIP.is_file():
        pytest.skip("../shared is absent")
    from swapper.faces.detection import YuNetDetector
    from swapper.faces.selection import largest

    segment = tmp_path / "closeup.mp4"  # 1.5 s of the Miranda close-up, with its audio
    start = f"{100 / 29.97 + probe(CLIP).start:.3f}"  # frame 100; ffmpeg's -ss counts from the file's start
    _ffmpeg("-ss", start, "-i", str(CLIP), "-t", "1.5", "-c:v", "libx264", "-c:a", "copy", str(segment))
    info = probe(segment)
    assert info.audio_codec == "aac" and 40 <= info.frames <= 50
    detector = YuNetDetector()
    raw = [largest(detector(frame)) for frame in _frames(segment)]
    assert all(raw)  # a face in every frame of the close-up
    smoother = FaceSmoother()
    smooth = [smoother(faces, k / float(info.fps))[0] for k, faces in enumerate(raw)]
    size_raw, angle_raw = size_angle_jitter(np.stack([f[0].landmarks5 for f in raw]))
    size_smooth, angle_smooth = size_angle_jitter(np.stack([f.landmarks5 for f in smooth]))
    assert size_smooth < 0.5 * size_raw and angle_smooth < 0.5 * angle_raw
    pipeline = FaceSwapPipeline(
        detector, lambda image, found: largest(found), Aligner("mean_face", size=32), build_swap(Negative()),
        LandmarkMask("ellipse"), Feather(), NoColorCorrection(), FaceSmoother(),
    )  # fmt: skip
    out = tmp_path / "swapped.mp4"
    report = pipeline.swap_video(segment, out, progress=False)
    assert report.frames == info.frames == probe(out).frames and report.faces >= info.frames
    assert probe(out).audio_codec == "aac"
    assert _audio_seconds(out) == pytest.approx(_audio_seconds(segment), abs=1e-3)
    assert _video_delay(out) == pytest.approx(_video_delay(segment), abs=1e-3)


def test_the_expression_warp_brings_a_frozen_swaps_mouth_back_to_life(tmp_path):
    """A model that froze (every swap is one calm face of the speaker: the issue's "frozen mask") on a real
    talking head: the expression stage makes the output's mouth open and close with the speaker's again."""
    talking = SHARED / "data" / "talking_heads" / "person_a.mp4"
    if not talking.is_file():
        pytest.skip("../shared is absent")
    pytest.importorskip("dlib")
    from swapper.faces.detection import DlibLandmarker, YuNetDetector
    from swapper.faces.selection import largest
    from swapper.inference.expression import ExpressionWarp
    from swapper.metrics.real_faces import mouth_aspect_ratio, pearson

    segment = tmp_path / "talking.mp4"  # 2 s of person A, talking with her mouth wide open at times
    _ffmpeg("-ss", f"{940 / 30 + probe(talking).start:.3f}", "-i", str(talking), "-t", "2", "-c:v", "libx264",
            "-an", str(segment))  # fmt: skip
    detector = YuNetDetector(landmarker=DlibLandmarker())

    aligner = Aligner("mean_face", size=64)
    calm = _frames(segment)[35]  # her face with the mouth closed, the eyes ahead
    frozen = aligner(calm, largest(detector(calm))[0].landmarks)[0][..., ::-1].astype(np.float32) / 255

    def mouth(video: Path) -> np.ndarray:
        return np.array(
            [mouth_aspect_ratio(largest(detector(f))[0].landmarks68[None])[0] for f in _frames(video)]
        )

    said = mouth(segment)
    assert said.std() > 0.05  # the speaker's mouth moves
    for warp, low, high in ((None, -1.0, 0.3), (ExpressionWarp(), 0.8, 1.0)):
        out = tmp_path / f"{warp is not None}.mp4"
        pipeline = FaceSwapPipeline(
            detector, lambda image, found: largest(found), aligner,
            lambda crops: (np.stack([frozen] * len(crops)), None),
            LandmarkMask("hull"), Feather(), NoColorCorrection(), FaceSmoother(), expression=warp,
        )  # fmt: skip
        pipeline.swap_video(segment, out, audio=False, progress=False)
        assert low <= pearson(mouth(out), said) <= high
