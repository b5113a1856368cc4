"""The synthetic-face embedder: shapes, frozen loading with the pretrained wrappers' guarantees."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from swapper.models.face_embedder import AttributeEstimator, FaceEmbedder, FaceResNet

SMALL = {"input_size": 32, "channels": (8, 16), "embedding_dim": 12}


def saved_net(tmp_path, **kwargs) -> tuple[FaceResNet, str]:
    torch.manual_seed(0)
    net = FaceResNet(**(SMALL | kwargs)).eval()
    path = tmp_path / "embedder.pt"
    torch.save(net.state_dict(), path)
    return net, str(path)


def test_embeddings_are_unit_vectors_for_any_input_size(tmp_path) -> None:
    _, path = saved_net(tmp_path)
    embedder = FaceEmbedder(path, **SMALL)
    for size in (32, 48, 64):
        out = embedder.embed(torch.rand(3, 3, size, size))
        assert out.shape == (3, 12)
        torch.testing.assert_close(out.norm(dim=1), torch.ones(3))
    assert [f.shape[1:] for f in embedder.features(torch.rand(2, 3, 32, 32))] == [(8, 16, 16), (16, 8, 8)]


def test_input_size_must_fit_the_stages() -> None:
    with pytest.raises(ValueError, match="divisible"):
        FaceResNet(input_size=36, channels=(8, 16, 32))
    with pytest.raises(ValueError, match="blocks_per_stage"):
        FaceResNet(blocks_per_stage=0)


def test_loaded_weights_reproduce_the_trained_network(tmp_path) -> None:
    net, path = saved_net(tmp_path, blocks_per_stage=2)
    embedder = FaceEmbedder(path, **SMALL, blocks_per_stage=2)
    images = torch.rand(4, 3, 32, 32)
    expected = torch.nn.functional.normalize(net(images * 2 - 1), dim=1)
    torch.testing.assert_close(embedder.embed(images), expected)


def test_frozen_but_passes_gradients_to_its_input(tmp_path) -> None:
    _, path = saved_net(tmp_path)
    embedder = FaceEmbedder(path, **SMALL)
    parent = nn.ModuleDict({"id": embedder}).train()
    assert not embedder.net.training and not any(p.requires_grad for p in embedder.parameters())
    assert parent.state_dict() == {}  # weights come from the file, not from training checkpoints
    images = torch.rand(2, 3, 32, 32, requires_grad=True)
    embedder.embed(images).sum().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0


def test_missing_file_says_how_to_make_it(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="experiment=face_embedder"):
        FaceEmbedder(tmp_path / "absent.pt", **SMALL)


def test_no_weights_is_refused_unless_random_weights_are_allowed() -> None:
    with pytest.raises(ValueError, match="allow_random_weights"):
        FaceEmbedder(None, **SMALL)
    with pytest.warns(UserWarning, match="RANDOM"):
        FaceEmbedder(None, **SMALL, allow_random_weights=True)


def test_architecture_mismatch_lists_the_offending_keys(tmp_path) -> None:
    _, path = saved_net(tmp_path)
    with pytest.raises(ValueError, match=r"(?s)wrong shapes.*stem"):
        FaceEmbedder(path, input_size=32, channels=(16, 16), embedding_dim=12)


def test_attribute_estimator_predicts_in_the_renderers_units(tmp_path) -> None:
    torch.manual_seed(0)
    net = FaceResNet(input_size=32, channels=(8, 16), embedding_dim=6, output_norm=False).eval()
    torch.save(net.state_dict(), tmp_path / "attributes.pt")
    estimator = AttributeEstimator(tmp_path / "attributes.pt", input_size=32, channels=(8, 16))
    images = torch.rand(3, 3, 32, 32)
    expected = net(images * 2 - 1) * torch.tensor([30.0, 20.0, 15.0, 1.0, 1.0, 1.0])
    torch.testing.assert_close(estimator.predict(images), expected)
    with pytest.raises(FileNotFoundError, match="experiment=attribute_estimator"):
        AttributeEstimator(tmp_path / "absent.pt")
