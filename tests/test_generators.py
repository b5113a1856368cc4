"""Generators are models: every experiment's generator builds from its config node alone, takes a
training checkpoint strictly, swaps, and travels as one exported file that infer.py accepts."""

from __future__ import annotations

import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from helpers import CONF, ROOT, compose_train, experiment_overrides, run_script
from hydra.utils import instantiate
from omegaconf import OmegaConf
from test_configs import allow_random_weights

from swapper.inference.loading import (
    generator_state,
    load_generator,
    read_generator_file,
    save_generator_file,
)
from swapper.models.generators import IdentityInjectionGenerator, PerPairGenerator, SwapGenerator
from swapper.train import run

SWAP_EXPERIMENTS = sorted(
    f.stem
    for f in (CONF / "experiment").glob("*.yaml")
    if f.stem not in ("face_embedder", "attribute_estimator")  # these train recognisers, not swappers
)
# crop sizes that keep each generator's forward quick on a CPU (the full models build at full size)
FORWARD_SIZE = {"simswap_224": 64, "simswap_512": 64}


def make_checkpoint(experiment: str | None, run_dir: Path) -> torch.nn.Module:
    """What a training run leaves: config.yaml and checkpoints/last.ckpt of the module's state."""
    cfg = compose_train(experiment_overrides(experiment) if experiment else [], run_dir)
    allow_random_weights(cfg)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    torch.manual_seed(0)
    module = instantiate(cfg.module)
    (run_dir / "checkpoints").mkdir()
    torch.save({"state_dict": module.state_dict()}, run_dir / "checkpoints" / "last.ckpt")
    return module


@pytest.mark.parametrize("experiment", SWAP_EXPERIMENTS)
def test_every_experiments_generator_loads_strictly_from_its_config_and_swaps(experiment, tmp_path):
    module = make_checkpoint(experiment, tmp_path)
    loaded = load_generator(tmp_path, "last", "cpu")
    generator = loaded.generator
    assert isinstance(generator, SwapGenerator) and not generator.training
    # the weights that evaluation uses (the EMA copy when the experiment keeps one) came from the file
    module.eval()
    expected = module.swap_generator.state_dict()
    got = generator.state_dict()
    assert got.keys() == expected.keys()
    assert all(torch.equal(got[k], expected[k]) for k in expected)
    size = FORWARD_SIZE.get(experiment, loaded.crop.size)
    faces = torch.rand(2, 3, size, size)
    if not generator.needs_source:  # per-pair: a direction
        identity = generator.target_identity(direction="b2a")
        # rendered faces align to the renderer's template; real pairs to extraction's (here: none recorded)
        assert loaded.crop.template == ("mean_face" if experiment.endswith("_real") else "synthetic")
    else:
        identity = generator.target_identity(source=torch.rand(1, 3, size, size))
    with torch.no_grad():
        swapped, mask = generator.swap_to(faces, identity)
    assert swapped.shape == faces.shape and torch.isfinite(swapped).all()
    assert (mask is not None) == (experiment.startswith("faceswap_gan"))


def test_a_checkpoint_that_does_not_fit_names_the_keys(tmp_path):
    make_checkpoint(None, tmp_path)  # the main job's model
    ckpt = tmp_path / "checkpoints" / "last.ckpt"
    state = torch.load(ckpt, weights_only=True)["state_dict"]
    state.pop(next(k for k in state if k.startswith("generator.decoders.b.")))
    torch.save({"state_dict": state}, ckpt)
    with pytest.raises(ValueError, match=r"missing keys \(1\): decoders\.b\."):
        load_generator(tmp_path)


def test_ema_weights_replace_the_averaged_part():
    generator = PerPairGenerator(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2), torch.nn.Linear(2, 2))
    state = {f"generator.{k}": v for k, v in generator.state_dict().items()}
    state["generator_ema.module.encoder.weight"] = torch.full((2, 2), 7.0)
    state["generator_ema.n_averaged"] = torch.tensor(3)
    own = generator_state(state, generator)
    assert own.keys() == generator.state_dict().keys()
    assert torch.equal(own["encoder.weight"], torch.full((2, 2), 7.0))

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(2))

    class Frozen(torch.nn.Module):
        def embed(self, x):
            return x

    injection = IdentityInjectionGenerator(Net(), Frozen())
    state = {"generator.network.w": torch.zeros(2), "generator_ema.module.w": torch.ones(2)}
    assert torch.equal(generator_state(state, injection)["network.w"], torch.ones(2))


