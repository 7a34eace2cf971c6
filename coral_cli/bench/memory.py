"""Peak memory of a stage: CUDA's allocator high-water mark, else the process's peak RSS."""

from __future__ import annotations

import resource
import sys

import torch


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_mib(device: torch.device) -> dict[str, float]:
    """{'cuda_peak_mib': ...} on CUDA; {'process_peak_rss_mib': ...} (monotonic over the run) on CPU."""
    if device.type == "cuda":
        return {"cuda_peak_mib": round(torch.cuda.max_memory_allocated(device) / 2**20, 1)}
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"process_peak_rss_mib": round(rss / (2**20 if sys.platform == "darwin" else 2**10), 1)}
