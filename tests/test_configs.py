"""Every option of every config group composes, and every buildable node instantiates."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers import CONF, compose_train, experiment_overrides
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import ConfigCompositionException
from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict

# detector/ belongs to extract.yaml (tested in tests/faces/test_extract.py), select/ to extract.yaml and
# infer.yaml (tested below); generator/ and identity_network/ come with module=identity_injection (tested
# in tests/training/test_injection.py); face_resnet/ is merged into the nodes that build one
# (tests/training/test_face_embedder_module.py)
SKIP_GROUPS = {
    "hydra",
    "experiment",
    "debug",
    "hparams_search",
    "generator",
    "identity_network",
    "detector",
    "select",
    "face_resnet",
}
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
    if (group, option) in (("data", "pairs"), ("callbacks", "real_faces")):  # real pairs: two crop folders
        overrides += [f"data.train.folder_a={folders[0]}", f"data.train.folder_b={folders[1]}"]
        overrides += ["data=pairs"] if group == "callbacks" else []
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


SELECT_OPTIONS = sorted(f.stem for f in (CONF / "select").glob("*.yaml"))


@pytest.mark.parametrize("entry", ["extract", "infer"])
def test_select_options_compose_in_extract_and_infer(entry, tmp_path):
    from hydra import compose, initialize_config_dir

    from swapper.faces.selection import FaceSelector

    assert SELECT_OPTIONS == ["all", "largest", "reference"]
    required = ["input=x", f"output={tmp_path}"] + ["run=r"] * (entry == "infer")
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        assert compose(entry, overrides=required).select.mode == "all"  # the default keeps every face
        for option in SELECT_OPTIONS:
            cfg = compose(entry, overrides=[*required, f"select={option}", "select.reference=me.jpg"])
            selector = instantiate(cfg.select)
            assert isinstance(selector, FaceSelector) and selector.mode == option
            assert selector.reference == Path("me.jpg") and selector.threshold == 0.363


def test_unknown_option_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigCompositionException, match="encoder"):
        compose_train(["encoder=no_such_encoder"], tmp_path)


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_composes_with_a_name(experiment, tmp_path):
    cfg = compose_train(experiment_overrides(experiment), tmp_path)
    assert cfg.name and cfg.module._target_
    OmegaConf.to_container(cfg, resolve=True)  # every interpolation resolves


def test_run_directory_layout(tmp_path):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=["experiment=deepfakes_original"], return_hydra_config=True)
    run_dir = Path(cfg.hydra.run.dir)
    assert run_dir.parent.name == "deepfakes_original" and run_dir.parent.parent.name == "outputs"
    assert OmegaConf.to_container(cfg.hydra.run)["dir"].endswith("${now:%Y-%m-%d_%H-%M-%S}")
