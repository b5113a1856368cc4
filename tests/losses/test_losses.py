"""Contracts of every loss term: exact values on hand-computed cases, gradients, errors, configs."""

from __future__ import annotations

import inspect
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hydra.utils import get_class, instantiate
from kornia.losses import ssim_loss
from omegaconf import OmegaConf
from torch import Tensor, nn

from swapper.losses.adversarial import AdversarialLoss
from swapper.losses.base import STEP_KEYS
from swapper.losses.cycle import CycleLoss
from swapper.losses.feature_matching import FeatureMatchingLoss
from swapper.losses.identity import IdentityLoss
from swapper.losses.mask import MaskLoss
from swapper.losses.perceptual import PerceptualLoss
from swapper.losses.regularizers import GradientPenalty, R1Penalty
from swapper.losses.ssim import SSIMLoss
from swapper.models.discriminators import MultiScalePatchDiscriminator

REPO = Path(__file__).resolve().parents[2]
LOSS_CONFS = sorted((REPO / "conf" / "loss").glob("*.yaml"))


# ---- stubs for the frozen networks and the discriminator -------------------------------------------------


class ScaledFeatures(nn.Module):
    """``features`` returns the image times (1, 2, 3, …), one per layer; ``embed`` the centred mean colour."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))  # a parameter the loss must freeze

    def features(self, images: Tensor, layers: list[str]) -> list[Tensor]:
        return [images * self.scale * (i + 1) for i in range(len(layers))]

    def embed(self, images: Tensor) -> Tensor:
        return F.normalize(images.mean((2, 3)) * self.scale - 0.5, dim=1)


class LinearCritic(nn.Module):
    """D(x) = Σ a·x per sample, so ∇ₓD = a for every x: ‖∇‖ = ‖a‖ exactly."""

    def __init__(self, shape: tuple[int, ...], norm: float) -> None:
        super().__init__()
        a = torch.randn(1, *shape)
        self.a = nn.Parameter(a * norm / a.norm())

    def forward(self, x: Tensor) -> tuple[list[Tensor], list[list[Tensor]]]:
        logits = (self.a * x).flatten(1).sum(1).view(-1, 1, 1, 1)  # (B, 1, 1, 1)
        return [logits], [[logits]]


def _full(value: float, *shape: int, grad: bool = False) -> Tensor:
    return torch.full(shape or (2, 1, 3, 3), float(value), requires_grad=grad)


# ---- adversarial ------------------------------------------------------------------------------------------


def test_hinge_exact_values():
    loss = AdversarialLoss(form="hinge")
    assert loss.discriminator_loss(real_logits=[_full(2)], fake_logits=[_full(-2)]).item() == 0.0
    assert loss.discriminator_loss(real_logits=[_full(-2)], fake_logits=[_full(2)]).item() == 6.0
    real, fake = torch.tensor([2.0, 0.5]), torch.tensor([-2.0, 0.5])
    # relu(1 - r) = [0, 0.5], relu(1 + f) = [0, 1.5]
    assert loss.discriminator_loss(real_logits=[real], fake_logits=[fake]).item() == pytest.approx(
        0.25 + 0.75
    )
    assert loss.generator_loss(fake_logits=[fake]).item() == pytest.approx(0.75)


def test_lsgan_exact_values():
    loss = AdversarialLoss(form="lsgan")
    real, fake = torch.tensor([2.0, 0.0]), torch.tensor([1.0, -1.0])
    assert loss.discriminator_loss(real_logits=[real], fake_logits=[fake]).item() == pytest.approx(1.0 + 1.0)
    assert loss.generator_loss(fake_logits=[fake]).item() == pytest.approx((0 + 4) / 2)


def test_non_saturating_exact_values():
    loss = AdversarialLoss(form="non_saturating")
    zero = [_full(0)]
    assert loss.discriminator_loss(real_logits=zero, fake_logits=zero).item() == pytest.approx(
        2 * math.log(2)
    )
    assert loss.generator_loss(fake_logits=[_full(2)]).item() == pytest.approx(math.log1p(math.exp(-2)))


def test_adversarial_averages_over_scales_and_accepts_a_single_tensor():
    loss = AdversarialLoss(form="hinge")
    assert loss.generator_loss(fake_logits=[_full(1), _full(3, 2, 1, 5, 5)]).item() == pytest.approx(-2.0)
    assert loss.generator_loss(fake_logits=_full(3)).item() == pytest.approx(-3.0)
    with pytest.raises(ValueError, match="scales"):
        loss.discriminator_loss(real_logits=[_full(1)], fake_logits=[_full(1), _full(1)])


@pytest.mark.parametrize("form", ["hinge", "lsgan", "non_saturating"])
def test_adversarial_gradients_reach_fake(form):
    fake = torch.randn(2, 1, 4, 4, requires_grad=True)
    AdversarialLoss(form=form).generator_loss(fake_logits=[fake]).backward()
    assert fake.grad is not None and fake.grad.abs().sum() > 0


def test_adversarial_unknown_form_lists_the_forms():
    with pytest.raises(ValueError, match="hinge.*lsgan.*non_saturating"):
        AdversarialLoss(form="wgan")


# ---- gradient penalty and R1 ------------------------------------------------------------------------------


def test_gradient_penalty_exact_for_a_linear_critic():
    critic = LinearCritic((3, 4, 4), norm=3.0)
    real, fake = torch.rand(5, 3, 4, 4), torch.rand(5, 3, 4, 4)
    gp = GradientPenalty().discriminator_loss(real=real, fake=fake, discriminator=critic, step=7)
    assert gp.item() == pytest.approx((3.0 - 1.0) ** 2, rel=1e-5)
    gp.backward()  # create_graph=True makes the penalty a function of D's weights
    a = critic.a.detach()
    torch.testing.assert_close(critic.a.grad, 2 * (3.0 - 1.0) * a / a.norm())
    target = GradientPenalty(target=3.0).discriminator_loss(real=real, fake=fake, discriminator=critic)
    assert target.item() == pytest.approx(0.0, abs=1e-5)


def test_r1_exact_for_a_linear_critic():
    critic = LinearCritic((3, 4, 4), norm=3.0)
    real = torch.rand(4, 3, 4, 4)
    r1 = R1Penalty().discriminator_loss(real=real, discriminator=critic, step=0)
    assert r1.item() == pytest.approx(9.0, rel=1e-5)
    r1.backward()
    torch.testing.assert_close(critic.a.grad, 2 * critic.a.detach())


@pytest.mark.parametrize("cls", [GradientPenalty, R1Penalty])
def test_lazy_interval_returns_none_off_step_and_k_times_on_step(cls):
    critic = LinearCritic((3, 4, 4), norm=2.0)
    step = {"real": torch.rand(2, 3, 4, 4), "fake": torch.rand(2, 3, 4, 4), "discriminator": critic}
    every = cls(interval=1).discriminator_loss(**step, step=3)
    lazy = cls(interval=4)
    assert [lazy.discriminator_loss(**step, step=s) for s in (1, 2, 3, 5)] == [None] * 4
    for s in (0, 4, 8):
        assert lazy.discriminator_loss(**step, step=s).item() == pytest.approx(4 * every.item(), rel=1e-5)
    with pytest.raises(ValueError, match="step"):
        lazy.discriminator_loss(**step, step=None)
    with pytest.raises(ValueError):
        cls(interval=0)


def test_penalties_backpropagate_into_a_real_multiscale_discriminator():
    d = MultiScalePatchDiscriminator(num_scales=2, base_channels=4, num_layers=1, norm="spectral")
    real = torch.rand(2, 3, 32, 32)
    fake = torch.rand(2, 3, 32, 32, requires_grad=True)
    gp = GradientPenalty().discriminator_loss(real=real, fake=fake, discriminator=d)
    total = gp + R1Penalty().discriminator_loss(real=real, discriminator=d)
    assert torch.isfinite(total)
    total.backward()
    # every conv weight receives a gradient (biases cannot: ∇ₓD does not depend on them)
    weights = [p for p in d.parameters() if p.dim() > 1]
    assert len(weights) == 2 * 4 and all(p.grad is not None and p.grad.abs().sum() > 0 for p in weights)
    assert fake.grad is None  # fake is detached: the penalty trains D only


# ---- perceptual -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("distance", "expected"), [("l1", 0.5 * 1 + 2.0 * 2), ("l2", 0.5 * 1 + 2.0 * 4)])
def test_perceptual_exact_weighted_sum(distance, expected):
    loss = PerceptualLoss(ScaledFeatures(), ["a", "b"], layer_weights=[0.5, 2.0], distance=distance)
    real = torch.rand(2, 3, 8, 8)
    fake = (real + 1.0).requires_grad_(True)  # |φ_l(fake) − φ_l(real)| = l everywhere
    value = loss.generator_loss(fake=fake, real=real)
    assert value.item() == pytest.approx(expected)
    assert loss.generator_loss(fake=real, real=real).item() == 0.0
    value.backward()
    assert fake.grad is not None and fake.grad.abs().sum() > 0


def test_perceptual_freezes_the_network_and_detaches_real():
    net = ScaledFeatures()
    loss = PerceptualLoss(net, ["a"])
    assert not net.scale.requires_grad
    real = torch.rand(1, 3, 8, 8, requires_grad=True)
    fake = torch.rand(1, 3, 8, 8, requires_grad=True)
    loss.generator_loss(fake=fake, real=real).backward()
    assert real.grad is None and fake.grad is not None


def test_perceptual_normalize_ignores_per_channel_affine_changes():
    loss = PerceptualLoss(ScaledFeatures(), ["a", "b"], distance="l2", normalize=True)
    real = torch.rand(2, 3, 8, 8)
    assert loss.generator_loss(fake=2 * real + 1, real=real).item() == pytest.approx(0.0, abs=1e-6)
    assert loss.generator_loss(fake=real.flip(-1).square(), real=real).item() > 1e-3


@pytest.mark.parametrize(
    "kwargs",
    [{"layers": ["a", "b"], "layer_weights": [1.0]}, {"layers": []}, {"layers": ["a"], "distance": "cosine"}],
)
def test_perceptual_bad_options_raise(kwargs):
    with pytest.raises(ValueError):
        PerceptualLoss(ScaledFeatures(), **kwargs)


# ---- identity ---------------------------------------------------------------------------------------------


def test_identity_zero_for_same_image_and_two_for_opposite_embeddings():
    loss = IdentityLoss(ScaledFeatures())
    x = torch.rand(3, 3, 8, 8)
    assert loss.generator_loss(fake=x, source=x).item() == pytest.approx(0.0, abs=1e-6)
    fake = torch.ones(1, 3, 4, 4) * torch.tensor([1.0, 0.5, 0.5]).view(1, 3, 1, 1)  # embeds to +e1
    source = torch.ones(1, 3, 4, 4) * torch.tensor([0.0, 0.5, 0.5]).view(1, 3, 1, 1)  # embeds to −e1
    assert loss.generator_loss(fake=fake, source=source).item() == pytest.approx(2.0)


def test_identity_gradients_reach_fake_only_and_source_embedding_skips_the_forward():
    net = ScaledFeatures()
    loss = IdentityLoss(net)
    fake = torch.rand(2, 3, 8, 8, requires_grad=True)
    source = torch.rand(2, 3, 8, 8, requires_grad=True)
    value = loss.generator_loss(fake=fake, source=source)
    value.backward()
    assert fake.grad is not None and fake.grad.abs().sum() > 0 and source.grad is None
    precomputed = loss.generator_loss(fake=fake, source_embedding=net.embed(source))
    assert precomputed.item() == pytest.approx(value.item())
    with pytest.raises(ValueError, match="source"):
        loss.generator_loss(fake=fake)


# ---- feature matching -------------------------------------------------------------------------------------


def _features(seed: int = 0, scales: int = 2) -> list[list[Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [[torch.randn(2, c, 4, 4, generator=g) for c in (2, 3, 4, 5, 1)] for _ in range(scales)]


def _shifted(features: list[list[Tensor]], layer: int, by: float) -> list[list[Tensor]]:
    return [[f + by if i == layer else f for i, f in enumerate(scale)] for scale in features]


def test_feature_matching_exact_value_and_identical_is_zero():
    real = _features()
    loss = FeatureMatchingLoss(layers="all")
    assert loss.generator_loss(fake_features=real, real_features=real).item() == 0.0
    fake = _shifted(_shifted(real, 0, 1.0), 3, 0.5)
    # per scale Σ_l mean|Δ_l| = 1 + 0.5, then the mean over the two scales
    assert loss.generator_loss(fake_features=fake, real_features=real).item() == pytest.approx(1.5)
    assert loss.generator_loss(fake_features=_shifted(real, 4, 9.0), real_features=real).item() == 0.0


def test_weak_feature_matching_uses_only_the_last_k_before_the_logits():
    real = _features()
    weak = FeatureMatchingLoss(layers=2)  # features 2 and 3 of [0, 1, 2, 3, logits]
    for shallow in (0, 1, 4):
        assert (
            weak.generator_loss(fake_features=_shifted(real, shallow, 1.0), real_features=real).item() == 0.0
        )
    assert weak.generator_loss(fake_features=_shifted(real, 2, 1.0), real_features=real).item() == 1.0
    explicit = FeatureMatchingLoss(layers=[1, -1])
    assert explicit.generator_loss(fake_features=_shifted(real, 4, 2.0), real_features=real).item() == 2.0


def test_feature_matching_gradients_reach_fake_not_real():
    d = MultiScalePatchDiscriminator(num_scales=2, base_channels=4, num_layers=1, norm="none")
    fake = torch.rand(2, 3, 32, 32, requires_grad=True)
    real = torch.rand(2, 3, 32, 32, requires_grad=True)
    _, fake_features = d(fake)
    _, real_features = d(real)
    FeatureMatchingLoss(layers=3).generator_loss(
        fake_features=fake_features, real_features=real_features
    ).backward()
    assert fake.grad is not None and fake.grad.abs().sum() > 0 and real.grad is None


@pytest.mark.parametrize("layers", ["deep", 0, []])
def test_feature_matching_bad_layers_raise(layers):
    with pytest.raises(ValueError):
        FeatureMatchingLoss(layers=layers)


@pytest.mark.parametrize("layers", [5, [7]])
def test_feature_matching_out_of_range_raises_at_call(layers):
    real = _features()
    with pytest.raises(ValueError):
        FeatureMatchingLoss(layers=layers).generator_loss(fake_features=real, real_features=real)


# ---- cycle, mask, ssim ------------------------------------------------------------------------------------


def test_cycle_exact_values_and_gradient():
    x = torch.rand(2, 3, 8, 8)
    loss = CycleLoss(weight=10.0)
    assert loss.generator_loss(cycled=x, input=x).item() == 0.0
    cycled = (x + 0.25).requires_grad_(True)
    value = loss.generator_loss(cycled=cycled, input=x)
    assert value.item() == pytest.approx(0.25)
    value.backward()
    assert cycled.grad is not None
    with pytest.raises(ValueError, match="cycled"):
        loss.generator_loss(input=x)


def test_mask_exact_values():
    loss = MaskLoss(mean_weight=1.0, tv_weight=0.1)
    assert loss.generator_loss(mask=torch.zeros(2, 1, 8, 8)).item() == 0.0
    assert loss.generator_loss(mask=torch.full((2, 1, 8, 8), 0.3)).item() == pytest.approx(0.3)  # no TV
    checker = torch.tensor([[0.0, 1.0], [1.0, 0.0]]).view(1, 1, 2, 2).requires_grad_(True)
    value = loss.generator_loss(mask=checker)  # mean 0.5; every neighbour differs by 1: TV = 1 + 1
    assert value.item() == pytest.approx(0.5 + 0.1 * 2.0)
    value.backward()
    assert checker.grad is not None
    assert loss.generator_loss(mask=None) is None


def test_ssim_zero_for_same_image_and_exact_for_constant_images():
    x = torch.rand(2, 3, 16, 16)
    loss = SSIMLoss(window_size=11)
    assert loss.generator_loss(fake=x, real=x).item() == pytest.approx(0.0, abs=1e-6)
    # Constant images: only the luminance term is left, SSIM = (2ab + C1) / (a² + b² + C1), C1 = 0.01².
    a, b, c1 = 0.2, 0.7, 1e-4
    expected = (1 - (2 * a * b + c1) / (a * a + b * b + c1)) / 2
    value = loss.generator_loss(fake=torch.full((1, 1, 16, 16), a), real=torch.full((1, 1, 16, 16), b))
    assert value.item() == pytest.approx(expected, rel=1e-3)


def test_ssim_window_reaches_kornia_and_gradients_flow():
    fake = torch.rand(1, 3, 16, 16, requires_grad=True)
    real = torch.rand(1, 3, 16, 16)
    value = SSIMLoss(window_size=5).generator_loss(fake=fake, real=real)
    assert value.item() == pytest.approx(ssim_loss(fake, real, 5).item())
    assert value.item() != pytest.approx(ssim_loss(fake, real, 11).item())
    value.backward()
    assert fake.grad is not None and torch.isfinite(fake.grad).all()
    with pytest.raises(ValueError):
        SSIMLoss(window_size=4)


# ---- every conf/loss YAML instantiates and runs on a full step -------------------------------------------


def _step() -> dict:
    torch.manual_seed(0)
    d = MultiScalePatchDiscriminator(num_scales=2, base_channels=4, num_layers=1, norm="spectral")
    fake = torch.rand(2, 3, 32, 32, requires_grad=True)
    real = torch.rand(2, 3, 32, 32)
    fake_logits, fake_features = d(fake)
    real_logits, real_features = d(real)
    step = {
        "fake": fake,
        "real": real,
        "input": torch.rand(2, 3, 32, 32),
        "source": torch.rand(2, 3, 32, 32),
        "mask": torch.rand(2, 1, 32, 32),
        "cycled": torch.rand(2, 3, 32, 32),
        "same_identity": torch.tensor([True, False]),
        "fake_logits": fake_logits,
        "real_logits": real_logits,
        "fake_features": fake_features,
        "real_features": real_features,
        "discriminator": d,
        "step": 0,
        "weights": torch.rand(2, 1, 32, 32) * 3,
        "face_mask": (torch.rand(2, 1, 32, 32) > 0.5).float(),
        "translated": torch.rand(2, 3, 32, 32, requires_grad=True),
        "expression": torch.randn(2, 6),
        "translated_expression": torch.randn(2, 6),
    }
    assert set(step) == set(STEP_KEYS)
    return step


@pytest.mark.parametrize("path", LOSS_CONFS, ids=lambda p: p.stem)
def test_loss_config_instantiates_and_runs(path):
    cfg = OmegaConf.merge(OmegaConf.load(path), {"paths": {"pretrained_dir": "/pretrained"}})
    assert [k for k in cfg if k != "paths"] == [path.stem]  # nested under its own name
    node = cfg[path.stem]
    assert node.weight >= 0
    kwargs = {}
    if "network" in node and node.network is None:  # the module gives it one (identity: the generator's)
        kwargs["network"] = ScaledFeatures()
    elif "network" in node:  # check its node; a frozen pretrained net is swapped for a stub
        net_cls = get_class(node.network._target_)
        assert set(node.network) - {"_target_"} <= set(inspect.signature(net_cls).parameters)
        if _pretrained(node.network):
            assert node.network.get("weights") is None or node.network.weights.startswith("/pretrained/")
            node.network = None
            kwargs["network"] = ScaledFeatures()
    term = instantiate(node, **kwargs)
    assert term.weight == node.weight
    step = _step()
    results = [term.generator_loss(**step), term.discriminator_loss(**step)]
    values = [r for r in results if r is not None]
    assert values and all(v.dim() == 0 and torch.isfinite(v) for v in values)


def _pretrained(network_node) -> bool:
    """A frozen public network (it loads ``weights``), as opposed to one the run trains."""
    return "weights" in inspect.signature(get_class(network_node._target_)).parameters


def _term_from_config(path: Path):
    node = OmegaConf.load(path)[path.stem]
    kwargs = {}
    if "network" in node and (node.network is None or _pretrained(node.network)):
        node.network = None
        kwargs["network"] = ScaledFeatures()
    if "start_step" in node:  # a term that waits: on from the first step here
        node.start_step = 0
    return instantiate(node, **kwargs)


# what the generator produced: gradients may reach these; the data: never send gradients there
GENERATOR_INPUTS = ("fake", "mask", "cycled", "translated")
FIXED_INPUTS = ("real", "input", "source", "weights", "face_mask", "expression", "translated_expression")


@pytest.mark.parametrize("path", LOSS_CONFS, ids=lambda p: p.stem)
def test_every_loss_sends_gradients_only_where_it_should(path):
    term = _term_from_config(path)
    step = _step()
    for key in GENERATOR_INPUTS + FIXED_INPUTS:
        step[key] = step[key].detach().requires_grad_(True)
    d = step["discriminator"]
    step["fake_logits"], step["fake_features"] = d(step["fake"])
    step["real_logits"], step["real_features"] = d(step["real"])

    g = term.generator_loss(**step)
    if g is not None:
        assert g.dim() == 0 and torch.isfinite(g)
        d.zero_grad(set_to_none=True)
        g.backward()
        assert any(step[k].grad is not None and step[k].grad.abs().sum() > 0 for k in GENERATOR_INPUTS)
        leaked = [k for k in FIXED_INPUTS if step[k].grad is not None and step[k].grad.abs().sum() > 0]
        assert not leaked, f"gradients reached the data: {leaked}"

    # the discriminator phase sees detached fakes; its loss must train D and touch no image
    d_step = _step()
    fake = d_step["fake"].detach().requires_grad_(True)
    real = d_step["real"].detach().requires_grad_(True)
    d.zero_grad(set_to_none=True)
    d_step.update(fake=fake.detach(), real=real.detach(), discriminator=d)
    d_step["fake_logits"], _ = d(d_step["fake"])
    d_step["real_logits"], _ = d(d_step["real"])
    value = term.discriminator_loss(**d_step)
    if value is not None:
        assert value.dim() == 0 and torch.isfinite(value)
        value.backward()
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in d.parameters())
        assert fake.grad is None and real.grad is None
