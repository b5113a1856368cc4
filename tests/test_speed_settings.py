"""Speed settings: bf16 autocast (chosen from the CPU's flags), fused Adam, torch.compile, channels-last."""

from __future__ import annotations

import copy

import pytest
import torch
from helpers import compose_train
from hydra.utils import instantiate
from torch import nn
from torch.nn import functional as F

from swapper.callbacks.compile import ChannelsLast, CompileModels, trained_networks
from swapper.models.decoders import DeepfakesDecoder
from swapper.models.discriminators import PatchDiscriminator
from swapper.models.encoders import DeepfakesEncoder
from swapper.models.generators import IdentityInjectionGenerator, PerPairGenerator
from swapper.ops import precision

X86_BF16 = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512bw avx512_bf16 avx512_vnni\n"
X86_AMX = "flags\t\t: fpu avx512f amx_tile amx_bf16 amx_int8\n"
X86_AVX512 = "flags\t\t: fpu sse2 avx2 avx512f avx512bw avx512vl\n"  # bf16 only emulated by oneDNN
ARM_BF16 = "Features\t: fp asimd sve bf16 i8mm\n"
ARM_PLAIN = "Features\t: fp asimd evtstrm aes\n"


def _tiny_generator() -> PerPairGenerator:
    encoder = DeepfakesEncoder(
        image_size=32,
        widths=[8, 16, 32, 64],
        bottleneck=64,
        latent_size=2,
        latent_channels=32,
        out_channels=16,
    )
    return PerPairGenerator(encoder, DeepfakesDecoder(16, [16, 8, 8], 3), DeepfakesDecoder(16, [16, 8, 8], 3))


# ---- precision --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("cpuinfo", "expected"),
    [
        (X86_BF16, "bf16-mixed"),
        (X86_AMX, "bf16-mixed"),
        (ARM_BF16, "bf16-mixed"),
        (X86_AVX512, "32-true"),
        (ARM_PLAIN, "32-true"),
        ("", "32-true"),
    ],
    ids=["avx512_bf16", "amx_bf16", "arm_bf16", "avx512_only", "arm_plain", "empty"],
)
def test_cpu_precision_follows_the_cpuinfo_flags(cpuinfo, expected, tmp_path, monkeypatch):
    path = tmp_path / "cpuinfo"
    path.write_text(cpuinfo)
    monkeypatch.setattr(precision, "CPUINFO", path)
    assert precision.default_precision("cpu") == expected
    assert precision.cpu_has_native_bf16() == (expected == "bf16-mixed")


def test_missing_cpuinfo_means_fp32(tmp_path, monkeypatch):
    monkeypatch.setattr(precision, "CPUINFO", tmp_path / "absent")
    assert precision.cpu_flags() == frozenset()
    assert precision.default_precision("cpu") == "32-true"


