"""How much arithmetic a step does, and how close to the device's limit it runs.

`torch.utils.flop_counter` counts the FLOPs of the matmuls and attention a function dispatches
(forward, backward, inference alike); the device's limit is a square GEMM timed at the same
precision. Together they say which goal is still open to engineering: a trainer that runs near the
peak can only go faster by doing less arithmetic, and the anchor's FLOPs per example over ours
is the speed-up equal efficiency would give."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

from coral_cli.device import cpu_bf16

PEAK_SIZE = {"cpu": 2048, "cuda": 8192}  # square GEMM sides: seconds on a CPU core, milliseconds on a GPU
PEAK_REPEATS = 5


def _cpu_sdpa(query_shape: Any, key_shape: Any, value_shape: Any, *args: Any, out_shape: Any = None,
              **kwargs: Any) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def _cpu_sdpa_backward(grad_out_shape: Any, query_shape: Any, key_shape: Any, value_shape: Any, *args: Any,
                       out_shape: Any = None, **kwargs: Any) -> int:
    return sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


# the CPU's fused attention kernels, which torch's own table leaves out (it lists the CUDA ones)
CPU_ATTENTION = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa,
                 torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward: _cpu_sdpa_backward}


def count_flops(fn: Callable[[], Any]) -> int | str:
    """The FLOPs of what `fn` runs (matmuls and attention, forward and backward), or why they could
    not be counted. A count does not depend on precision, so a CPU counts in fp32 (the counter's
    decompositions of some ops, e.g. an LSTM's, mix dtypes under CPU autocast)."""
    try:
        with cpu_bf16(False), FlopCounterMode(display=False, custom_mapping=CPU_ATTENTION) as counter:
            fn()
    except RuntimeError as exc:  # a bench number, not worth the run: say why it is missing
        return f"not counted: {exc}"
    return int(counter.get_total_flops())


def per_unit(flops: list[int | str], units: int, unit: str) -> dict[str, Any]:
    """Counted FLOPs over `units` runs / tokens / examples / pairs -> {"flops_per_<unit>": ...},
    or the reason a count failed under "flops_error"."""
    failed = [f for f in flops if isinstance(f, str)]
    if failed:
        return {"flops_error": failed[0]}
    return {f"flops_per_{unit}": sum(flops) / max(1, units)}


def matmul_peak_tflops(device: torch.device, dtype: torch.dtype = torch.float32) -> float:
    """TFLOP/s of a square GEMM at `dtype` on `device` (best of `PEAK_REPEATS`, after a warm-up):
    the most any step at that precision can reach on this machine, measured, not a data sheet."""
    n = PEAK_SIZE.get(device.type, PEAK_SIZE["cpu"])
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    best = float("inf")
    for i in range(PEAK_REPEATS + 1):
        _sync(device)
        t0 = time.perf_counter()
        a @ b
        _sync(device)
        if i:  # the first is the warm-up
            best = min(best, time.perf_counter() - t0)
    return 2 * n ** 3 / best / 1e12


class MatmulPeaks:
    """`matmul_peak_tflops` per precision, each measured once on first use; `table()` for the JSON."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.measured = device, {}

    def __call__(self, dtype: torch.dtype | None) -> float:
        """The peak at an autocast dtype (None: float32)."""
        dtype = dtype or torch.float32
        name = str(dtype).removeprefix("torch.")
        if name not in self.measured:
            self.measured[name] = matmul_peak_tflops(self.device, dtype)
        return self.measured[name]

    def table(self) -> dict[str, Any]:
        n = PEAK_SIZE.get(self.device.type, PEAK_SIZE["cpu"])
        return {"what": f"best of {PEAK_REPEATS} square {n} x {n} GEMMs, TFLOP/s", **self.measured}


def efficiency(flops: float | None, seconds: float, peak_tflops: float) -> dict[str, float]:
    """Counted FLOPs done in `seconds` -> achieved TFLOP/s and its share of the peak; nothing when
    the FLOPs could not be counted."""
    if flops is None:
        return {}
    achieved = flops / seconds / 1e12
    return {"achieved_tflops_per_s": achieved, "share_of_matmul_peak": achieved / peak_tflops}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
