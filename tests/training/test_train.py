"""Pipeline tests: fast_dev_run of every experiment, overfitting, resume, DDP, multirun, W&B files."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from helpers import CONF, compose_train, run_script
from test_configs import allow_random_weights
from torch.utils.data import DataLoader

from swapper.data.augmentation import PairAugmentation
from swapper.data.datasets import SyntheticPairDataset
from swapper.losses.reconstruction import L1Loss
from swapper.models.decoders import DeepfakesDecoder
from swapper.models.encoders import DeepfakesEncoder
from swapper.train import run
from swapper.training.autoencoder import PerPairAutoencoder

EXPERIMENTS = sorted(f.stem for f in (CONF / "experiment").glob("*.yaml"))


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_fast_dev_run_of_every_experiment(experiment, tmp_path):
    cfg = compose_train(
        [f"experiment={experiment}", "debug=fdr", "logger=none", "data.batch_size=2"], tmp_path
    )
    allow_random_weights(cfg)
    metrics = run(cfg)
    assert metrics, "fast_dev_run logged nothing"
    assert all(torch.isfinite(torch.tensor(v)) for v in metrics.values())


def test_tiny_model_overfits_a_few_faces():
    torch.manual_seed(0)
    module = PerPairAutoencoder(
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
            captured["optimizer"] = trainer.optimizers[0].state_dict()

    second = compose_train(
        ["debug=tiny", "logger=csv", "trainer.max_steps=6", f"ckpt_path={ckpt}"], tmp_path / "second"
    )
    from hydra.utils import instantiate

    trainer_cfg = second.trainer
    datamodule = instantiate(second.data)
    module = instantiate(second.module)
    callbacks = [instantiate(c) for c in second.callbacks.values()] + [Capture()]
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
    assert list((runs[0] / "files" / "media" / "images").glob("*.png"))  # the preview went to W&B


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
    result = run_script("train.py", "trainer=ddp_cpu", "debug=tiny", "logger=csv", f"hydra.run.dir={out}")
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
