"""Synthetic face renderer throughput on one core: prints images/s per size (not a test).

Run from the repository root: ``PYTHONPATH=. python benchmarks/bench_synthetic.py [--sizes 64 128]``.
OpenCV is limited to one thread, so a figure is what one DataLoader worker delivers.
"""

from __future__ import annotations

import argparse
import time

import cv2
import numpy as np

from swapper.data.synthetic import Attributes, FaceRenderer, Identity


def images_per_second(size: int, seconds: float, supersample: int = 2) -> float:
    renderer = FaceRenderer(size=size, supersample=supersample)
    rng = np.random.default_rng(0)
    identities = [Identity.sample(rng) for _ in range(64)]  # covers every hair/beard/glasses kind
    attributes = [Attributes.sample(rng) for _ in range(256)]
    for i in range(20):  # warm-up
        renderer.render(identities[i % 64], attributes[i])
    count, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for _ in range(50):
            renderer.render(identities[count % 64], attributes[count % 256])
            count += 1
    return count / elapsed


def sample_per_second(seconds: float) -> float:
    """Cost of drawing the parameters themselves (the dataset does this per item)."""
    rng = np.random.default_rng(0)
    count, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for _ in range(200):
            Attributes.sample(rng)
            count += 1
    return count / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--supersample", type=int, default=2)
    args = parser.parse_args()
    cv2.setNumThreads(1)
    for size in args.sizes:
        rate = images_per_second(size, args.seconds, args.supersample)
        label = f"render {size:4d} px (supersample {args.supersample})"
        print(f"{label}: {rate:8.0f} images/s, {1e3 / rate:.2f} ms each")
    print(f"Attributes.sample: {sample_per_second(args.seconds / 3):8.0f} /s")


if __name__ == "__main__":
    main()
