"""The reference policy of CORAL's KL term, the policy where training started (as RLHF anchors to
its supervised start): the same model with its LoRA adapters off when they start at zero, else a
frozen copy of the start (full fine-tuning, or adapters from an --init such as a CE-FT run).
Backend-neutral (any nn.Module), so objectives take it from here."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn


def frozen_copy(model: nn.Module) -> nn.Module:
    """A frozen reference of the policy as it starts (full fine-tuning, or LoRA adapters loaded from
    --init): a deep copy in eval mode, no grads."""
    ref = copy.deepcopy(model).eval()
    ref.requires_grad_(False)
    return ref


@contextmanager
def reference_model(model: nn.Module, frozen: nn.Module | None = None) -> Iterator[nn.Module]:
    """The reference policy of the KL term, under no_grad: `frozen` (from `frozen_copy`) when given,
    else a PeftModel with its adapters off (the same weights, no copy). The reference runs in the
    policy's own train/eval mode, so that dropout treats both sides of the KL alike (a reference in
    eval mode beside a policy with dropout gives a non-zero KL at step 0). Each module's train/eval
    mode is restored on exit."""
    import peft  # heavy, and only a training step needs it: not at start-up

    if frozen is not None:
        modes = {m: m.training for m in frozen.modules()}
        try:
            with torch.no_grad():
                yield frozen.train(model.training)
        finally:
            for m, training in modes.items():
                m.training = training
    elif isinstance(model, peft.PeftModel):
        with model.disable_adapter(), torch.no_grad():
            yield model
    else:
        raise ValueError("a model without adapters needs its reference given: frozen=frozen_copy(model)")
