"""Pick the device a run uses: the detected CUDA device, else the CPU (`--device auto`)."""

from __future__ import annotations

import os
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


def autocast_dtype(device: torch.device, enabled: bool = True) -> torch.dtype | None:
    """bf16 autocast on CUDA devices that support it (unless `enabled` is False, i.e. train.bf16 =
    false); full precision elsewhere."""
    if enabled and device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return None


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
        info.update(threads=torch.get_num_threads(), cpu_count=os.cpu_count(), bf16=False)
    info["autocast"] = str(autocast_dtype(device)).replace("torch.", "") if autocast_dtype(device) else "none"
    return info
