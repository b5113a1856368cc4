"""Paired speed: swapper's training step against plain-PyTorch twins of the reference training code,
alternating in one process, same architecture, batch and optimizer (issue 14).

    python benchmarks/bench_paired.py                      # Deepfakes original + SimSwap 224, 5 rounds
    python benchmarks/bench_paired.py --quick              # small batches, 2 rounds: a check in ~2 minutes
    python benchmarks/bench_paired.py --workloads main --also-fp32

Workloads:
  deepfakes  the original Deepfakes step: 64 px, batch 64 per identity, full widths (conf/encoder/deepfakes,
             conf/decoder/deepfakes), random warp, L1, Adam 5e-5 (0.5, 0.999); the twin runs fp32 with
             torch's default Adam (per-tensor loop on CPU), as the reference does.
  simswap    SimSwap's iteration at 224 px, batch 4: generator (9 ID blocks), 2-scale BatchNorm PatchGAN,
             ArcFace-50 (random weights), hinge + gradient penalty + weak feature matching + identity +
             same-identity L1. The twin follows the public SimSwap train.py: a D step (its own generator
             forward, D on the detached fake and on the real batch, the penalty on every step), then a G step
             (a new source embedding and generator forward, D's weights still trainable, and
             ``netD.get_feature`` on the real batch again for feature matching), fp32.
  main       `python train.py`'s own step (Deepfakes-lite, batch 8) against its twin: the default job's gain.

The swapper side is the LightningModule built from the experiment config (`trainer.fit` with
`max_steps`, a minimal Trainer: no logger, checkpoints or validation) at the precision the config
chooses on this machine (`trainer.precision`, conf/trainer/cpu.yaml), with the configured (fused)
Adam. Both sides use the same network classes (the twins are not Lightning code, the networks are
the architectures the twins need; their keys and sizes match the public models, tests/reference).
Per step: wall time of the step alone (data loading excluded on both sides; the random warp is
inside both steps). A round times ``--steps`` steps of each side after one untimed warm-up step;
rounds alternate which side goes first. Printed: per-side medians over all timed steps and
reference ÷ swapper.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import lightning as L  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from hydra.core.global_hydra import GlobalHydra  # noqa: E402
from hydra.core.hydra_config import HydraConfig  # noqa: E402
from hydra.utils import instantiate  # noqa: E402
from omegaconf import DictConfig, open_dict  # noqa: E402
from torch import Tensor, nn  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

WORKLOADS = {  # name -> (overrides, quick overrides)
    "deepfakes": (["experiment=deepfakes_original"], ["data.batch_size=8"]),
    "simswap": (["experiment=simswap_224", "pretrained=random", "data.batch_size=4"], ["data.batch_size=1"]),
    "main": ([], []),
}
COMMON = ["logger=none", "data.num_workers=0", "callbacks=none"]


def compose_config(overrides: list[str], output_dir: str) -> DictConfig:
    """``conf/train.yaml`` composed as `python train.py <overrides>` would, run directory ``output_dir``."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = output_dir
        cfg.hydra.job.num = 0
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg.hydra
    return cfg


def fixed_batch(cfg: DictConfig, device: torch.device) -> dict[str, Tensor]:
    dataset = instantiate(cfg.data.train)
    items = [dataset[i] for i in range(cfg.data.batch_size)]
    return {k: torch.stack([torch.as_tensor(it[k]) for it in items]).to(device) for k in items[0]}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


# ---- swapper ------------------------------------------------------------------------------------
class StepTimer(L.Callback):
    """Seconds of each training step (batch start to batch end: no data loading)."""

    def __init__(self) -> None:
        self.seconds: list[float] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        _sync(pl_module.device)
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        _sync(pl_module.device)
        self.seconds.append(time.perf_counter() - self._start)


