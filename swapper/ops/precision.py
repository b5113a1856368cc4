"""The training precision a machine runs fastest at without losing quality (``conf/trainer/cpu.yaml``).

bf16 autocast pays where the hardware multiplies bf16 natively: any CUDA GPU that supports bf16
(Ampere and newer) and x86 CPUs with AVX512-BF16 or AMX-BF16 (oneDNN then runs convolutions in bf16,
1.8-1.9× faster per Deepfakes step on 2 AVX512-BF16 cores; README "Speed"), or ARM CPUs with the BF16
extension. Elsewhere oneDNN emulates bf16 with fp32 instructions, which does not pay, so the answer
there is fp32.

How the CPU is read: the ``flags`` (x86) or ``Features`` (ARM) line of ``/proc/cpuinfo``. Neither
``torch.backends.cpu.get_cpu_capability()`` (it says "AVX512" on AVX512-BF16 machines too) nor
``torch.ops.mkldnn._is_mkldnn_bf16_supported()`` (true on any AVX512 CPU, emulated or not) tells
native bf16 apart. Without ``/proc/cpuinfo`` (macOS, Windows) the answer is fp32.
"""

from __future__ import annotations

from pathlib import Path

import torch

__all__ = ["NATIVE_BF16_FLAGS", "cpu_flags", "cpu_has_native_bf16", "default_precision"]

# x86: AVX512-BF16 (Cooper Lake, Zen 4+), AMX-BF16 (Sapphire Rapids+); ARM: FEAT_BF16 (Neoverse V1/N2+)
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})
CPUINFO = Path("/proc/cpuinfo")


def cpu_flags(cpuinfo: Path | None = None) -> frozenset[str]:
    """The CPU feature flags listed in ``cpuinfo`` (default :data:`CPUINFO`; empty when the file is
    missing or unreadable)."""
    try:
        text = (CPUINFO if cpuinfo is None else cpuinfo).read_text()
    except OSError:
        return frozenset()
    flags: set[str] = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):
            flags.update(value.split())
    return frozenset(flags)


def cpu_has_native_bf16(flags: frozenset[str] | None = None) -> bool:
    """Whether the CPU has bf16 arithmetic instructions (``flags``: as :func:`cpu_flags` reads them)."""
    return bool(NATIVE_BF16_FLAGS & (cpu_flags() if flags is None else flags))


def default_precision(accelerator: str = "cpu", flags: frozenset[str] | None = None) -> str:
    """Lightning's ``precision`` for ``accelerator``: "bf16-mixed" where bf16 is native (see the module
    docstring), else "32-true". ``auto`` asks about the GPU when there is one, else about the CPU."""
    if accelerator == "auto":
        accelerator = "gpu" if torch.cuda.is_available() else "cpu"
    if accelerator in ("gpu", "cuda"):
        return "bf16-mixed" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "32-true"
    if accelerator == "cpu":
        return "bf16-mixed" if cpu_has_native_bf16(flags) else "32-true"
    return "32-true"  # other accelerators (mps, tpu): choose with trainer.precision
