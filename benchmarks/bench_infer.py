"""Video inference throughput (frames/s) split into decode / detect / align / swap / blend / encode,
and the landmark jitter figure of the smoothing stage, on the shared clip.

    python benchmarks/bench_infer.py                       # both models, 60 frames of the close-up
    python benchmarks/bench_infer.py --frames 30 --models lite --threads 1

Models (random weights: speed does not depend on training, the faces come out as noise):
  lite      the per-pair Deepfakes-lite autoencoder at 64 px (conf defaults)
  simswap   the SimSwap generator at 224 px (conf/generator/simswap.yaml, 9 ID blocks, 512-d identity)
The clip segment starts at frame 85 of ../shared/data/faces/short_hamilton_clip.mp4 (the close-up;
one to three faces a frame), or, without ../shared, a synthetic clip with one rendered face.
Pipeline: YuNet, all faces, One-Euro smoothing, ellipse mask, feather blend, mean/std colour, H.264.
Faces are swapped in batches of 8 (``build_swap(batch_size=8)``); after the stages, the swap stage's
time per face is set beside a plain forward of the same generator on as many random crops.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
CLIP = ROOT.parent / "shared" / "data" / "faces" / "short_hamilton_clip.mp4"
CLOSE_UP = (85, 210)  # the Miranda close-up, frames of the shared clip
BATCH = 8  # faces per generator forward in the swap stage


class RandomIdentity(torch.nn.Module):
    """Stands in for the recogniser: one fixed random unit vector for any face (no weights file needed)."""

    def __init__(self, embedding_dim: int) -> None:
        super().__init__()
        self.embedding_dim = embedding_dim
        self.register_buffer("identity", torch.nn.functional.normalize(torch.randn(1, embedding_dim), dim=1))

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        return self.identity.expand(len(images), -1)


def build_model(name: str) -> tuple[torch.nn.Module, int, str]:
    """The generator that inference runs (a ``SwapGenerator``), its crop size and alignment template."""
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from swapper.models.generators import IdentityInjectionGenerator

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=["experiment=simswap_224"] if name == "simswap" else [])
    if name == "simswap":
        identity = RandomIdentity(cfg.generator.injection.latent_dim)
        generator = IdentityInjectionGenerator(instantiate(cfg.generator), identity)
    else:
        generator = instantiate(cfg.module.generator)
    return generator.eval(), cfg.image_size, generator.default_template


def make_segment(folder: Path, frames: int) -> Path:
    from imageio_ffmpeg import get_ffmpeg_exe

    from swapper.inference.video import probe

    out = folder / "segment.mp4"
    if CLIP.is_file():
        start = CLOSE_UP[0] / float(probe(CLIP).fps) + probe(CLIP).start
        args = ["-ss", f"{start:.3f}", "-i", str(CLIP), "-frames:v", str(frames), "-c:a", "copy"]
    else:
        sys.path.insert(0, str(ROOT / "tests"))  # the synthetic-frame helpers live with the tests
        from synthetic_frames import background, render_frame

        from swapper.data.synthetic import Attributes, FaceRenderer, Identity

        renderer, bg = FaceRenderer(160), background(640, 360)
        images = [
            render_frame(
                Identity.from_seed(1), Attributes(yaw=k % 20 - 10.0), bg, 160, (200 + k, 80), renderer
            )[0]
            for k in range(frames)
        ]
        raw = folder / "frames.raw"
        raw.write_bytes(np.stack(images).tobytes())
        args = [
            "-f",
            "rawvideo",
            "-pix_fmt",
            "bgr24",
            "-s",
            "640x360",
            "-framerate",
            "30000/1001",
            "-i",
            str(raw),
        ]
        args += ["-f", "lavfi", "-i", "sine=frequency=440:duration=10", "-shortest", "-c:a", "aac"]
    cmd = [get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", *args, "-c:v", "libx264", str(out)]
    subprocess.run(cmd, check=True, timeout=300)
    return out


def throughput(name: str, clip: Path, folder: Path) -> dict[str, float]:
    from swapper.faces.detection import YuNetDetector
    from swapper.faces.selection import FaceSelector
    from swapper.inference.align import Aligner
    from swapper.inference.blend import Feather
    from swapper.inference.color import MeanStdTransfer
    from swapper.inference.mask import LandmarkMask
    from swapper.inference.pipeline import FaceSwapPipeline
    from swapper.inference.smoothing import FaceSmoother
    from swapper.inference.swap import build_swap

    model, size, template = build_model(name)
    aligner = Aligner(template, size=size)
    source = (
        np.random.default_rng(0).random((size, size, 3)).astype(np.float32) if name == "simswap" else None
    )
    swap = build_swap(model, source=source, batch_size=BATCH)
    pipeline = FaceSwapPipeline(
        YuNetDetector(), FaceSelector("all"), aligner, swap,
        LandmarkMask("ellipse"), Feather(), MeanStdTransfer(), FaceSmoother(),
    )  # fmt: skip
    start = time.perf_counter()
    report = pipeline.swap_video(clip, folder / f"{name}.mp4", progress=False)
    total = time.perf_counter() - start
    forward = plain_forward(model, swap.identity, size, report.faces)
    return {
        "frames": report.frames,
        "faces": report.faces,
        "total": total,
        "forward": forward,
        **pipeline.timings,
    }


@torch.no_grad()
def plain_forward(model: torch.nn.Module, identity: object, size: int, faces: int) -> float:
    """Seconds of the generator alone on ``faces`` random crops, ``BATCH`` per forward as the swap stage
    runs them (no numpy conversion, no stage): what the swap stage costs at the least."""
    crops = torch.rand(max(faces, 1), 3, size, size)
    model.swap_to(crops[:BATCH], identity)  # warm-up, as the stage's first batch
    start = time.perf_counter()
    for first in range(0, len(crops), BATCH):
        model.swap_to(crops[first : first + BATCH], identity)
    return time.perf_counter() - start


def jitter() -> None:
    """Landmark motion of the largest face over the close-up, raw (per-frame YuNet) and smoothed."""
    from swapper.faces.detection import YuNetDetector, face_size
    from swapper.faces.selection import largest
    from swapper.inference.smoothing import FaceSmoother, landmark_motion, size_angle_jitter
    from swapper.inference.video import VideoReader

    detector, raw = YuNetDetector(), []
    with VideoReader(CLIP) as reader:
        fps = float(reader.info.fps)
        for k, frame in enumerate(reader):
            if k > CLOSE_UP[1]:
                break
            if k >= CLOSE_UP[0]:
                raw.append(largest(detector(frame)))
    if not all(raw):
        print(f"  the detector missed the face in {sum(not r for r in raw)} frame(s); they are skipped")
    raw = [r for r in raw if r]
    points = np.stack([r[0].landmarks5 for r in raw])
    sizes = np.array([face_size(r[0]) for r in raw])
    smoother = FaceSmoother()
    smooth = np.stack([smoother(r, k / fps)[0].landmarks5 for k, r in enumerate(raw)])
    first, last = CLOSE_UP
    print(
        f"jitter: frames {first}-{last} of {CLIP.name}, largest face ({sizes.mean():.0f} px), YuNet 5 points"
    )
    print(
        f"  {'':10s} {'motion px':>10s} {'motion %face':>12s} {'shake px':>9s} {'size %':>7s} {'angle °':>8s}"
    )
    for label, p in (("raw", points), ("smoothed", smooth)):
        step, shake = landmark_motion(p)
        size, angle = size_angle_jitter(p)
        relative = 100 * landmark_motion(p, sizes)[0]
        print(f"  {label:10s} {step:10.2f} {relative:12.2f} {shake:9.2f} {size:7.2f} {angle:8.2f}")
    lag = np.linalg.norm(smooth - points, axis=-1).mean()
    print(f"  smoothed points lie {lag:.2f} px from the raw ones on average (lag + removed jitter)")
    print("  motion: mean frame-to-frame landmark step; shake: mean |p[t] - 2p[t-1] + p[t-2]|;")
    print("  size/angle: mean frame-to-frame change of the face's size (%) and eye-line angle (degrees)")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--simswap-frames", type=int, default=12, help="SimSwap at 224 px is slow on a CPU")
    parser.add_argument("--models", nargs="+", default=["lite", "simswap"], choices=["lite", "simswap"])
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--no-jitter", action="store_true")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), CPU; random weights (speed only)")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for name in args.models:
            frames = args.simswap_frames if name == "simswap" else args.frames
            clip = make_segment(folder, frames)
            t = throughput(name, clip, folder)
            label = "lite 64 px" if name == "lite" else "SimSwap 224 px"
            print(
                f"{label}: {t['frames']} frames, {t['faces']} faces, {t['frames'] / t['total']:.2f} frames/s "
                f"({t['total']:.1f} s) from {clip.name if not CLIP.is_file() else CLIP.name + ' close-up'}"
            )
            for stage in ("decode", "detect", "align", "swap", "blend", "encode"):
                seconds = t.get(stage, 0.0)
                per_frame, share = 1000 * seconds / t["frames"], 100 * seconds / t["total"]
                print(f"  {stage:7s} {per_frame:8.1f} ms/frame  {share:5.1f} %")
            faces = max(t["faces"], 1)
            stage_ms, forward_ms = 1000 * t.get("swap", 0.0) / faces, 1000 * t["forward"] / faces
            print(
                f"  swap stage {stage_ms:.1f} ms/face, the generator's plain forward {forward_ms:.1f} "
                f"ms/face (batches of {BATCH}): stage ÷ forward {stage_ms / max(forward_ms, 1e-9):.2f}"
            )
    if not args.no_jitter:
        if CLIP.is_file():
            jitter()
        else:
            print("jitter: skipped (../shared is absent)")


if __name__ == "__main__":
    sys.exit(main())
