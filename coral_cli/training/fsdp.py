"""FSDP2 (`train.strategy = "fsdp"`): the model's parameters, gradients and AdamW state sharded
across the torchrun ranks with `torch.distributed.fsdp.fully_shard`.

Each transformer layer (the model's `_no_split_modules`) is its own shard group, then the whole
model: a forward gathers one layer at a time. Checkpoints keep the one-process layout: the full
state is gathered to rank 0 (CPU) and written by the task's own `save_model` through an unsharded
CPU twin of the model; a resume loads it into the twin on rank 0 and broadcasts it. Generation
(on-policy samples, validation) runs under `gathered`: every layer gathered once, not once per
token, and no collective inside `generate`, so ranks that sample different lengths cannot hang.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn


def shard_model(model: nn.Module, device: torch.device, bf16: bool) -> nn.Module:
    """Shard `model` in place (FSDP2); bf16 parameters with fp32 gradient reduction on CUDA when
    `bf16`, plain fp32 elsewhere (a CPU run then matches one process exactly)."""
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    kw: dict[str, Any] = {}
    if bf16 and device.type == "cuda" and torch.cuda.is_bf16_supported():
        kw["mp_policy"] = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    for layer in _layers(model):
        fully_shard(layer, **kw)
    fully_shard(model, **kw)
    return model


def _layers(model: nn.Module) -> list[nn.Module]:
    """The repeated blocks to shard one by one: modules whose class the model (or, under PEFT, its
    base model) names in `_no_split_modules`."""
    names: set[str] = set()
    for m in model.modules():
        names |= set(getattr(m, "_no_split_modules", None) or ())
    return [m for m in model.modules() if m is not model and type(m).__name__ in names]


def is_sharded(model: nn.Module) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


def _fsdp_modules(model: nn.Module) -> list[Any]:
    from torch.distributed.fsdp import FSDPModule

    return [m for m in model.modules() if isinstance(m, FSDPModule)]


@contextlib.contextmanager
def gathered(model: nn.Module) -> Iterator[None]:
    """Every shard group of a sharded `model` gathered (a collective: all ranks enter together),
    kept gathered through forwards, then sharded again; nothing for an unsharded model. Inside,
    forwards run without collectives, so one rank may generate alone or longer than the others.
    Re-entrant: an inner `gathered` is a no-op."""
    modules = _fsdp_modules(model)
    if not modules or getattr(model, "_coral_gathered", False):
        yield
        return
    model._coral_gathered = True  # type: ignore[assignment]
    # `generate` may call a child first (an encoder-decoder's encoder): FSDP2 must know its root
    # before any child runs, which its root forward would settle; FSDP2 has no public call for it
    model._get_fsdp_state()._lazy_init()  # type: ignore[operator]
    try:
        for m in modules:
            m.set_reshard_after_forward(False, recurse=False)
        for m in modules:
            m.unshard()
        yield
    finally:
        for m in modules:
            m.reshard()
            m.set_reshard_after_forward(m is not model, recurse=False)  # FSDP2's default: the root stays gathered
        model._coral_gathered = False  # type: ignore[assignment]


def cpu_twin(model: nn.Module) -> nn.Module:
    """An unsharded CPU copy of `model` (before sharding): rank 0 writes and reads checkpoints
    through it. Copied on the CPU (the model goes there and back), never twice on the GPU."""
    device = next(model.parameters()).device
    twin = copy.deepcopy(model.cpu())
    model.to(device)
    return twin


def _options(**kw: Any) -> Any:
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, **kw)


def gather_to_twin(model: nn.Module, twin: nn.Module | None) -> None:
    """The sharded `model`'s full state into `twin` on rank 0 (a collective; `twin` is None elsewhere)."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    state = get_model_state_dict(model, options=_options(cpu_offload=True))
    if twin is not None:
        twin.load_state_dict(state)


def scatter_from_twin(model: nn.Module, twin: nn.Module | None) -> None:
    """Rank 0's `twin` weights into the sharded `model` on every rank (a collective)."""
    from torch.distributed.checkpoint.state_dict import set_model_state_dict

    state = twin.state_dict() if twin is not None else {}
    set_model_state_dict(model, state, options=_options(broadcast_from_rank0=True))


def full_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """The sharded optimizer's full state on rank 0 (a collective), keyed like one process's
    `optimizer.state_dict()`: parameters numbered in param-group order, so `save_state` writes the
    same file as without FSDP. Empty on the other ranks."""
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    full = get_optimizer_state_dict(model, optimizer, options=_options(cpu_offload=True))
    if not full:
        return {}
    ids = {fqn: i for i, fqn in enumerate(fqn for g in full["param_groups"] for fqn in g["params"])}
    groups = [{**g, "params": [ids[f] for f in g["params"]]} for g in full["param_groups"]]
    return {"state": {ids[f]: s for f, s in full["state"].items()}, "param_groups": groups}


def load_full_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """`full_optimizer_state`'s layout, read on every rank, into the sharded optimizer (each rank keeps its shard)."""
    from torch.distributed.checkpoint.state_dict import set_optimizer_state_dict

    names = _param_names(model, optimizer)
    full = {"state": {names[int(i)]: s for i, s in state["state"].items()},
            "param_groups": [{**g, "params": [names[int(i)] for i in g["params"]]} for g in state["param_groups"]]}
    set_optimizer_state_dict(model, optimizer, full, options=_options())


def _param_names(model: nn.Module, optimizer: torch.optim.Optimizer) -> list[str]:
    """The FQN of each optimizer parameter in param-group order (parameter i of `state_dict()`)."""
    by_id = {id(p): n for n, p in model.named_parameters()}
    return [by_id[id(p)] for g in optimizer.param_groups for p in g["params"]]
