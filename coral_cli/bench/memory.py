"""Peak memory of a stage: CUDA's allocator high-water mark, else the process's peak RSS."""

from __future__ import annotations

import resource
import sys
from pathlib import Path

import torch

CLEAR_REFS = Path("/proc/self/clear_refs")  # Linux: writing "5" resets the process's peak RSS (VmHWM)


def reset_peak(device: torch.device) -> None:
    """Start a stage's high-water mark: CUDA's allocator stats; on Linux also the peak RSS, so a
    CPU stage reports its own peak rather than the run's so far."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    else:
        try:
            CLEAR_REFS.write_text("5")
        except OSError:  # not Linux, or not permitted: the peak stays monotonic over the run
            pass


def peak_mib(device: torch.device) -> dict[str, float]:
    """{'cuda_peak_mib': ...} on CUDA; {'process_peak_rss_mib': ...} on CPU (since the last
    `reset_peak` on Linux, else monotonic over the run; the whole process's resident memory)."""
    if device.type == "cuda":
        return {"cuda_peak_mib": round(torch.cuda.max_memory_allocated(device) / 2**20, 1)}
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"process_peak_rss_mib": round(rss / (2**20 if sys.platform == "darwin" else 2**10), 1)}
