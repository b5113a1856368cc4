"""Pipeline tests: fast_dev_run of every experiment, overfitting, resume, DDP, multirun, W&B files."""

from __future__ import annotations

import copy
import csv
from pathlib import Path

import pytest
import torch
from helpers import (
    CONF,
    compose_train,
    experiment_overrides,
    run_script,
    train_tiny_on_two_cpu_processes,
    write_face_folders,
)
from test_configs import allow_random_weights
from torch.utils.data import DataLoader

from swapper.data.augmentation import PairAugmentation, RandomWarp
from swapper.data.datasets import SyntheticPairDataset
from swapper.losses.reconstruction import L1Loss
from swapper.models.decoders import DeepfakesDecoder
from swapper.models.encoders import DeepfakesEncoder
from swapper.models.generators import PerPairGenerator
from swapper.train import run
from swapper.training.per_pair import PerPairModule

# the 224/512 px SimSwap experiments get their fast_dev_run at a reduced size in test_injection.py
EXPERIMENTS = sorted(
    f.stem for f in (CONF / "experiment").glob("*.yaml") if f.stem not in ("simswap_224", "simswap_512")
)


@pytest.mark.parametrize(
    "experiment",
    # the real-pair recipe loads two recognisers and dlib's landmarker for its validation figures
    [pytest.param(e, marks=[pytest.mark.slow] if e.endswith("_real") else []) for e in EXPERIMENTS],
)
def test_fast_dev_run_of_every_experiment(experiment, tmp_path):
    folders = write_face_folders(tmp_path / "crops")
    overrides = [*experiment_overrides(experiment, folders), "debug=fdr", "logger=none", "data.batch_size=2"]
    cfg = compose_train(overrides, tmp_path)
    allow_random_weights(cfg)
    metrics = run(cfg)
    assert metrics, "fast_dev_run logged nothing"
    # real-face figures of plain grey stand-in crops may be undefined (no face found, one frame)
    judged = {k for k in metrics if k.startswith(("val/a2b/", "val/b2a/"))}
    assert bool(judged) == experiment.endswith("_real")
    assert all(torch.isfinite(torch.tensor(v)) for k, v in metrics.items() if k not in judged)


def test_tiny_model_overfits_a_few_faces():
    torch.manual_seed(0)
    module = PerPairModule(
        generator=PerPairGenerator(
            encoder=DeepfakesEncoder(
                image_size=32,
                widths=(16, 32, 64, 64),
                bottleneck=64,
                latent_size=2,
                latent_channels=64,
                out_channels=32,
            ),
            decoder_a=DeepfakesDecoder(in_channels=32, widths=(32, 16, 16)),
            decoder_b=DeepfakesDecoder(in_channels=32, widths=(32, 16, 16)),
        ),
        losses={"l1": L1Loss()},
        optimizer=lambda params: torch.optim.Adam(params, lr=2e-3),
        augmentation=PairAugmentation(),
    )
    batch = next(iter(DataLoader(SyntheticPairDataset(image_size=32, length=4), batch_size=4)))
    opt = module.configure_optimizers()[0]

    def loss() -> torch.Tensor:
        steps = module._steps(batch)
        return sum((s["fake"] - s["real"]).abs().mean() for s in steps.values())

    first = loss().item()
    for _ in range(150):
        opt.zero_grad()
        value = loss()
        value.backward()
        opt.step()
    last = loss().item()
    assert last < first / 3, (first, last)


def read_metrics(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "csv" / "metrics.csv") as f:
        return list(csv.DictReader(f))


def test_resume_continues_at_the_right_step_with_the_same_optimizer(tmp_path):
    first = compose_train(["debug=tiny", "logger=csv"], tmp_path / "first")
    run(first)
    ckpt = tmp_path / "first" / "checkpoints" / "last.ckpt"
    saved = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert saved["global_step"] == 4
    assert "RNGStateCheckpoint" in saved["callbacks"]

    captured = {}

    import lightning as L

    class Capture(L.Callback):
        def on_train_start(self, trainer, pl_module):
            captured["step"] = trainer.global_step
            captured["optimizer"] = copy.deepcopy(trainer.optimizers[0].state_dict())

    second = compose_train(
        ["debug=tiny", "logger=csv", "trainer.max_steps=6", f"ckpt_path={ckpt}"], tmp_path / "second"
    )
    from hydra.utils import instantiate

    trainer_cfg = second.trainer
    datamodule = instantiate(second.data)
    module = instantiate(second.module)
    built = [instantiate(c) for c in second.callbacks.values() if c is not None]
    callbacks = [c for c in built if c is not None] + [Capture()]
    trainer = instantiate(trainer_cfg, callbacks=callbacks, logger=False)
    trainer.fit(module, datamodule=datamodule, ckpt_path=str(ckpt))
    assert captured["step"] == 4
    assert trainer.global_step == 6
    saved_state = saved["optimizer_states"][0]["state"]
    resumed_state = captured["optimizer"]["state"]
    assert saved_state.keys() == resumed_state.keys()
    for key in saved_state:
        torch.testing.assert_close(resumed_state[key]["exp_avg"], saved_state[key]["exp_avg"])
        torch.testing.assert_close(resumed_state[key]["step"], saved_state[key]["step"])


