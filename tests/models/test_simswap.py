"""SimSwap generator and ID Injection Module: parity with the released layout, AdaIN maths, contracts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from helpers import REFERENCE

from swapper.models.injection import AdaIN, IDBlock, IdentityInjectionBlocks
from swapper.models.simswap import (
    SimSwapDecoder,
    SimSwapEncoder,
    SimSwapGenerator,
    load_simswap_checkpoint,
    simswap_key_map,
)

CONF = Path(__file__).resolve().parents[2] / "conf"
LAYOUTS = {  # reference name -> (deep, base_channels)
    "simswap_generator_224": (False, 64),
    "simswap_generator_512": (True, 64),
    "simswap_generator_512_beta": (True, 32),
}


def _tsv_shapes(name: str) -> dict[str, tuple[int, ...]]:
    shapes = {}
    for line in (REFERENCE / f"{name}.tsv").read_text().splitlines():
        if not line or line.startswith("#"):
            continue
        key, shape = line.split("\t")
        shapes[key] = () if shape == "scalar" else tuple(int(s) for s in shape.split("x"))
    return shapes


def _summary(name: str) -> dict:
    return json.loads((REFERENCE / "summary.json").read_text())[name]


def _generator(deep: bool = False, output: str = "tanh01", **kw) -> SimSwapGenerator:
    return SimSwapGenerator(
        SimSwapEncoder(deep=deep, **kw),
        IdentityInjectionBlocks(),
        SimSwapDecoder(deep=deep, output=output, **kw),
    )


def _released(name: str) -> SimSwapGenerator:
    deep, base_channels = LAYOUTS[name]
    return _generator(deep=deep, base_channels=base_channels)


def _lite(deep: bool = False, output: str = "sigmoid", latent: int = 128, **kw) -> SimSwapGenerator:
    return SimSwapGenerator(
        SimSwapEncoder(base_channels=16, max_channels=64, deep=deep),
        IdentityInjectionBlocks(channels=64, latent_dim=latent, num_blocks=2),
        SimSwapDecoder(base_channels=16, max_channels=64, deep=deep, output=output),
        **kw,
    )


def _random_checkpoint(name: str) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    sd = {}
    for key, shape in _tsv_shapes(name).items():
        if key.endswith("num_batches_tracked"):
            sd[key] = torch.tensor(123)
        elif key.endswith("running_var"):
            sd[key] = torch.rand(shape, generator=gen) + 0.5
        else:
            sd[key] = torch.randn(shape, generator=gen)
    return sd


# ----- parity with the released layout -------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("simswap_generator_224", 55_051_779),
        ("simswap_generator_512", 59_773_443),
        ("simswap_generator_512_beta", 55_079_427),
    ],
)
def test_parameter_and_entry_counts_match_reference(name: str, params: int) -> None:
    ref = _summary(name)
    with torch.device("meta"):  # counts need no real weights
        model = _released(name)
    assert sum(p.numel() for p in model.parameters()) == ref["params"] == params
    assert len(model.state_dict()) == ref["state_dict_entries"]


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_key_map_covers_exactly_the_released_keys_with_matching_shapes(name: str) -> None:
    shapes = _tsv_shapes(name)
    deep, base_channels = LAYOUTS[name]
    key_map = simswap_key_map(deep, base_channels=base_channels)
    assert set(key_map) == set(shapes)
    with torch.device("meta"):
        own = _released(name).state_dict()
    assert sorted(key_map.values()) == sorted(own)  # a bijection onto the module's keys
    mapped = {src: tuple(own[dst].shape) for src, dst in key_map.items()}
    assert mapped == shapes


def test_key_map_names_the_released_levels() -> None:
    beta = simswap_key_map(deep=True, base_channels=32)
    assert beta["down0.0.weight"] == "encoder.downs.0.0.weight"  # 32 -> 64, the beta's extra level
    assert beta["down3.1.running_var"] == "encoder.downs.3.1.running_var"
    assert beta["up3.1.weight"] == "decoder.ups.0.1.weight"  # coarsest up first
    assert beta["up0.2.num_batches_tracked"] == "decoder.ups.3.2.num_batches_tracked"
    deep = simswap_key_map(deep=True)
    assert deep["down4.0.bias"] == "encoder.downs.3.0.bias" and "down0.0.bias" not in deep
    with pytest.raises(ValueError, match="16-channel stem"):
        simswap_key_map(deep=False, base_channels=16)


@pytest.fixture(scope="module")
def checkpoint_224() -> dict[str, torch.Tensor]:
    return _random_checkpoint("simswap_generator_224")


@pytest.mark.parametrize("prefix", ["", "module.", "netG."])
def test_load_checkpoint_copies_every_tensor(checkpoint_224: dict, prefix: str) -> None:
    model = _generator()
    state = {prefix + k: v for k, v in checkpoint_224.items()}
    if prefix == "netG.":  # a whole-model checkpoint also holds other nets, which are ignored
        state["netD.0.weight"] = torch.zeros(1)
    load_simswap_checkpoint(model, state)
    own = model.state_dict()
    for src, dst in simswap_key_map(deep=False).items():
        assert torch.equal(own[dst], checkpoint_224[src]), src


def test_load_deep_checkpoint() -> None:
    sd = _random_checkpoint("simswap_generator_512")
    model = _generator(deep=True)
    load_simswap_checkpoint(model, sd)
    assert torch.equal(model.encoder.downs[3][0].weight, sd["down4.0.weight"])
    assert torch.equal(model.decoder.ups[0][1].weight, sd["up4.1.weight"])  # coarsest up first
    assert torch.equal(model.decoder.ups[3][2].running_var, sd["up1.2.running_var"])


def test_load_512_beta_checkpoint_strictly_then_forward() -> None:
    sd = _random_checkpoint("simswap_generator_512_beta")
    assert len(sd) == _summary("simswap_generator_512_beta")["state_dict_entries"]
    model = _released("simswap_generator_512_beta")
    load_simswap_checkpoint(model, sd)
    own = model.state_dict()
    key_map = simswap_key_map(deep=True, base_channels=32)
    for src, dst in key_map.items():
        assert torch.equal(own[dst], sd[src]), src
    assert model.encoder.stem[1].out_channels == 32 and model.decoder.head[1].in_channels == 32
    model.eval()
    with torch.no_grad():  # 4 stride-2 levels: 64 px -> a 4 px bottleneck -> 64 px
        code = model.encoder(torch.rand(1, 3, 64, 64))
        out = model(torch.rand(1, 3, 64, 64), F.normalize(torch.randn(1, 512), dim=1))
    assert code.shape == (1, 512, 4, 4)
    assert out.shape == (1, 3, 64, 64)
    assert torch.isfinite(out).all() and out.min() >= 0 and out.max() <= 1  # tanh mapped to [0, 1]
    with pytest.raises(ValueError, match=r"missing keys \['down4"):  # the beta is not the deep recipe
        load_simswap_checkpoint(_generator(deep=True), sd)


def test_load_checkpoint_missing_unexpected_and_misshaped_keys(checkpoint_224: dict) -> None:
    model = _generator()
    missing = dict(checkpoint_224)
    del missing["BottleNeck.4.style2.linear.bias"]
    with pytest.raises(ValueError, match=r"BottleNeck\.4\.style2\.linear\.bias"):
        load_simswap_checkpoint(model, missing)
    extra = dict(checkpoint_224, **{"down9.0.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match=r"down9\.0\.weight"):
        load_simswap_checkpoint(model, extra)
    misshaped = dict(checkpoint_224, **{"last_layer.1.bias": torch.zeros(4)})
    with pytest.raises(ValueError, match=r"last_layer\.1\.bias"):
        load_simswap_checkpoint(model, misshaped)
    with torch.device("meta"), pytest.raises(ValueError, match="missing"):  # it lacks the deep level
        load_simswap_checkpoint(_generator(deep=True), checkpoint_224)
    with pytest.raises(ValueError, match="16-channel stem"):  # no released layout is this narrow
        load_simswap_checkpoint(_lite(), checkpoint_224)


def test_released_224_forward_shape() -> None:
    model = _generator().eval()
    with torch.no_grad():
        out = model(torch.rand(1, 3, 224, 224), F.normalize(torch.randn(1, 512), dim=1))
    assert list(out.shape) == _summary("simswap_generator_224")["output_shape"]
    assert out.min() >= 0 and out.max() <= 1


# ----- AdaIN / ID blocks ---------------------------------------------------------------------------


def test_adain_depends_on_id_vector() -> None:
    torch.manual_seed(0)
    adain = AdaIN(8, latent_dim=16)
    x = torch.randn(2, 8, 5, 5)
    assert not torch.allclose(adain(x, torch.randn(2, 16)), adain(x, torch.randn(2, 16)))


def test_adain_zero_style_is_plain_instance_norm() -> None:
    torch.manual_seed(0)
    adain = AdaIN(8, latent_dim=16)
    torch.nn.init.zeros_(adain.proj.weight)
    torch.nn.init.zeros_(adain.proj.bias)
    x = torch.randn(3, 8, 6, 7) * 5 + 2
    out = adain(x, torch.randn(3, 16))
    assert torch.allclose(out.mean(dim=(2, 3)), torch.zeros(3, 8), atol=1e-5)
    assert torch.allclose(out.std(dim=(2, 3), unbiased=False), torch.ones(3, 8), atol=1e-4)


def test_adain_scale_comes_first_then_shift() -> None:
    adain = AdaIN(2, latent_dim=4)
    torch.nn.init.zeros_(adain.proj.weight)
    with torch.no_grad():
        adain.proj.bias.copy_(torch.tensor([0.5, -0.25, 3.0, -1.0]))  # scale (c0, c1), shift (c0, c1)
    x = torch.randn(1, 2, 4, 4)
    norm = (x - x.mean(dim=(2, 3), keepdim=True)) / x.var(dim=(2, 3), keepdim=True, unbiased=False).sqrt()
    expected = norm * torch.tensor([1.5, 0.75]).view(1, 2, 1, 1) + torch.tensor([3.0, -1.0]).view(1, 2, 1, 1)
    assert torch.allclose(adain(x, torch.randn(1, 4)), expected, atol=1e-5)


def test_adain_gradients_reach_projection_and_id_vector() -> None:
    adain = AdaIN(4, latent_dim=8)
    id_vector = torch.randn(2, 8, requires_grad=True)
    adain(torch.randn(2, 4, 3, 3), id_vector).pow(2).sum().backward()
    assert adain.proj.weight.grad is not None and adain.proj.weight.grad.abs().sum() > 0
    assert id_vector.grad is not None and id_vector.grad.abs().sum() > 0


@pytest.mark.parametrize("padding", ["reflect", "replicate", "zero"])
def test_id_block_keeps_shape(padding: str) -> None:
    block = IDBlock(8, latent_dim=16, padding=padding)
    x = torch.randn(2, 8, 5, 6)
    out = block(x, torch.randn(2, 16))
    assert out.shape == x.shape
    assert not torch.allclose(out, x)


def test_id_block_rejects_unknown_padding() -> None:
    with pytest.raises(ValueError, match="circular"):
        IDBlock(8, padding="circular")


def test_injection_stacks_blocks() -> None:
    injection = IdentityInjectionBlocks(channels=8, latent_dim=16, num_blocks=3)
    assert len(injection.blocks) == 3
    assert injection(torch.randn(1, 8, 4, 4), torch.randn(1, 16)).shape == (1, 8, 4, 4)


# ----- generator contracts (lite preset, 64 px) ----------------------------------------------------


@pytest.mark.parametrize("deep", [False, True])
def test_encoder_decoder_shapes(deep: bool) -> None:
    encoder = SimSwapEncoder(base_channels=16, max_channels=64, deep=deep)
    code = encoder(torch.rand(2, 3, 64, 64))
    assert code.shape == (2, 64, 64 // encoder.downsample_factor, 64 // encoder.downsample_factor)
    assert encoder.downsample_factor == (16 if deep else 8)
    decoder = SimSwapDecoder(base_channels=16, max_channels=64, deep=deep)
    assert decoder(code).shape == (2, 3, 64, 64)


def test_output_modes_are_one_activation_of_the_same_network() -> None:
    torch.manual_seed(0)
    model = _lite(output="none").eval()
    target, id_vector = torch.rand(2, 3, 64, 64), F.normalize(torch.randn(2, 128), dim=1)
    with torch.no_grad():
        raw = model(target, id_vector)
        model.decoder.output = "sigmoid"
        sig = model(target, id_vector)
        model.decoder.output = "tanh01"
        tanh01 = model(target, id_vector)
    assert raw.shape == sig.shape == tanh01.shape == (2, 3, 64, 64)
    assert torch.allclose(sig, torch.sigmoid(raw)) and torch.allclose(tanh01, (torch.tanh(raw) + 1) / 2)
    for out in (sig, tanh01):
        assert out.min() >= 0 and out.max() <= 1
    with pytest.raises(ValueError, match="output"):
        SimSwapDecoder(output="relu")


def test_imagenet_io_wraps_normalisation() -> None:
    torch.manual_seed(0)
    model = _lite(output="none", imagenet_io=True).eval()
    target, id_vector = torch.rand(1, 3, 64, 64), torch.randn(1, 128)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        inner = model.decoder(model.injection(model.encoder((target - mean) / std), id_vector))
        assert torch.allclose(model(target, id_vector), inner * std + mean, atol=1e-6)


@pytest.mark.parametrize(("deep", "size", "factor"), [(False, 60, 8), (True, 72, 16)])
def test_bad_input_size_raises(deep: bool, size: int, factor: int) -> None:
    model = _lite(deep=deep)
    with pytest.raises(ValueError, match=rf"{size}x{size}.*factor {factor}"):
        model(torch.rand(1, 3, size, size), torch.randn(1, 128))


def test_bad_id_vector_raises() -> None:
    with pytest.raises(ValueError, match="id_vector"):
        _lite()(torch.rand(2, 3, 64, 64), torch.randn(1, 128))


def test_gradients_reach_first_encoder_conv_and_id_vector() -> None:
    model = _lite()
    id_vector = torch.randn(2, 128, requires_grad=True)
    model(torch.rand(2, 3, 64, 64), id_vector).mean().backward()
    first_conv = model.encoder.stem[1]
    assert first_conv.weight.grad is not None and first_conv.weight.grad.abs().sum() > 0
    assert id_vector.grad is not None and id_vector.grad.abs().sum() > 0
    assert all(p.grad is not None for p in model.parameters())


# ----- configs -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "params", "deep", "size", "latent"),
    [
        ("simswap", 55_051_779, False, 224, 512),
        ("simswap_deep", 59_773_443, True, 512, 512),
        ("simswap_512_beta", 55_079_427, True, 512, 512),
        ("simswap_lite", None, False, 64, 128),
    ],
)
def test_generator_configs_instantiate(
    name: str, params: int | None, deep: bool, size: int, latent: int
) -> None:
    hydra = pytest.importorskip("hydra")
    from hydra.utils import instantiate

    with hydra.initialize_config_dir(str(CONF.resolve()), version_base=None):
        cfg = hydra.compose(overrides=[f"+generator={name}"])
    with torch.device("meta"):
        model = instantiate(cfg.generator)
    assert isinstance(model, SimSwapGenerator)
    assert model.encoder.deep is deep and model.decoder.deep is deep
    assert size % model.downsample_factor == 0
    assert model.injection.latent_dim == latent and model.injection.channels == model.encoder.out_channels
    if params is not None:
        assert sum(p.numel() for p in model.parameters()) == params
    else:
        model = instantiate(cfg.generator)  # the CPU preset runs a real forward at its size
        assert model(torch.rand(1, 3, size, size), torch.randn(1, latent)).shape == (1, 3, size, size)
