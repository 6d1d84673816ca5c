"""Which precision a device runs natively: bfloat16 matmuls where the hardware has them (AVX512-BF16 or AMX on a
CPU, a CUDA GPU with bf16), float32 elsewhere. What ``bf16: auto`` (planning) and ``train_bf16: auto`` (dynamics
training) decide on."""

from __future__ import annotations

import warnings
from contextlib import AbstractContextManager
from functools import cache
from pathlib import Path

import torch


@cache
def cpu_has_bf16() -> bool:
    """Native bfloat16 matmuls on this CPU (AVX512-BF16 or AMX), as torch detects them; else from /proc/cpuinfo."""
    checks = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    if all(callable(check) for check in checks):
        return any(check() for check in checks)
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def cpu_lacks_bf16() -> bool:
    """True when this CPU has no native bfloat16 matmuls: ``bf16: true`` is then emulated, and slow."""
    return not cpu_has_bf16()


def device_has_bf16(device: torch.device) -> bool:
    """Whether bfloat16 matmuls run natively (not emulated) on ``device``: what ``bf16: auto`` plans in."""
    if device.type == "cpu":
        return cpu_has_bf16()
    if device.type == "cuda":
        try:
            return torch.cuda.is_bf16_supported(including_emulation=False)
        except TypeError:  # torch < 2.5 has no including_emulation
            return torch.cuda.is_bf16_supported()
    return False


def device_name(device: torch.device) -> str:
    """``cuda:0 (NVIDIA H100 ...)`` or ``cpu (AVX512, no AVX512-BF16/AMX)``: what the precision was chosen for."""
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    if device.type == "cpu":
        return (f"cpu ({torch.backends.cpu.get_cpu_capability()}, "
                f"{'with' if cpu_has_bf16() else 'no'} AVX512-BF16/AMX)")
    return str(device)


def resolve_bf16(flag: bool | str, device: torch.device) -> bool:
    """A ``bf16``-style setting on ``device``: ``true``/``false`` as given, ``"auto"``: whether it has native bf16."""
    return device_has_bf16(device) if flag == "auto" else bool(flag)


def bf16_autocast(device: torch.device, setting: str) -> AbstractContextManager:
    """Autocast to bfloat16 on ``device`` (matmuls in bf16, the rest as it is); on a CPU that emulates bfloat16 a
    warning names ``setting`` (Python shows it once per call site)."""
    if device.type == "cpu" and cpu_lacks_bf16():
        warnings.warn(f"{setting}: true on a CPU without AVX512-BF16 or AMX: bfloat16 matmuls are emulated there and "
                      f"run several times slower than float32. Set {setting} to false (or auto).", stacklevel=3)
    return torch.autocast(device.type, dtype=torch.bfloat16)
