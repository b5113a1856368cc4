"""Training throughput (images/s) and peak memory of the per-pair models, built from the real configs.

    python benchmarks/bench_train.py                    # lite + original on this machine's device
    python benchmarks/bench_train.py --experiments deepfakes_original --steps 3 --batch-size 64

Each experiment runs in its own process so peak memory (max RSS on CPU, max allocated on CUDA)
belongs to that model alone. Images/s counts faces of both identities per optimizer step.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def measure(experiment: str, steps: int, warmup: int, batch_size: int | None, device: str) -> dict:
    import torch
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from swapper.training.common import weighted_sum

    overrides = [f"experiment={experiment}"] + ([f"data.batch_size={batch_size}"] if batch_size else [])
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    module = instantiate(cfg.module).to(device)
    optimizer = module.configure_optimizers()
    optimizer = optimizer[0] if isinstance(optimizer, list | tuple) else optimizer
    optimizer = optimizer[0] if isinstance(optimizer, list) else optimizer
    dataset = instantiate(cfg.data.train)
    bs = cfg.data.batch_size
    items = [dataset[i] for i in range(bs)]
    batch = {k: torch.stack([it[k] for it in items]).to(device) for k in items[0]}
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()

    def step() -> None:
        steps_ = module._steps(batch)
        total, _ = weighted_sum(module.losses, "generator", steps_.values())
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()

    for _ in range(warmup):
        step()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / steps
    params = sum(p.numel() for p in module.parameters())
    peak = (
        torch.cuda.max_memory_allocated() / 2**20
        if device.startswith("cuda")
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    )
    return {
        "experiment": experiment,
        "device": device,
        "params": params,
        "batch_per_identity": bs,
        "s_per_step": seconds,
        "images_per_s": 2 * bs / seconds,
        "peak_mem_mib": peak,
        "threads": torch.get_num_threads(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--experiments", nargs="+", default=["deepfakes_lite", "deepfakes_original"])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=None, help="per identity; default: the config's")
    parser.add_argument("--device", default=None, help="cpu | cuda (default: cuda when available)")
    parser.add_argument("--_child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._child:
        print(json.dumps(measure(args.experiments[0], args.steps, args.warmup, args.batch_size, args.device)))
        return
    if args.device is None:
        import torch

        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    print(
        f"{'experiment':<22}{'device':<8}{'params':>12}{'batch':>7}{'s/step':>9}{'img/s':>9}{'peak MiB':>10}"
    )
    for experiment in args.experiments:
        cmd = [
            sys.executable,
            __file__,
            "--_child",
            "--experiments",
            experiment,
            "--steps",
            str(args.steps),
            "--warmup",
            str(args.warmup),
            "--device",
            args.device,
        ]
        if args.batch_size:
            cmd += ["--batch-size", str(args.batch_size)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
        r = json.loads(out)
        print(
            f"{r['experiment']:<22}{r['device']:<8}{r['params']:>12,}{r['batch_per_identity']:>7}"
            f"{r['s_per_step']:>9.3f}{r['images_per_s']:>9.1f}{r['peak_mem_mib']:>10.0f}"
        )


if __name__ == "__main__":
    main()
