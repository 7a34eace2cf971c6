"""Run a language model's output layer only at the positions a loss scores.

At DailyDialog's 30,522-word vocabulary the LM head is most of a small generator's FLOPs (a
d = 256 decoder position costs 2 * 256 * 30,522 multiply-adds there against about 4 M in its
two layers), and half the decoder positions of a length-bucketed batch are padding (measured on
the CPU table's batches: 50 % valid). Computing the head on the scored positions only gives the
same loss and gradients as the full (B, T, V) logits masked afterwards.

The selection is a forward pre-hook on the model's output embeddings, so it also works through a
DDP wrapper's forward (which must run for gradients to be averaged) and through a peft model.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch

from coral_cli.generator.core.batch import scored_rows


def output_layer(model: Any) -> torch.nn.Module | None:
    """The LM head of a (possibly DDP-wrapped, possibly peft) Hugging Face model, else None."""
    inner = getattr(model, "module", model)
    get = getattr(inner, "get_output_embeddings", None)
    return get() if callable(get) else None


@contextlib.contextmanager
def head_only_at(model: Any, where: torch.Tensor, index: torch.Tensor | None = None) -> Iterator[bool]:
    """Inside, the model's LM head sees hidden[where] (M, d) instead of hidden (B, T, d), so the
    model's logits come out (M, V), rows in row-major order of `where`. `index` (M,), the flat
    positions of `where`'s True entries (`TeacherBatch.scored_index`), gathers the same rows
    without the boolean index's host-device sync. Yields False (and changes nothing) for a model
    without an output layer."""
    head = output_layer(model)
    if head is None:
        yield False
        return

    def select(_module: torch.nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
        hidden = args[0]
        if hidden.shape[:2] != where.shape:
            raise RuntimeError(f"the LM head got hidden states {tuple(hidden.shape)}, labels are {tuple(where.shape)}")
        return (scored_rows(hidden, where, index), *args[1:])

    handle = head.register_forward_pre_hook(select)
    try:
        yield True
    finally:
        handle.remove()


def scored_logits(logits_of: Callable[[], torch.Tensor], model: Any, where: torch.Tensor,
                  index: torch.Tensor | None = None) -> torch.Tensor:
    """(M, V) logits at the True positions of `where` (B, T) (or at the flat positions `index`, the
    same rows without a sync): `logits_of()` runs the model with its head restricted to them, or,
    for a model without a Hugging Face output layer, in full."""
    with head_only_at(model, where, index) as restricted:
        logits = logits_of()
    return logits if restricted else scored_rows(logits, where, index)