def swapper_side(cfg: DictConfig, device: torch.device, precision: str | None) -> tuple[Callable, str]:
    """A function running ``n`` timed steps of the configured module with ``trainer.fit``; the precision."""
    if precision is None and device.type == "cuda":  # what trainer=gpu would choose
        from swapper.ops.precision import default_precision

        precision = default_precision("gpu")
    elif precision is None:
        node = cfg.trainer.precision
        precision = instantiate(node) if isinstance(node, DictConfig) else str(node)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module = instantiate(cfg.module)
    datamodule = instantiate(cfg.data)

    def run(steps: int) -> list[float]:
        timer = StepTimer()
        trainer = L.Trainer(
            accelerator="gpu" if device.type == "cuda" else "cpu",
            devices=1,
            precision=precision,
            max_steps=steps + 1,
            limit_val_batches=0,
            num_sanity_val_steps=0,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            callbacks=[timer],
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trainer.fit(module, datamodule=datamodule)
        return timer.seconds[1:]

    return run, precision


# ---- the twins --------------------------------------------------------------------------------
class DeepfakesTwin:
    """The original Deepfakes step in plain PyTorch: shared encoder, a decoder per identity, L1 on both
    identities, one Adam over everything (torch defaults: no ``foreach``/``fused``), fp32."""

    def __init__(self, cfg: DictConfig, batch: dict[str, Tensor], device: torch.device) -> None:
        self.encoder = instantiate(cfg.encoder).to(device)
        self.decoders = nn.ModuleList([instantiate(cfg.decoder), instantiate(cfg.decoder)]).to(device)
        self.warp = instantiate(cfg.augmentation).to(device)
        params = [*self.encoder.parameters(), *self.decoders.parameters()]
        opt = cfg.optimizer.generator
        self.optimizer = torch.optim.Adam(params, lr=opt.lr, betas=tuple(opt.betas))
        self.faces = [batch["a"], batch["b"]]

    def step(self) -> None:
        loss = 0.0
        for faces, decoder in zip(self.faces, self.decoders, strict=True):
            with torch.no_grad():
                warped, target = self.warp(faces)
            loss = loss + F.l1_loss(decoder(self.encoder(warped)), target)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()


class SimSwapTwin:
    """One iteration of the public SimSwap train.py (D step, then G step, each with its own generator
    forward and source embedding) with the paper's 2-scale PatchGAN and the gradient penalty, fp32."""

    def __init__(self, cfg: DictConfig, batch: dict[str, Tensor], device: torch.device) -> None:
        from swapper.models.pretrained.arcface import IResNet

        self.generator = instantiate(cfg.generator).to(device)
        self.discriminator = instantiate(cfg.discriminator).to(device)
        self.arcface = IResNet(50).to(device).eval().requires_grad_(False)
        g, d = cfg.optimizer.generator, cfg.optimizer.discriminator
        self.opt_g = torch.optim.Adam(self.generator.parameters(), lr=g.lr, betas=tuple(g.betas))
        self.opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=d.lr, betas=tuple(d.betas))
        losses = cfg.loss
        self.w_id, self.w_rec = losses.identity.weight, losses.reconstruction_same_identity.weight
        self.w_fm, self.fm_layers = losses.weak_feature_matching.weight, losses.weak_feature_matching.layers
        self.w_gp = losses.gradient_penalty.weight
        self.source, self.target = batch["source"], batch["target"]
        self.same = batch["same_identity"].bool()

    def embed(self, images: Tensor) -> Tensor:
        # the reference: bicubic resize to 112, ArcFace, L2-normalise
        return F.normalize(self.arcface(F.interpolate(images, size=(112, 112), mode="bicubic")), dim=1)

    def step(self) -> None:
        source, target, d = self.source, self.target, self.discriminator
        # D step (the reference's `interval == 1`)
        latent = self.embed(source)
        fake = self.generator(target, latent)  # with a graph, as the reference
        fake_logits, _ = d(fake.detach())
        real_logits, _ = d(target)
        loss_d = sum(F.relu(1 + f).mean() for f in fake_logits) + sum(
            F.relu(1 - r).mean() for r in real_logits
        )
        alpha = torch.rand(len(target), 1, 1, 1, device=target.device)
        mixed = (alpha * target + (1 - alpha) * fake.detach()).requires_grad_(True)
        logits, _ = d(mixed)
        (grad,) = torch.autograd.grad(sum(x.sum() for x in logits), mixed, create_graph=True)
        loss_d = loss_d + self.w_gp * (grad.flatten(1).norm(dim=1) - 1).square().mean()
        self.opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        self.opt_d.step()
        # G step (`interval == 0`)
        latent = self.embed(source)
        fake = self.generator(target, latent)
        fake_logits, fake_features = d(fake)
        loss_g = -sum(f.mean() for f in fake_logits)
        loss_g = loss_g + self.w_id * (1 - F.cosine_similarity(self.embed(fake), latent)).mean()
        _, real_features = d(target)  # netD.get_feature(real)
        k = self.fm_layers
        fm = [
            sum(F.l1_loss(f, r.detach()) for f, r in zip(fs[-k - 1 : -1], rs[-k - 1 : -1], strict=True))
            for fs, rs in zip(fake_features, real_features, strict=True)
        ]
        loss_g = loss_g + self.w_fm * sum(fm) / len(fm)
        if self.same.any():
            loss_g = loss_g + self.w_rec * F.l1_loss(fake[self.same], target[self.same])
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        self.opt_g.step()


