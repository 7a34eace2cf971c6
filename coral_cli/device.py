"""Pick the device a run uses: the detected CUDA device, else the CPU (`--device auto`)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

from coral_cli.errors import CoralError


def pick_device(spec: str = "auto") -> torch.device:
    """'auto' -> cuda:0 when CUDA is available, else cpu; 'cuda[:N]' must exist."""
    spec = spec.strip().lower()
    if spec == "auto":
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise CoralError(f"unknown device '{spec}'", "use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise CoralError(f"device '{spec}' requested but CUDA is not available",
                             "use --device auto or --device cpu")
        index = device.index or 0
        if index >= torch.cuda.device_count():
            raise CoralError(f"device '{spec}' does not exist: {torch.cuda.device_count()} CUDA device(s)",
                             f"use cuda:0 .. cuda:{torch.cuda.device_count() - 1}")
    elif device.type != "cpu":
        raise CoralError(f"device type '{device.type}' is not supported", "use auto, cpu or cuda")
    return device


_cpu_bf16 = False  # set only inside `cpu_bf16(True)` on a CPU with native bf16


def cpu_bf16_supported() -> bool:
    """Whether this CPU multiplies bf16 natively (AVX512-BF16 or AMX tiles); elsewhere bf16 is
    emulated and slower than fp32."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


@contextmanager
def cpu_bf16(enabled: bool) -> Iterator[bool]:
    """Within the block, `autocast_dtype` gives bf16 for the CPU too (runtime.cpu_bf16) when the
    CPU has native bf16; yields whether it does. Training enters it (its reward scoring too);
    evaluation does not, so every row's metrics are computed in fp32; decoding stays fp32 on a
    CPU (`decoding_dtype`)."""
    global _cpu_bf16
    before, _cpu_bf16 = _cpu_bf16, bool(enabled) and cpu_bf16_supported()
    try:
        yield _cpu_bf16
    finally:
        _cpu_bf16 = before


def autocast_dtype(device: torch.device, enabled: bool = True) -> torch.dtype | None:
    """bf16 autocast on CUDA devices that support it, and on the CPU inside `cpu_bf16(True)`
    (unless `enabled` is False, i.e. train.bf16 = false); full precision elsewhere."""
    if not enabled:
        return None
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    if device.type == "cpu" and _cpu_bf16:
        return torch.bfloat16
    return None


def decoding_dtype(device: torch.device, enabled: bool = True) -> torch.dtype | None:
    """Autocast for decoding (`generate`): bf16 on CUDA as `autocast_dtype`, fp32 on a CPU even
    under runtime.cpu_bf16: at the CPU table's size bf16 decoding made 17.5 responses/s against
    20.4 in fp32 (2026-11-30, docs/RESULTS.md), its small per-step matmuls gaining less than the
    casts cost."""
    return autocast_dtype(device, enabled) if device.type == "cuda" else None


def describe_device(spec: str = "auto") -> dict[str, Any]:
    """What `coral env` reports about the device that `spec` resolves to."""
    device = pick_device(spec)
    info: dict[str, Any] = {"requested": spec, "device": str(device), "type": device.type}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(
            name=props.name,
            count=torch.cuda.device_count(),
            memory_gib=round(props.total_memory / 2**30, 1),
            bf16=torch.cuda.is_bf16_supported(),
            cuda_version=torch.version.cuda,
        )
    else:
        info.update(threads=torch.get_num_threads(), cpu_count=os.cpu_count(), bf16=cpu_bf16_supported())
    info["autocast"] = str(autocast_dtype(device)).replace("torch.", "") if autocast_dtype(device) else "none"
    return info