def test_generator_file_round_trip_and_bad_files(tmp_path):
    module = make_checkpoint("cyclegan", tmp_path / "run")
    loaded = load_generator(tmp_path / "run")
    node = OmegaConf.to_container(OmegaConf.load(tmp_path / "run" / "config.yaml").module.generator)
    path = save_generator_file(tmp_path / "g.safetensors", loaded.generator, node, loaded.crop)
    again = read_generator_file(path)
    assert again.crop == loaded.crop
    x = torch.rand(1, 3, loaded.crop.size, loaded.crop.size)
    with torch.no_grad():
        torch.testing.assert_close(again.generator.swap(x, "a2b"), module.generator.eval().swap(x, "a2b"))
    assert not list(tmp_path.glob(".*partial"))  # written atomically, nothing left beside it
    (tmp_path / "text.safetensors").write_text("not a tensor file")
    with pytest.raises(ValueError, match="neither a run directory nor a readable generator file"):
        load_generator(tmp_path / "text.safetensors")


@pytest.mark.slow
def test_a_trained_run_exports_a_generator_file_that_infer_swaps_with(tmp_path):
    run_dir = tmp_path / "run"
    cfg = compose_train(["debug=tiny", "logger=none"], run_dir)
    run(cfg)
    exported = run_dir / "generator.safetensors"
    assert exported.is_file()
    from_run, from_file = load_generator(run_dir), load_generator(exported)
    x = torch.rand(2, 3, from_run.crop.size, from_run.crop.size)
    with torch.no_grad():
        torch.testing.assert_close(from_file.generator.swap(x, "a2b"), from_run.generator.swap(x, "a2b"))
    crops = tmp_path / "crops"
    crops.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        cv2.imwrite(str(crops / f"{i}.png"), rng.integers(0, 255, (cfg.image_size,) * 2 + (3,), np.uint8))
    out = tmp_path / "out"
    result = run_script(
        "infer.py", f"run={exported}", f"input={crops}", f"output={out}", "mode=crops", "progress=false"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir()) == ["0.png", "1.png", "2.png"]


def test_a_new_encoder_is_one_class_and_one_yaml(tmp_path, monkeypatch):
    """Extending swapper: a user's encoder in their own package + one YAML in a config dir of theirs."""
    package = tmp_path / "my_models"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "tiny.py").write_text(
        textwrap.dedent(
            """
            from torch import nn

            class TinyEncoder(nn.Module):
                def __init__(self, image_size: int, out_channels: int) -> None:
                    super().__init__()
                    # 64 px -> (out_channels, 8, 8): the lite decoder upsamples 8x
                    self.net = nn.Conv2d(3, out_channels, kernel_size=8, stride=8)

                def forward(self, x):
                    return self.net(x)
            """
        )
    )
    conf = tmp_path / "conf" / "encoder"
    conf.mkdir(parents=True)
    (conf / "tiny.yaml").write_text(
        "_target_: my_models.tiny.TinyEncoder\nimage_size: ${image_size}\nout_channels: 64\n"
    )
    out = tmp_path / "run"
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    result = run_script(
        "train.py", "encoder=tiny", "debug=fdr", "logger=none",
        f"hydra.searchpath=[file://{tmp_path / 'conf'}]", f"hydra.run.dir={out}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "my_models.tiny.TinyEncoder" in (out / "config.yaml").read_text()


def test_an_option_the_module_ignores_is_an_error(tmp_path):
    result = run_script(
        "train.py", "experiment=simswap_lite", "encoder=deepfakes", "debug=fdr", "logger=none",
        f"hydra.run.dir={tmp_path / 'run'}",
    )  # fmt: skip
    assert result.returncode != 0
    assert "encoder=deepfakes: not used by module swapper.training.identity_injection" in (
        result.stdout + result.stderr
    )


def test_no_package_below_inference_models_data_faces_imports_training():
    for package in ("inference", "models", "data", "faces"):
        for path in (ROOT / "swapper" / package).rglob("*.py"):
            assert "swapper.training" not in path.read_text(), path
    for path in (ROOT / "swapper" / "data").rglob("*.py"):
        text = path.read_text()
        assert "swapper.models" not in text, f"{path}: data imports a network"
    for path in (ROOT / "swapper" / "training").rglob("*.py"):
        assert "swapper.data" not in path.read_text(), f"{path}: augmentation comes in through config"


def test_a_stopped_run_exports_no_generator_file(tmp_path):
    """A guard stop (NaN) or non-finite weights never leave a generator file to swap with."""
    from types import SimpleNamespace

    from swapper.callbacks.export import ExportGenerator, why_not_export

    module = make_checkpoint(None, tmp_path)
    trainer = SimpleNamespace(
        is_global_zero=True, callbacks=[SimpleNamespace(tripped="NaNGuard: NaN at step 3")]
    )
    ExportGenerator(str(tmp_path)).on_train_end(trainer, module)
    assert not (tmp_path / "generator.safetensors").exists()
    trainer.callbacks = []
    with torch.no_grad():
        next(module.generator.parameters()).fill_(float("nan"))
    assert "non-finite" in why_not_export(trainer, module.generator.state_dict())
    ExportGenerator(str(tmp_path)).on_train_end(trainer, module)
    assert not (tmp_path / "generator.safetensors").exists() and module.training
