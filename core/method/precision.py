"""The precision a model computes in: bf16 where the hardware has it, fp32 elsewhere.

PyTorch emulates bf16 on CPUs without it (slower than fp32), so ``auto`` asks the CPU: AVX-512 BF16 or AMX
flags in ``/proc/cpuinfo`` (read once per process), else PyTorch's own probes.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterable

import torch

from core.errors import PromptError

PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "fp16")
"""Precisions an engine computes in (under autocast; results are always float32)."""

#: /proc/cpuinfo flags of CPUs with bf16 arithmetic in hardware (AVX-512 BF16, AMX-BF16).
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})



def cpu_flags(cpuinfo: str | None = None) -> frozenset[str]:
    """The feature flags of the first CPU in ``/proc/cpuinfo`` (or of the given text); empty where unreadable."""
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
                cpuinfo = f.read()
        except OSError:
            return frozenset()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


@functools.cache
def _this_cpu_has_native_bf16() -> bool:
    found = cpu_flags()
    if found:
        return bool(found & NATIVE_BF16_FLAGS)
    for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        probe = getattr(torch.cpu, name, None)
        with contextlib.suppress(Exception):
            if probe is not None and probe():
                return True
    return False


def cpu_has_native_bf16(flags: Iterable[str] | None = None) -> bool:
    """Whether this CPU computes bf16 in hardware (AVX-512 BF16 or AMX), so that bf16 autocast is fast.

    Without it PyTorch emulates bf16 and autocast is slower than fp32. Reads the ``/proc/cpuinfo`` flags
    (``flags`` given: those, for tests); where there is no such file, asks PyTorch.

    Args:
        flags: CPU feature flags to decide on instead of this machine's.
    """
    if flags is None:
        # Asked once per process: reading /proc/cpuinfo interrupts every core (it measures their clocks),
        # which slowed the matrix products of a Query-DB re-rank that asked on every query.
        return _this_cpu_has_native_bf16()
    return bool(frozenset(flags) & NATIVE_BF16_FLAGS)


def resolve_precision(precision: str, device: torch.device, native_cpu_bf16: bool | None = None) -> str:
    """The precision an engine encodes photos in.

    ``auto``: bf16 on CUDA where supported (fp16 on older GPUs), bf16 on a CPU with native bf16 (several
    times faster than fp32 for a ViT forward there: README, "Measured figures"), fp32 on every other CPU and device.

    Raises:
        PromptError: an unknown precision.
    """
    if precision == "auto":
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        if device.type == "cpu":
            native = cpu_has_native_bf16() if native_cpu_bf16 is None else native_cpu_bf16
            return "bf16" if native else "fp32"
        return "fp32"
    if precision not in PRECISIONS:
        raise PromptError(f"Precision must be auto, fp32, bf16 or fp16, not '{precision}'.")
    return precision
