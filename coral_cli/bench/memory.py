"""Peak memory of a stage: CUDA's allocator high-water mark, else the process's peak RSS."""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import resource
import sys
from pathlib import Path

import torch

CLEAR_REFS = Path("/proc/self/clear_refs")  # Linux: writing "5" resets the process's peak RSS (VmHWM)
_start: dict[str, float | None] = {"rss_mib": None}  # the resident memory a CPU stage started from


def reset_peak(device: torch.device) -> None:
    """Start a stage's high-water mark: CUDA's allocator stats; on Linux also the peak RSS, after
    handing the heap that earlier stages freed back to the OS (glibc keeps it resident otherwise),
    so a CPU stage reports its own peak rather than the run's so far."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        return
    _malloc_trim()
    try:
        CLEAR_REFS.write_text("5")
    except OSError:  # not Linux, or not permitted: the peak stays monotonic over the run
        pass
    _start["rss_mib"] = _rss_mib()


def peak_mib(device: torch.device) -> dict[str, float]:
    """{'cuda_peak_mib': ...} on CUDA; on CPU {'process_peak_rss_mib': ..., 'process_rss_at_start_mib': ...}:
    the whole process's resident memory at its peak since the last `reset_peak` (on Linux; else
    monotonic over the run) and when that reset ran (the stage's own share is the difference)."""
    if device.type == "cuda":
        return {"cuda_peak_mib": round(torch.cuda.max_memory_allocated(device) / 2**20, 1)}
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"process_peak_rss_mib": round(rss / (2**20 if sys.platform == "darwin" else 2**10), 1),
            "process_rss_at_start_mib": None if _start["rss_mib"] is None else round(_start["rss_mib"], 1)}


def _rss_mib() -> float | None:
    try:
        line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith("VmRSS:"))
        return int(line.split()[1]) / 1024
    except (OSError, StopIteration, ValueError):
        return None


def _malloc_trim() -> None:
    name = ctypes.util.find_library("c")
    try:
        ctypes.CDLL(name).malloc_trim(0)
    except (OSError, AttributeError, TypeError):  # not glibc
        pass
