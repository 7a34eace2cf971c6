"""Multi-GPU / multi-node training through `torchrun` (PyTorch DDP, or FSDP2 with
`train.strategy = "fsdp"`: training/fsdp.py).

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; each process then trains on every WORLD_SIZE-th
batch of the same seeded epoch plan, gradients are averaged by DDP, rank 0 alone logs, evaluates
and writes checkpoints, and every rank holds its own copy of the frozen reward model. Without
torchrun nothing changes (one process, no process group).
"""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from coral_cli.device import pick_device


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the job."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device_spec: str) -> tuple[DistInfo, torch.device]:
    """Join the torchrun process group if there is one; pick this rank's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo(), pick_device(device_spec)
    info = DistInfo(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    wants_cuda = device_spec != "cpu" and torch.cuda.is_available()
    device = torch.device(f"cuda:{info.local_rank}") if wants_cuda else torch.device("cpu")
    if wants_cuda:
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if wants_cuda else "gloo")
        atexit.register(leave_process_group)
    return info, device


def leave_process_group() -> None:
    """Destroy the process group while Python is fully alive (at exit, or when a caller is done):
    left to interpreter shutdown, gloo's worker threads can abort or hang freeing tensors that need
    the GIL (pytorch/pytorch#56297). Free DDP wrappers first (`Trainer.close`)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def shard(batches: list[Any], info: DistInfo) -> list[Any]:
    """This rank's batches: every world-th of an equal-length prefix, so all ranks step together."""
    if not info.enabled:
        return batches
    usable = len(batches) // info.world * info.world
    return batches[:usable][info.rank :: info.world]


def global_index(local: int, info: DistInfo) -> int:
    """The epoch-wide index of this rank's `local`-th batch under `shard`: what seeds a batch's RNG,
    so ranks draw different samples and N ranks draw what one process would over the same batches."""
    return local * info.world + info.rank


def any_rank(flag: torch.Tensor, info: DistInfo) -> bool:
    """Whether `flag` (a 0/1 tensor) is set on any rank: a MAX all-reduce, so every rank takes the
    same branch (one raising alone would leave the others waiting in the next all-reduce)."""
    flag = flag.detach().to(torch.int32, copy=True)
    if info.enabled:
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return bool(flag)


def broadcast(value: Any, info: DistInfo) -> Any:
    """Rank 0's `value` on every rank."""
    if not info.enabled:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The module inside a torch.compile and/or DDP wrapper (for generate, saving). An FSDP2 model
    is sharded in place: itself."""
    model = getattr(model, "_orig_mod", model)  # torch.compile's OptimizedModule
    return getattr(model, "module", model)


def all_reduce_mean(t: torch.Tensor) -> torch.Tensor:
    """The mean of `t` over all ranks (a new, detached tensor), so a statistic such as a reward
    baseline stays identical on every rank; `t` itself when torch.distributed is not initialized."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return t
    total = t.detach().clone()
    dist.all_reduce(total)  # SUM: gloo has no AVG
    return total / dist.get_world_size()
