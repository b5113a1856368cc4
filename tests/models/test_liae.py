"""DeepFaceLab's LIAE generator: parameter count, code layout, shapes, configs, strict loading."""

from __future__ import annotations

import pytest
import torch
from helpers import compose_train
from hydra.utils import instantiate
from omegaconf import OmegaConf
from test_configs import allow_random_weights
from torch import nn

from swapper.inference.loading import load_generator
from swapper.models.decoders import DeepfakesDecoder
from swapper.models.liae import LIAEEncoder, LIAEGenerator, LIAEInter
from swapper.ops.options import unused_options


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def conv(cin: int, cout: int, k: int) -> int:
    return cin * cout * k * k + cout


def dense(fin: int, fout: int) -> int:
    return fin * fout + fout


def tiny(out_channels: int = 3) -> LIAEGenerator:
    inter = dict(in_channels=8, latent_size=4, bottleneck=8, latent_channels=8, out_channels=4)
    return LIAEGenerator(
        LIAEEncoder(64, widths=(4, 4, 8, 8)),
        LIAEInter(**inter),
        LIAEInter(**inter),
        DeepfakesDecoder(in_channels=8, widths=(8, 4, 4), out_channels=out_channels),
    )


def test_the_module_configs_liae_has_the_parameter_count_of_its_layers(tmp_path):
    cfg = compose_train(["module=liae"], tmp_path)
    generator = instantiate(cfg.module.generator)
    assert isinstance(generator, LIAEGenerator)
    encoder = conv(3, 16, 5) + conv(16, 32, 5) + conv(32, 64, 5) + conv(64, 128, 5)  # (B, 128, 4, 4) at 64 px
    # the upscale's conv makes 4× its channels for the pixel shuffle
    inter = dense(128 * 4 * 4, 128) + dense(128, 4 * 4 * 128) + conv(128, 4 * 64, 3)
    decoder = conv(2 * 64, 4 * 64, 3) + conv(64, 4 * 32, 3) + conv(32, 4 * 16, 3) + conv(16, 3, 5)
    assert n_params(generator.encoder) == encoder == 270_240
    assert n_params(generator.inter_shared) == n_params(generator.inter_b) == inter == 821_632
    assert n_params(generator.decoder) == decoder == 388_723
    assert n_params(generator) == encoder + 2 * inter + decoder == 2_302_227


def test_code_layout_identity_a_is_shared_twice_b_is_inter_b_then_shared():
    generator = tiny().eval()
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        z = generator.encoder(x)
        shared, own = generator.inter_shared(z), generator.inter_b(z)
        torch.testing.assert_close(generator.code(x, "a"), torch.cat([shared, shared], 1), rtol=0, atol=0)
        torch.testing.assert_close(generator.code(x, "b"), torch.cat([own, shared], 1), rtol=0, atol=0)
    with pytest.raises(ValueError, match="identity"):
        generator.code(x, "c")


@pytest.mark.parametrize(("direction", "uses_inter_b"), [("b2a", False), ("a2b", True)])
def test_swap_b2a_runs_the_shared_inter_only(direction, uses_inter_b):
    generator = tiny()
    generator.swap(torch.rand(2, 3, 64, 64), direction).square().mean().backward()
    for name in ("encoder", "inter_shared", "decoder"):
        assert all(
            p.grad is not None and p.grad.abs().sum() > 0 for p in getattr(generator, name).parameters()
        )
    grads = [p.grad for p in generator.inter_b.parameters()]
    assert all(g is not None for g in grads) if uses_inter_b else all(g is None for g in grads)


def test_shapes_and_rgba_composition():
    x = torch.rand(2, 3, 64, 64)
    rgb = tiny()
    image, mask = rgb.swap_to(x, rgb.target_identity(direction="b2a"))
    assert image.shape == x.shape and mask is None
    assert rgb(x, "a2b").shape == x.shape
    rgba = tiny(out_channels=4)
    image, mask = rgba.decode(x, "b")
    raw, alpha = rgba.decoder(rgba.code(x, "b")).split([3, 1], 1)
    assert mask.shape == (2, 1, 64, 64)
    torch.testing.assert_close(image, alpha * raw + (1 - alpha) * x)
    background = torch.zeros_like(x)
    torch.testing.assert_close(rgba.decode(x, "b", background)[0], alpha * raw)


def test_wrong_sizes_are_clear_errors():
    with pytest.raises(ValueError, match="in_channels to their sum"):
        LIAEGenerator(
            LIAEEncoder(64, widths=(4, 4, 8, 8)),
            LIAEInter(8, 4, 8, 8, 4),
            LIAEInter(8, 4, 8, 8, 4),
            DeepfakesDecoder(in_channels=4),
        )
    inter = LIAEInter(8, 4, 8, 8, 4)
    with pytest.raises(ValueError, match=r"image_size / 16"):
        inter(torch.rand(1, 8, 8, 8))  # a 128 px encoder output into an inter built for 64 px
    with pytest.raises(ValueError, match="multiple of 16"):
        LIAEEncoder(72)
    with pytest.raises(ValueError, match="direction"):
        tiny().target_identity(source=torch.rand(1, 3, 64, 64))


def test_module_liae_composes_with_the_defaults_and_keeps_per_pairs_options(tmp_path):
    liae = compose_train(["module=liae"], tmp_path / "liae")
    assert liae.encoder._target_ == "swapper.models.liae.LIAEEncoder"  # the module selects its own encoder
    assert unused_options(liae) == []
    per_pair = compose_train(["module=per_pair"], tmp_path / "per_pair")
    # module/liae.yaml repeats per_pair's module options: they must stay the same
    ours, theirs = (OmegaConf.to_container(c.module) for c in (liae, per_pair))
    ours.pop("generator"), theirs.pop("generator")
    assert ours == theirs
    rgba = compose_train(["module=liae", "decoder=liae_rgba_lite"], tmp_path / "rgba")
    assert rgba.decoder.out_channels == 4  # the command line still chooses


def test_liae_loads_strictly_from_a_run_directory(tmp_path):
    run_dir = tmp_path / "run"
    cfg = compose_train(["module=liae"], run_dir)
    allow_random_weights(cfg)
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    torch.manual_seed(0)
    module = instantiate(cfg.module)
    (run_dir / "checkpoints").mkdir()
    torch.save({"state_dict": module.state_dict()}, run_dir / "checkpoints" / "last.ckpt")

    loaded = load_generator(run_dir, "last", "cpu")
    generator = loaded.generator
    assert isinstance(generator, LIAEGenerator) and not generator.training
    expected = module.generator.state_dict()
    assert generator.state_dict().keys() == expected.keys()
    assert all(torch.equal(generator.state_dict()[k], expected[k]) for k in expected)
    faces = torch.rand(2, 3, loaded.crop.size, loaded.crop.size)
    with torch.no_grad():
        swapped, mask = generator.swap_to(faces, generator.target_identity(direction="b2a"))
        torch.testing.assert_close(swapped, module.generator.eval().swap(faces, "b2a"))
    assert swapped.shape == faces.shape and mask is None
