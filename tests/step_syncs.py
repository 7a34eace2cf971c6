"""Count host reads of device tensors during one training step: explicit reads (`.item()`, `.cpu()`, ...)
and ops whose output size depends on the values (a boolean index, `nonzero`). Each would stall a CUDA stream."""

from __future__ import annotations

import traceback
from collections import Counter

import torch
from torch.overrides import TorchFunctionMode

# Tensor methods that copy a value to the host: each is a device sync on CUDA
HOST_READS = {"item", "tolist", "cpu", "numpy", "__bool__", "__int__", "__float__", "__index__"}


# Ops whose output size depends on tensor values: CUDA must tell the host that size, so each syncs
DATA_DEPENDENT_SHAPES = {"nonzero", "masked_select", "argwhere", "unique", "unique_consecutive"}


def _bool_index(args: tuple) -> bool:
    """Is this x[mask] / x[mask] = v with a boolean tensor mask (a nonzero under the hood)?"""
    if len(args) < 2:
        return False
    index = args[1] if isinstance(args[1], tuple) else (args[1],)
    return any(torch.is_tensor(i) and i.dtype == torch.bool for i in index)


class SyncCounter(TorchFunctionMode):
    """Records (method, the project's innermost frame, the innermost frame) of every host read inside the mode.
    Moves to the device (`.to`) are not counted: on a CPU test they cannot be told from a move to the host."""

    def __init__(self) -> None:
        super().__init__()
        self.sites: Counter = Counter()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        sized_by_values = name in DATA_DEPENDENT_SHAPES or (name in ("__getitem__", "__setitem__") and _bool_index(args))
        if sized_by_values:
            name = f"{name} (its size needs the device's values)"
        if sized_by_values or (name in HOST_READS and args and torch.is_tensor(args[0])):
            stack = traceback.extract_stack()[:-1]
            ours = [f for f in stack if "/coral_cli/" in f.filename or "/plugins/" in f.filename]
            where = f"{ours[-1].filename.split('/coral_cli/')[-1]}:{ours[-1].lineno}" if ours else "?"
            inner = f"{stack[-1].filename.split('site-packages/')[-1]}:{stack[-1].lineno}"
            self.sites[(name, where, inner)] += 1
        return func(*args, **(kwargs or {}))


def one_step_syncs(trainer) -> Counter:
    """Host reads of one optimizer step (forward, backward, clip, AdamW, the not-due `_after_step`)."""
    trainer._window, trainer._where, trainer._tokens, trainer._total = {}, [], 0, 100
    spec = trainer._batches(0)[0]
    trainer.task.model.train()
    with SyncCounter() as counter:
        trainer._accumulate(spec, 0, range(0, 1))
        trainer._optimizer_step(trainer._total)
        assert trainer._after_step(epoch_done=False) is None
    return counter.sites


# Hugging Face's SDPA mask builders read the padding mask to skip it when nothing is padded
# (transformers/masking_utils.py, `padding_mask.all()`); torch.compile traces them away
HF_MASK_CHECKS = "transformers/masking_utils.py"


def own_syncs(sites: Counter) -> dict:
    """The host reads outside Hugging Face's mask builders."""
    return {k: n for k, n in sites.items() if not k[2].startswith(HF_MASK_CHECKS)}