def twin_side(workload: str, cfg: DictConfig, device: torch.device) -> Callable:
    batch = fixed_batch(cfg, device)
    twin = (SimSwapTwin if workload == "simswap" else DeepfakesTwin)(cfg, batch, device)

    def run(steps: int) -> list[float]:
        seconds = []
        for i in range(steps + 1):
            _sync(device)
            start = time.perf_counter()
            twin.step()
            _sync(device)
            if i:  # the first step of a round warms up (allocations, oneDNN primitive cache)
                seconds.append(time.perf_counter() - start)
        return seconds

    return run


# ---- main -------------------------------------------------------------------------------------
def measure(workload: str, args: argparse.Namespace, device: torch.device) -> dict[str, object]:
    overrides, quick = WORKLOADS[workload]
    with tempfile.TemporaryDirectory() as tmp:
        cfg = compose_config([*overrides, *COMMON, *(quick if args.quick else [])], tmp)
        torch.manual_seed(0)
        sides: dict[str, Callable] = {"reference": twin_side(workload, cfg, device)}
        sides["swapper"], precision = swapper_side(cfg, device, args.precision)
        if args.also_fp32:
            sides["swapper fp32"], _ = swapper_side(cfg, device, "32-true")
        times: dict[str, list[float]] = {name: [] for name in sides}
        for r in range(args.rounds):
            order = list(sides) if r % 2 == 0 else list(reversed(sides))
            for name in order:
                times[name] += sides[name](args.steps)
            print(
                f"  {workload} round {r + 1}: "
                + ", ".join(f"{n} {statistics.median(times[n][-args.steps :]):.3f} s" for n in sides),
                flush=True,
            )
    medians = {name: statistics.median(t) for name, t in times.items()}
    return {
        "workload": workload,
        "batch": cfg.data.batch_size,
        "precision": precision,
        "medians": medians,
        "steps": {name: len(t) for name, t in times.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workloads", nargs="+", default=["deepfakes", "simswap"], choices=list(WORKLOADS))
    # one timed step per side and round: alternating often keeps a shared machine's load drift off the ratio
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=1, help="timed steps per side and round")
    parser.add_argument("--quick", action="store_true", help="small batches, 2 rounds")
    parser.add_argument("--precision", default=None, help="swapper's precision (default: the config's)")
    parser.add_argument("--also-fp32", action="store_true", help="also time swapper at 32-true")
    parser.add_argument("--device", default="cpu", help="cpu | cuda")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.steps = min(args.rounds, 2), 1
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):  # one Trainer per round: no banners
        logging.getLogger(name).setLevel(logging.ERROR)
    device = torch.device(args.device)
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    except (OSError, StopIteration):
        pass
    where = (
        torch.cuda.get_device_name() if device.type == "cuda" else f"{cpu}, {torch.get_num_threads()} threads"
    )
    print(f"torch {torch.__version__}, {where}; {args.rounds} rounds × {args.steps} steps, alternating")
    results = [measure(w, args, device) for w in args.workloads]
    print(
        f"\n{'workload':<11}{'batch':>6}  {'precision':<11}"
        + "".join(f"{n:>16}" for n in results[0]["medians"])
    )
    for r in results:
        cells = "".join(f"{m:>14.3f} s" for m in r["medians"].values())
        ratio = r["medians"]["reference"] / r["medians"]["swapper"]
        print(
            f"{r['workload']:<11}{r['batch']:>6}  {r['precision']:<11}{cells}"
            f"   reference ÷ swapper {ratio:.2f}"
        )


if __name__ == "__main__":
    main()