def test_a_run_resumes_from_its_own_saved_config(tmp_path):
    """No data or model options re-typed: the run directory's config.yaml is the config."""
    out = tmp_path / "run"
    first = run_script("train.py", "debug=tiny", "logger=csv", "data.train.length=64", f"hydra.run.dir={out}")
    assert first.returncode == 0, first.stderr[-3000:]
    again = run_script(
        "train.py", "-cp", str(out), "-cn", "config", "ckpt_path=last", "trainer.max_steps=6",
        f"hydra.run.dir={out}",
    )  # fmt: skip
    assert again.returncode == 0, (again.stdout + again.stderr)[-3000:]
    saved = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert saved["global_step"] == 6
    assert "resuming from" in again.stdout + again.stderr


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    cfg = compose_train(
        ["debug=tiny", "logger=none", f"ckpt_path={tmp_path / 'nope.ckpt'}"], tmp_path / "run"
    )
    with pytest.raises(FileNotFoundError, match="nope.ckpt"):
        run(cfg)


def test_cli_run_writes_config_checkpoints_previews_csv_and_wandb(tmp_path):
    out = tmp_path / "run"
    result = run_script("train.py", "debug=tiny", f"hydra.run.dir={out}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert (out / "config.yaml").is_file()
    assert (out / "checkpoints" / "last.ckpt").is_file()
    assert list((out / "checkpoints").glob("best-*.ckpt"))
    assert (out / "previews" / "latest.png").is_file()
    rows = read_metrics(out)
    assert any(r.get("val/swap_l1") for r in rows) and any(r.get("train/g/l1") for r in rows)
    runs = list((out / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("run-*.wandb"))
    assert list((runs[0] / "files" / "media" / "images").rglob("*.png"))  # the preview went to W&B


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("encoder=no_such_encoder", "Could not find 'encoder/no_such_encoder'"),
        ("image_size=72", "image_size 72 cannot be encoded"),
        ("data=pairs", "folder_a"),
    ],
)
def test_cli_bad_config_gives_a_clear_error(override, message, tmp_path):
    result = run_script("train.py", override, "debug=fdr", "logger=none", f"hydra.run.dir={tmp_path}")
    assert result.returncode != 0
    assert message in result.stderr + result.stdout