def test_gpu_precision_is_bf16_only_where_cuda_supports_it(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert precision.default_precision("gpu") == "32-true"
    assert precision.default_precision("auto", flags=frozenset({"amx_bf16"})) == "bf16-mixed"  # → the CPU
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert precision.default_precision("gpu") == precision.default_precision("auto") == "bf16-mixed"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    assert precision.default_precision("cuda") == "32-true"


@pytest.mark.parametrize(
    ("cpuinfo", "expected"), [(X86_BF16, "bf16-mixed"), (X86_AVX512, "32-true")], ids=["bf16", "fp32"]
)
def test_cpu_trainer_config_builds_the_detected_precision(cpuinfo, expected, tmp_path, monkeypatch):
    path = tmp_path / "cpuinfo"
    path.write_text(cpuinfo)
    monkeypatch.setattr(precision, "CPUINFO", path)
    cfg = compose_train(["logger=none"], tmp_path)
    trainer = instantiate(cfg.trainer, callbacks=[], logger=False)
    assert trainer.precision == expected
    # an explicit choice replaces the detection
    cfg = compose_train(["logger=none", "trainer.precision=32-true"], tmp_path)
    assert cfg.trainer.precision == "32-true"


def _l1_step(generator: nn.Module, batch: torch.Tensor, bf16: bool) -> tuple[float, list[torch.Tensor]]:
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        loss = sum(F.l1_loss(generator.decode(batch, side)[0].float(), batch) for side in ("a", "b"))
    loss.backward()
    return loss.item(), [p.grad.clone() for p in generator.parameters()]


def test_bf16_step_is_finite_and_close_to_fp32():
    torch.manual_seed(0)
    generator = _tiny_generator()
    twin = copy.deepcopy(generator)
    batch = torch.rand(8, 3, 32, 32)
    loss32, grads32 = _l1_step(generator, batch, bf16=False)
    loss16, grads16 = _l1_step(twin, batch, bf16=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert twin.encoder(batch[:1]).dtype == torch.bfloat16  # the convolutions really ran in bf16
    assert twin.encoder(batch[:1]).dtype == torch.float32
    assert all(torch.isfinite(g).all() for g in grads16)
    # bf16 keeps 8 significant bits: each rounded product is off by at most 2^-9 ≈ 0.2 % relative, and oneDNN
    # accumulates in fp32. The loss, a mean over 2 × 24k pixels, averages those errors out (measured: 1.5e-5
    # relative); 0.1 % is half a single rounding, which a wrong dtype path (bf16 accumulation, fp16 overflow)
    # exceeds. Per tensor, the gradients keep their direction (measured cosine >= 0.99).
    assert loss16 == pytest.approx(loss32, rel=1e-3)
    # the update direction: every gradient tensor points the same way as in fp32
    for g32, g16 in zip(grads32, grads16, strict=True):
        assert F.cosine_similarity(g32.flatten(), g16.flatten(), dim=0) > 0.98


# ---- optimizer --------------------------------------------------------------------------------
def test_adam_config_builds_fused_and_matches_the_loop(tmp_path):
    cfg = compose_train(["discriminator=patch", "loss=[l1,adversarial]", "logger=none"], tmp_path)
    assert cfg.optimizer.generator.fused is True and cfg.optimizer.discriminator.fused is True
    torch.manual_seed(0)
    weights = [nn.Parameter(torch.randn(16, 8)), nn.Parameter(torch.randn(8))]
    reference = [nn.Parameter(w.detach().clone()) for w in weights]
    fused = instantiate(cfg.optimizer.generator)(weights)
    loop = torch.optim.Adam(reference, lr=fused.defaults["lr"], betas=fused.defaults["betas"])
    assert fused.defaults["fused"] is True and not loop.defaults["fused"]
    for _ in range(3):
        grads = [torch.randn_like(w) for w in weights]
        for w, r, g in zip(weights, reference, grads, strict=True):
            w.grad, r.grad = g.clone(), g.clone()
        fused.step()
        loop.step()
    for w, r in zip(weights, reference, strict=True):
        torch.testing.assert_close(w, r, rtol=1e-5, atol=1e-7)  # the same update up to rounding
    assert instantiate(cfg.optimizer.discriminator)(reference).defaults["fused"] is True


# ---- compile and channels-last ----------------------------------------------------------------
class _Frozen(nn.Module):
    embedding_dim = 4

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(3, 4)


class _Module(nn.Module):
    """What the callbacks read from a training module: a generator and discriminators."""

    def __init__(self, generator: nn.Module) -> None:
        super().__init__()
        self.generator = generator
        self.discriminators = nn.ModuleDict(
            {"a": PatchDiscriminator(3, 8, 1), "b": PatchDiscriminator(3, 8, 1)}
        )


def test_trained_networks_are_the_trained_parts():
    module = _Module(_tiny_generator())
    g, d = module.generator, module.discriminators
    assert [id(m) for m in trained_networks(module)] == [
        id(x) for x in (g.encoder, g.decoders["a"], g.decoders["b"], d["a"], d["b"])
    ]
    injection = IdentityInjectionGenerator(nn.Conv2d(3, 3, 1), _Frozen())
    assert [id(m) for m in trained_networks(_Module(injection))][:1] == [id(injection.network)]
    assert len(list(trained_networks(_Module(injection)))) == 3  # the frozen recogniser is left out


def test_compile_switch_keeps_state_dict_keys():
    module = _Module(_tiny_generator())
    before = {k: v.shape for k, v in module.state_dict().items()}
    CompileModels().setup(None, module, "fit")
    assert {k: v.shape for k, v in module.state_dict().items()} == before
    assert all(m._compiled_call_impl is not None for m in trained_networks(module))
    assert module.generator._compiled_call_impl is None  # its methods call the compiled parts


@pytest.mark.slow
def test_compiled_generator_computes_what_the_eager_one_does():
    torch.manual_seed(0)
    module = _Module(_tiny_generator())
    eager = copy.deepcopy(module.generator)
    CompileModels().setup(None, module, "fit")
    batch = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(module.generator.decode(batch, "b")[0], eager.decode(batch, "b")[0])


def test_channels_last_switch_keeps_keys_and_results():
    torch.manual_seed(0)
    module = _Module(_tiny_generator())
    eager = copy.deepcopy(module)
    before = {k: v.shape for k, v in module.state_dict().items()}
    ChannelsLast().setup(None, module, "fit")
    assert {k: v.shape for k, v in module.state_dict().items()} == before
    weights = [p for p in module.parameters() if p.dim() == 4]
    assert weights and all(p.is_contiguous(memory_format=torch.channels_last) for p in weights)
    batch = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        out = module.generator.decode(batch, "a")[0]
        torch.testing.assert_close(out, eager.generator.decode(batch, "a")[0], rtol=1e-4, atol=1e-5)
        logits, _ = module.discriminators["a"](batch)
        expected, _ = eager.discriminators["a"](batch)
        for a, b in zip(logits, expected, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
