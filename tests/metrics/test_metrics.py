"""Validation metrics of identity injection: ID retrieval, identity centroids, edge-map attribute error."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from swapper.data.synthetic import Attributes, FaceRenderer, Identity
from swapper.metrics.attribute import edge_map
from swapper.metrics.identity import IdentityRetrieval, cosine_similarity, identity_centroids


def gallery(num: int = 4, dim: int = 8, per_identity: int = 3, noise: float = 0.05, seed: int = 0):
    """``per_identity`` noisy faces around each of ``num`` orthogonal identity directions."""
    g = torch.Generator().manual_seed(seed)
    directions = torch.eye(dim)[:num]  # (num, dim)
    ids = torch.arange(num).repeat_interleave(per_identity)  # (num·per,)
    embeddings = F.normalize(directions[ids] + noise * torch.randn(len(ids), dim, generator=g), dim=1)
    return embeddings, ids, directions


def test_retrieval_is_one_when_results_are_their_sources() -> None:
    embeddings, ids, _ = gallery()
    metric = IdentityRetrieval()
    metric.update(embeddings, ids, embeddings, ids)
    assert metric.compute().item() == 1.0


def test_retrieval_is_zero_when_results_are_shuffled() -> None:
    embeddings, ids, _ = gallery()
    metric = IdentityRetrieval()
    metric.update(embeddings, (ids + 1) % 4, embeddings, ids)  # every result claims another identity
    assert metric.compute().item() == 0.0


def test_retrieval_counts_exact_fractions_and_absent_identities() -> None:
    embeddings, ids, directions = gallery()
    metric = IdentityRetrieval()
    results = directions[[0, 1, 2, 3]]
    claimed = torch.tensor([0, 1, 3, 7])  # right, right, wrong, identity 7 is not in the gallery
    metric.update(results, claimed, embeddings, ids)
    assert metric.compute().item() == 0.5


def test_retrieval_pools_the_gallery_over_updates_and_processes() -> None:
    # A result on one "rank" must be retrievable from gallery faces seen only by another rank.
    embeddings, ids, directions = gallery()
    first, second = IdentityRetrieval(), IdentityRetrieval()
    first.update(directions[[2, 3]], torch.tensor([2, 3]), embeddings[ids < 2], ids[ids < 2])
    second.update(directions[[0, 1]], torch.tensor([0, 1]), embeddings[ids >= 2], ids[ids >= 2])
    first.merge_state(second)  # what the DDP all-gather does to the concatenated states
    assert first.compute().item() == 1.0
    first._sync_dist(lambda tensor, group=None: [tensor])  # after a sync the states are tensors, not lists
    assert isinstance(first.results, torch.Tensor) and first.compute().item() == 1.0
    alone = IdentityRetrieval()
    alone.update(directions[[2, 3]], torch.tensor([2, 3]), embeddings[ids < 2], ids[ids < 2])
    assert alone.compute().item() == 0.0  # without the other rank, identities 2 and 3 are missing
    alone.reset()
    with pytest.warns(UserWarning, match="before the ``update``"):
        assert torch.isnan(alone.compute())


def test_retrieval_shape_errors() -> None:
    metric = IdentityRetrieval()
    with pytest.raises(ValueError, match="same D"):
        metric.update(torch.randn(2, 4), torch.arange(2), torch.randn(3, 5), torch.arange(3))
    with pytest.raises(ValueError, match="one identity label per embedding"):
        metric.update(torch.randn(2, 4), torch.arange(3), torch.randn(3, 4), torch.arange(3))


def test_identity_centroids_are_renormalised_means() -> None:
    e = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, -3.0]])
    centroids, labels = identity_centroids(e, torch.tensor([5, 5, 2]))
    assert labels.tolist() == [2, 5]
    torch.testing.assert_close(centroids, torch.tensor([[0.0, -1.0], [2**-0.5, 2**-0.5]]))
    torch.testing.assert_close(cosine_similarity(e[:2], e[[0, 0]]), torch.tensor([1.0, 0.0]))


# ---- attribute error ------------------------------------------------------------------------
def square(size: int, shift: int = 0, inside=(0.8, 0.8, 0.8), outside=(0.2, 0.2, 0.2)) -> torch.Tensor:
    image = torch.tensor(outside).view(3, 1, 1).repeat(1, size, size)
    lo, hi = size // 4 + shift, 3 * size // 4 + shift
    image[:, lo:hi, lo:hi] = torch.tensor(inside).view(3, 1, 1)
    return image[None]  # (1, 3, size, size)


def test_edge_map_shape_range_and_flat_images() -> None:
    edges = edge_map(square(32))
    assert edges.shape == (1, 1, 32, 32)
    assert edges.min() >= 0 and edges.max() < 1 and edges.max() > 0.9
    assert edge_map(torch.full((2, 3, 32, 32), 0.4)).abs().max() == 0  # no structure, no edges
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        edge_map(torch.rand(1, 1, 32, 32))


def test_edge_map_ignores_colour_and_keeps_position() -> None:
    grey = square(64, inside=(0.5, 0.5, 0.5))
    luma = 0.299 * 0.8 + 0.587 * 0.4  # an orange-ish fill with the grey's luminance
    orange = square(64, inside=(0.8, 0.4, (0.5 - luma) / 0.114))
    torch.testing.assert_close(edge_map(orange), edge_map(grey))
    # A much stronger contrast barely changes the (saturated) edges; a 3-px shift does.
    contrast = (edge_map(square(64, inside=(0.95,) * 3)) - edge_map(grey)).abs().mean()
    moved = (edge_map(square(64, shift=3, inside=(0.5,) * 3)) - edge_map(grey)).abs().mean()
    assert moved > 5 * contrast


def test_edge_map_is_consistent_across_resolutions() -> None:
    means = [edge_map(square(size)).mean().item() for size in (64, 128, 256)]
    assert max(means) / min(means) < 1.1


def test_edge_error_is_dominated_by_attributes_on_rendered_faces() -> None:
    """The claim behind val/edge_l1: changing pose/expression moves edges far more than
    changing the person does."""
    renderer, rng = FaceRenderer(size=64), np.random.default_rng(0)

    def edges(identity: int, attributes: Attributes) -> torch.Tensor:
        image = torch.from_numpy(renderer.render(Identity.from_seed(identity), attributes).transpose(2, 0, 1))
        return edge_map(image[None].contiguous())

    identity_change, attribute_change = [], []
    for k in range(8):
        a, b = Attributes.sample(rng), Attributes.sample(rng)
        reference = edges(k, a)
        identity_change.append((edges(k + 100, a) - reference).abs().mean().item())
        attribute_change.append((edges(k, b) - reference).abs().mean().item())
    assert np.mean(attribute_change) > 1.3 * np.mean(identity_change)