def test_cli_empty_data_folder_is_a_clear_error(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    result = run_script(
        "train.py",
        "data=pairs",
        f"data.train.folder_a={tmp_path / 'a'}",
        f"data.train.folder_b={tmp_path / 'b'}",
        "debug=fdr",
        "logger=none",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    assert result.returncode != 0
    assert f"face folder {tmp_path / 'a'} holds no images" in result.stderr + result.stdout


@pytest.mark.ddp
def test_ddp_on_two_cpu_processes(tmp_path):
    out = tmp_path / "ddp"
    result = train_tiny_on_two_cpu_processes(out)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (out / "checkpoints" / "last.ckpt").is_file()
    saved = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert saved["global_step"] == 4
    assert (
        "world_size=2" in result.stdout + result.stderr
        or "distributed_backend=gloo" in result.stdout + result.stderr
    )


def test_multirun_over_two_values(tmp_path):
    sweep = tmp_path / "sweep"
    result = run_script(
        "train.py",
        "-m",
        "debug=tiny",
        "logger=csv",
        "trainer.max_steps=2",
        "optimizer.generator.lr=1e-3,1e-4",
        f"hydra.sweep.dir={sweep}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lrs = sorted(
        float((sweep / str(i) / "config.yaml").read_text().split("lr: ")[1].split()[0]) for i in (0, 1)
    )
    assert lrs == [1e-4, 1e-3]
    assert all((sweep / str(i) / "checkpoints" / "last.ckpt").is_file() for i in (0, 1))


def tiny_generator() -> PerPairGenerator:
    """A 32 px per-pair generator small enough for step-level tests."""
    return PerPairGenerator(
        encoder=DeepfakesEncoder(
            image_size=32, widths=(8,) * 4, bottleneck=8, latent_size=2, latent_channels=8, out_channels=8
        ),
        decoder_a=DeepfakesDecoder(in_channels=8, widths=(8, 8, 8)),
        decoder_b=DeepfakesDecoder(in_channels=8, widths=(8, 8, 8)),
    )


@pytest.mark.parametrize("step", [2, 3])
def test_random_warp_stops_at_its_step(step, monkeypatch):
    module = PerPairModule(
        generator=tiny_generator(),
        losses={"l1": L1Loss()},
        optimizer=lambda params: torch.optim.Adam(params),
        augmentation=PairAugmentation(warp=RandomWarp(scale=0.05)),
        random_warp_until=3,
    )
    monkeypatch.setattr(PerPairModule, "global_step", property(lambda self: step))
    seen = []
    module.generator.encoder.register_forward_hook(lambda m, args, out: seen.append(args[0].clone()))
    batch = next(iter(DataLoader(SyntheticPairDataset(image_size=32, length=2), batch_size=2)))
    steps = module._steps(batch)
    for inputs, side in zip(seen, ("a", "b"), strict=True):
        assert torch.equal(inputs, steps[side]["real"]) == (step >= 3)  # warped before the step, not after
    with pytest.raises(ValueError, match="random_warp_until"):
        PerPairModule(module.generator, {}, lambda p: None, PairAugmentation(), random_warp_until=-1)


def tiny_gan(lr_g: float, lr_d: float) -> PerPairModule:
    from swapper.losses.adversarial import AdversarialLoss
    from swapper.models.discriminators import PatchDiscriminator

    def disc() -> PatchDiscriminator:
        return PatchDiscriminator(base_channels=8, num_layers=1, norm="none")

    return PerPairModule(
        generator=tiny_generator(),
        losses={"l1": L1Loss(), "adversarial": AdversarialLoss(form="lsgan")},
        augmentation=PairAugmentation(),
        optimizer=lambda p: torch.optim.SGD(p, lr=lr_g),
        discriminator_a=disc(),
        discriminator_b=disc(),
        discriminator_optimizer=lambda p: torch.optim.SGD(p, lr=lr_d),
    )


def fit_gan(module: PerPairModule, steps: int):
    import lightning as L

    from swapper.data.datamodule import FaceDataModule

    data = FaceDataModule(SyntheticPairDataset(image_size=32, length=16), batch_size=2)
    trainer = L.Trainer(
        max_steps=steps,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
    )
    trainer.fit(module, datamodule=data)
    return trainer


@pytest.mark.parametrize("frozen", ["generator", "discriminator"])
def test_gan_each_optimizer_updates_only_its_own_network(frozen):
    torch.manual_seed(0)
    module = tiny_gan(
        lr_g=0.0 if frozen == "generator" else 0.1, lr_d=0.0 if frozen == "discriminator" else 0.1
    )
    gen = {k: v.clone() for k, v in module.state_dict().items() if k.startswith("generator.")}
    disc = {k: v.clone() for k, v in module.state_dict().items() if k.startswith("discriminators")}
    fit_gan(module, steps=2)
    state = module.state_dict()
    gen_changed = any(not torch.equal(state[k], v) for k, v in gen.items())
    disc_changed = any(not torch.equal(state[k], v) for k, v in disc.items())
    assert (gen_changed, disc_changed) == ((False, True) if frozen == "generator" else (True, False))


def test_gan_global_step_counts_batches_not_optimizer_steps():
    trainer = fit_gan(tiny_gan(0.01, 0.01), steps=3)
    assert trainer.global_step == 3
    assert trainer.fit_loop.epoch_loop.batch_progress.total.completed == 3
    logged = trainer.callback_metrics
    for key in (
        "train/g/l1",
        "train/g/adversarial",
        "train/d/adversarial",
        "train/d/real_score",
        "train/d/fake_score",
        "train/g/total",
        "train/d/total",
    ):
        assert key in logged, key


def test_ema_weights_drive_evaluation():
    module = tiny_gan(0.1, 0.1)
    module = PerPairModule(
        generator=module.generator,
        losses={"l1": L1Loss()},
        optimizer=lambda p: torch.optim.SGD(p, lr=0.5),
        augmentation=PairAugmentation(),
        ema_decay=0.5,
    )
    fit_gan(module, steps=2)
    x = torch.rand(2, 3, 32, 32)
    module.train()
    raw = module.decode(x, "b")[0]
    module.eval()
    ema = module.decode(x, "b")[0]
    assert not torch.allclose(raw, ema)  # eval mode uses the averaged generator
    torch.testing.assert_close(ema, module.generator_ema.module.swap(x, "a2b"))
    assert module.generator_ema.n_averaged.item() == 2


@pytest.mark.ddp
def test_gan_ddp_on_two_cpu_processes(tmp_path):
    out = tmp_path / "ddp_gan"
    result = train_tiny_on_two_cpu_processes(out, "experiment=cyclegan")
    assert result.returncode == 0, result.stderr[-3000:]
    saved = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert saved["global_step"] == 4
    assert len(saved["optimizer_states"]) == 2


def test_gradient_clipping_bounds_the_update():
    torch.manual_seed(0)
    base = tiny_gan(0.0, 0.0)
    module = PerPairModule(
        generator=base.generator,
        losses={"l1": L1Loss()},
        optimizer=lambda p: torch.optim.SGD(p, lr=1.0),
        augmentation=PairAugmentation(),
        gradient_clip_val=1e-3,
    )
    before = torch.cat([p.detach().flatten().clone() for p in module.parameters()])
    fit_gan(module, steps=1)
    after = torch.cat([p.detach().flatten() for p in module.parameters()])
    step_norm = (after - before).norm().item()
    assert 0 < step_norm <= 1e-3 * 1.001  # SGD with lr 1: the update is the clipped gradient


@pytest.mark.parametrize("step", [2, 3])
def test_expression_loss_gets_the_swaps_from_its_step_and_trains_its_estimator(step, monkeypatch):
    from swapper.losses.expression import ExpressionLoss
    from swapper.models.expression import ExpressionEstimator

    term = ExpressionLoss(ExpressionEstimator(width=4), start_step=3)
    module = PerPairModule(
        generator=tiny_generator(),
        losses={"l1": L1Loss(), "expression": term},
        optimizer=lambda params: torch.optim.Adam(params),
        augmentation=PairAugmentation(),
    )
    monkeypatch.setattr(PerPairModule, "global_step", property(lambda self: step))
    batch = next(iter(DataLoader(SyntheticPairDataset(image_size=32, length=2), batch_size=2)))
    batch["a_expression"], batch["b_expression"] = torch.randn(2, 6), torch.randn(2, 6)
    steps = module._steps(batch)
    assert torch.equal(steps["a"]["expression"], batch["a_expression"])
    assert ("translated" in steps["a"]) == (step >= 3)  # the extra decoder passes only when they are read
    if step >= 3:
        assert torch.equal(steps["b"]["translated_expression"], batch["a_expression"])  # made from A's faces
        assert torch.allclose(steps["b"]["translated"], module.generator.decode(steps["a"]["real"], "b")[0])
    # the estimator is trained with the generator; the generator's parameters are all there once
    optimizer = module.configure_optimizers()
    optimizer = optimizer[0] if isinstance(optimizer, list | tuple) else optimizer
    trained = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert trained == {id(p) for p in [*module.generator.parameters(), *term.network.parameters()]}


def test_the_expression_morph_bends_both_sides_towards_the_other_before_the_augmentation(monkeypatch):
    from swapper.data.morph import ExpressionMorph

    calls = []

    class Recorder(ExpressionMorph):
        def forward(self, faces, landmarks, mean, donors, donor_mean, extra=None):
            calls.append((faces, landmarks, donors, extra))
            return faces + 1, None if extra is None else extra + 1, torch.tensor([True, False])

    batch = next(iter(DataLoader(SyntheticPairDataset(image_size=32, length=2), batch_size=2)))
    module = PerPairModule(
        generator=tiny_generator(),
        losses={"l1": L1Loss()},
        optimizer=lambda params: torch.optim.Adam(params),
        augmentation=PairAugmentation(),
        morph=Recorder(),
    )
    monkeypatch.setattr(PerPairModule, "global_step", property(lambda self: 0))
    with pytest.raises(ValueError, match="with_landmarks"):
        module._steps(batch)
    for side in ("a", "b"):
        batch[f"{side}_landmarks"] = torch.randn(2, 68, 2)
        batch[f"{side}_landmarks_mean"] = torch.randn(2, 68, 2)
        batch[f"{side}_mask"] = torch.ones(2, 1, 32, 32)
        batch[f"{side}_expression"] = torch.randn(2, 6)
    steps = module._steps(batch)
    assert torch.equal(calls[0][1], batch["a_landmarks"]) and torch.equal(calls[0][2], batch["b_landmarks"])
    assert torch.equal(calls[1][1], batch["b_landmarks"]) and torch.equal(calls[1][2], batch["a_landmarks"])
    for side in ("a", "b"):  # no random warp: the target is the morphed face, the mask moved with it
        assert torch.equal(steps[side]["real"], batch[side] + 1)
        assert torch.equal(steps[side]["face_mask"], torch.full((2, 1, 32, 32), 2.0))
        # the morphed face's measures no longer hold: NaN, left out by the expression loss; the other's kept
        assert steps[side]["expression"][0].isnan().all()
        assert torch.equal(steps[side]["expression"][1], batch[f"{side}_expression"][1])
