"""The expression loss: its estimator learns from the data's measures, its swap term trains only the
generator, and it waits for its step."""

from __future__ import annotations

import pytest
import torch

from swapper.losses.expression import ExpressionLoss
from swapper.models.expression import ExpressionEstimator


def _inputs(batch: int = 4, size: int = 32) -> dict:
    torch.manual_seed(0)
    return {
        "fake": torch.rand(batch, 3, size, size, requires_grad=True),
        "real": torch.rand(batch, 3, size, size),
        "expression": torch.randn(batch, 6),
        "translated": torch.rand(batch, 3, size, size, requires_grad=True),
        "translated_expression": torch.randn(batch, 6),
    }


def test_estimator_shape_and_bad_options() -> None:
    net = ExpressionEstimator(features=6, width=8)
    assert net(torch.rand(3, 3, 64, 64)).shape == (3, 6)
    assert net(torch.rand(1, 3, 128, 128)).shape == (1, 6)
    with pytest.raises(ValueError, match="depth"):
        ExpressionEstimator(depth=1)


def test_swap_term_trains_the_generator_only_and_waits_for_its_step() -> None:
    x = _inputs()
    term = ExpressionLoss(ExpressionEstimator(width=8), start_step=5)
    assert not term.reads_translation(4) and term.reads_translation(5)

    def estimator_grads(step: int) -> list[torch.Tensor]:
        term.network.zero_grad(set_to_none=True)
        for key in ("fake", "translated"):
            x[key].grad = None
        term.generator_loss(**x, step=step).backward()
        return [p.grad.clone() for p in term.network.parameters()]

    before = estimator_grads(4)  # fit only
    assert x["translated"].grad is None and x["fake"].grad is None  # fit reads detached faces
    after = estimator_grads(5)  # fit + swap term
    assert x["translated"].grad is not None and x["translated"].grad.abs().sum() > 0
    assert x["fake"].grad is None
    for g0, g1 in zip(before, after, strict=True):  # the swap term adds nothing to the estimator's gradient
        torch.testing.assert_close(g0, g1)
    # its value: fit + mean |estimate(translated) − translated_expression|
    with torch.no_grad():
        fit = term.generator_loss(**x, step=4)
        keep = (term.network(x["translated"]) - x["translated_expression"]).abs().mean()
        assert term.generator_loss(**x, step=5).item() == pytest.approx((fit + keep).item(), rel=1e-5)


def test_rows_without_measures_are_left_out() -> None:
    x = _inputs()
    term = ExpressionLoss(ExpressionEstimator(width=8))
    full = term.generator_loss(**x)
    x["expression"][1:] = float("nan")
    x["translated_expression"][1:] = float("nan")
    value = term.generator_loss(**x)
    assert torch.isfinite(value)
    one = {k: v[:1] for k, v in x.items()}
    assert value.item() == pytest.approx(term.generator_loss(**one).item(), rel=1e-5)
    assert value.item() != pytest.approx(full.item())
    x["expression"][:] = float("nan")
    x["translated_expression"][:] = float("nan")
    assert term.generator_loss(**x).item() == 0.0


def test_missing_inputs_are_clear_errors() -> None:
    x = _inputs()
    term = ExpressionLoss(ExpressionEstimator(width=8))
    with pytest.raises(ValueError, match="with_expression=true"):
        term.generator_loss(fake=x["fake"], real=x["real"])
    with pytest.raises(ValueError, match="translated"):
        term.generator_loss(fake=x["fake"], real=x["real"], expression=x["expression"])
    with pytest.raises(ValueError, match="start_step"):
        ExpressionLoss(ExpressionEstimator(), start_step=-1)


def test_estimator_learns_the_measures_and_the_swap_term_moves_the_swaps_toward_them() -> None:
    """Faces whose brightness of the top and bottom halves are the two measures: the estimator learns
    them from the fit part; then, frozen, the swap term changes a swap until it reads as asked."""
    torch.manual_seed(0)
    labels = torch.rand(32, 2) * 2 - 1
    faces = torch.empty(32, 3, 32, 32)
    faces[:, :, :16] = (0.5 + 0.4 * labels[:, 0]).view(-1, 1, 1, 1)
    faces[:, :, 16:] = (0.5 + 0.4 * labels[:, 1]).view(-1, 1, 1, 1)
    term = ExpressionLoss(ExpressionEstimator(features=2, width=8), start_step=10**9)
    optimizer = torch.optim.Adam(term.network.parameters(), lr=3e-3)
    first = None
    for _ in range(300):
        loss = term.generator_loss(fake=faces, real=faces, expression=labels)
        first = loss.item() if first is None else first
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < first / 10
    term.start_step = 0
    swap = torch.full((1, 3, 32, 32), 0.5, requires_grad=True)
    wanted = torch.tensor([[0.8, -0.8]])
    swap_optimizer = torch.optim.Adam([swap], lr=1e-2)

    def gap() -> float:
        with torch.no_grad():
            return (term.network(swap) - wanted).abs().mean().item()

    start = gap()
    for _ in range(100):
        loss = term.generator_loss(fake=faces[:1], real=faces[:1], expression=labels[:1], translated=swap,
                                   translated_expression=wanted)  # fmt: skip
        swap_optimizer.zero_grad()
        loss.backward()
        swap_optimizer.step()
    assert gap() < start / 3
    assert swap[:, :, :16].mean() > swap[:, :, 16:].mean()  # brighter top: the first measure raised
