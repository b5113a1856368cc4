"""Every option of every config group composes, and every buildable node instantiates."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers import CONF, compose_train
from hydra.errors import ConfigCompositionException
from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict

# detector/ belongs to extract.yaml (tested in tests/data/test_extract.py);
# generator/ is selected by experiments
SKIP_GROUPS = {"hydra", "experiment", "debug", "hparams_search", "generator", "detector"}
GROUPS = sorted(p.name for p in CONF.iterdir() if p.is_dir() and p.name not in SKIP_GROUPS)
OPTIONS = [(g, f.stem) for g in GROUPS for f in sorted((CONF / g).glob("*.yaml"))]
EXPERIMENTS = sorted(f.stem for f in (CONF / "experiment").glob("*.yaml"))


def allow_random_weights(node) -> None:
    """Tests have no pretrained checkpoints: let frozen networks start from random weights."""
    if isinstance(node, DictConfig):
        with open_dict(node):
            if "allow_random_weights" in node:
                node.allow_random_weights = True
                if "weights" in node and node.weights is not None and not Path(str(node.weights)).is_file():
                    node.weights = None
            for key in node:
                allow_random_weights(node._get_node(key))
    elif isinstance(node, ListConfig):
        for item in node:
            allow_random_weights(item)


def group_overrides(group: str, option: str, folders: tuple[Path, Path]) -> list[str]:
    overrides = [f"{group}={option}"]
    if group == "data" and option == "pairs":
        overrides += [f"data.train.folder_a={folders[0]}", f"data.train.folder_b={folders[1]}"]
    if group == "data" and option == "identities":
        overrides.append(f"data.train.root={folders[0].parent}")
    if group == "module" and option == "face_embedder":
        overrides.append("data=synthetic_faces")  # its classifier has one class per training identity
    if group == "decoder" and "lite" not in option:
        overrides.append("encoder=deepfakes")  # the full decoders read the full encoder's width
    return overrides


@pytest.fixture(scope="module")
def face_folders(tmp_path_factory):
    import cv2
    import numpy as np

    root = tmp_path_factory.mktemp("faces")
    for name in ("a", "b"):
        (root / name).mkdir()
        for i in range(3):
            cv2.imwrite(str(root / name / f"{i}.png"), np.full((32, 32, 3), 40 * i, np.uint8))
    return root / "a", root / "b"


@pytest.mark.parametrize(("group", "option"), OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_group_option_composes_and_instantiates(group, option, face_folders, tmp_path):
    cfg = compose_train(group_overrides(group, option, face_folders), tmp_path)
    node = cfg.get(group)
    if node is None or (isinstance(node, DictConfig) and not node):
        return  # `none` options: nothing to build
    allow_random_weights(node)
    if group == "trainer" and node.accelerator == "gpu" and not torch.cuda.is_available():
        assert node.precision == "bf16-mixed"
        pytest.skip("GPU trainer configs compose; instantiating them needs CUDA")
    if group == "module":
        allow_random_weights(cfg)
        node = cfg.module
    built = instantiate(node)
    assert built is not None


def test_unknown_option_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigCompositionException, match="encoder"):
        compose_train(["encoder=no_such_encoder"], tmp_path)


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_composes_with_a_name(experiment, tmp_path):
    cfg = compose_train([f"experiment={experiment}"], tmp_path)
    assert cfg.name and cfg.module._target_
    OmegaConf.to_container(cfg, resolve=True)  # every interpolation resolves


def test_run_directory_layout(tmp_path):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=["experiment=deepfakes_original"], return_hydra_config=True)
    run_dir = Path(cfg.hydra.run.dir)
    assert run_dir.parent.name == "deepfakes_original" and run_dir.parent.parent.name == "outputs"
    assert OmegaConf.to_container(cfg.hydra.run)["dir"].endswith("${now:%Y-%m-%d_%H-%M-%S}")
