"""Identity metrics of a swap: similarity to source and target, and ID retrieval (SimSwap/FaceShifter)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat


def cosine_similarity(a: Tensor, b: Tensor) -> Tensor:
    """(N, D), (N, D) -> (N,) cosine similarity of matching rows (the inputs need not be unit length)."""
    return F.cosine_similarity(a, b, dim=1)


def identity_centroids(embeddings: Tensor, ids: Tensor) -> tuple[Tensor, Tensor]:
    """One unit vector per identity: the re-normalised mean of its unit-length embeddings.

    Returns ``(centroids (K, D), identity labels (K,))`` with labels sorted ascending.
    """
    labels, inverse = torch.unique(ids, return_inverse=True)  # (K,), (N,)
    sums = torch.zeros(len(labels), embeddings.shape[1], dtype=embeddings.dtype, device=embeddings.device)
    sums.index_add_(0, inverse, F.normalize(embeddings, dim=1))
    return F.normalize(sums, dim=1), labels


class IdentityRetrieval(Metric):
    """Top-1 ID retrieval: is a swap's nearest gallery identity its source identity?

    ``update(results, result_ids, gallery, gallery_ids)``: embeddings of the swap results with
    the identity each should show (the source's), and embeddings of real faces with their
    identities. ``compute`` builds one centroid per gallery identity (over every rank's gallery,
    so the pool is the whole validation set) and returns the share of results whose most similar
    centroid (cosine) is their own identity. A result whose identity is absent from the gallery
    counts as a miss. States are concatenated across processes (DDP-safe).
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("results", default=[], dist_reduce_fx="cat")
        self.add_state("result_ids", default=[], dist_reduce_fx="cat")
        self.add_state("gallery", default=[], dist_reduce_fx="cat")
        self.add_state("gallery_ids", default=[], dist_reduce_fx="cat")

    def update(self, results: Tensor, result_ids: Tensor, gallery: Tensor, gallery_ids: Tensor) -> None:
        if results.dim() != 2 or gallery.dim() != 2 or results.shape[1] != gallery.shape[1]:
            raise ValueError(
                f"results and gallery must be (N, D) with the same D, got {tuple(results.shape)} and "
                f"{tuple(gallery.shape)}"
            )
        if len(result_ids) != len(results) or len(gallery_ids) != len(gallery):
            raise ValueError("one identity label per embedding is needed")
        self.results.append(results.detach().float())
        self.result_ids.append(result_ids.detach().long())
        self.gallery.append(gallery.detach().float())
        self.gallery_ids.append(gallery_ids.detach().long())

    def compute(self) -> Tensor:
        # Lists of per-update tensors locally; one tensor each after a DDP sync.
        if any(isinstance(state, list) and not state for state in (self.results, self.gallery)):
            return torch.tensor(float("nan"), device=self.device)
        results, result_ids = dim_zero_cat(self.results), dim_zero_cat(self.result_ids)
        gallery, gallery_ids = dim_zero_cat(self.gallery), dim_zero_cat(self.gallery_ids)
        if results.numel() == 0 or gallery.numel() == 0:
            return torch.tensor(float("nan"), device=self.device)
        centroids, labels = identity_centroids(gallery.view(-1, results.shape[-1]), gallery_ids)
        scores = F.normalize(results.view(len(result_ids), -1), dim=1) @ centroids.T  # (N, K)
        predicted = labels[scores.argmax(dim=1)]
        return (predicted == result_ids).float().mean()


__all__ = ["IdentityRetrieval", "cosine_similarity", "identity_centroids"]
