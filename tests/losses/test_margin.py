"""Additive angular margin (ArcFace) loss: exact logits, fallback, gradients, argument checks."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from swapper.losses.margin import AdditiveAngularMarginLoss


def planar(margin: float, scale: float = 10.0) -> AdditiveAngularMarginLoss:
    """Two classes with centres on the x and y axes of the plane."""
    loss = AdditiveAngularMarginLoss(embedding_dim=2, num_classes=2, margin=margin, scale=scale)
    with torch.no_grad():
        loss.centres.copy_(torch.tensor([[3.0, 0.0], [0.0, 0.5]]))  # lengths do not matter
    return loss


def at_angle(degrees: float) -> torch.Tensor:
    rad = math.radians(degrees)
    return torch.tensor([[2 * math.cos(rad), 2 * math.sin(rad)]])


def test_true_class_logit_is_cos_of_angle_plus_margin() -> None:
    logits = planar(margin=0.5).logits(at_angle(30.0), torch.tensor([0]))
    expected = torch.tensor([[10 * math.cos(math.radians(30.0) + 0.5), 10 * math.cos(math.radians(60.0))]])
    torch.testing.assert_close(logits, expected)


def test_zero_margin_is_the_normalised_softmax_loss() -> None:
    loss = planar(margin=0.0)
    embedding, label = at_angle(70.0), torch.tensor([1])
    cosines = torch.tensor([[math.cos(math.radians(70.0)), math.cos(math.radians(20.0))]])
    torch.testing.assert_close(loss(embedding, label), F.cross_entropy(10 * cosines, label))


def test_past_pi_minus_margin_the_logit_keeps_falling() -> None:
    loss = planar(margin=0.5)
    angles = [150.0, 160.0, 170.0, 179.0]  # pi - 0.5 rad = 151.4 degrees
    logits = [loss.logits(at_angle(a), torch.tensor([0]))[0, 0].item() for a in angles]
    assert logits == sorted(logits, reverse=True)
    expected = 10 * (math.cos(math.radians(170.0)) - 0.5 * math.sin(0.5))
    assert logits[2] == pytest.approx(expected, rel=1e-5)


def test_gradients_reach_embeddings_and_centres() -> None:
    torch.manual_seed(0)
    loss = AdditiveAngularMarginLoss(embedding_dim=8, num_classes=5)
    embeddings = torch.randn(6, 8, requires_grad=True)
    value = loss(embeddings, torch.tensor([0, 1, 2, 3, 4, 0]))
    value.backward()
    assert value.item() > 0
    assert embeddings.grad.abs().sum() > 0 and loss.centres.grad.abs().sum() > 0


def test_bad_arguments_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="margin"):
        AdditiveAngularMarginLoss(4, 3, margin=2.0)
    with pytest.raises(ValueError, match="scale"):
        AdditiveAngularMarginLoss(4, 3, scale=0.0)
    with pytest.raises(ValueError, match="num_classes"):
        AdditiveAngularMarginLoss(4, 1)
    with pytest.raises(ValueError, match="labels"):
        AdditiveAngularMarginLoss(4, 3)(torch.randn(2, 4), torch.tensor([0, 3]))
