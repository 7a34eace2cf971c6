"""The reference policy of CORAL's KL term: the same model with its LoRA adapters off, or a frozen
copy for full fine-tuning. Backend-neutral (any nn.Module), so objectives take it from here."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn


def frozen_copy(model: nn.Module) -> nn.Module:
    """A frozen reference for full fine-tuning (no adapters): a deep copy in eval mode, no grads."""
    ref = copy.deepcopy(model).eval()
    ref.requires_grad_(False)
    return ref


@contextmanager
def reference_model(model: nn.Module, frozen: nn.Module | None = None) -> Iterator[nn.Module]:
    """The reference policy of the KL term, under no_grad: a PeftModel with its adapters off (the
    same weights, no copy), else `frozen` (from `frozen_copy`, full fine-tuning). The reference
    runs in the policy's own train/eval mode, so that dropout treats both sides of the KL alike
    (a reference in eval mode beside a policy with dropout gives a non-zero KL at step 0).
    Each module's train/eval mode is restored on exit."""
    import peft  # heavy, and only a training step needs it: not at start-up

    if isinstance(model, peft.PeftModel):
        with model.disable_adapter(), torch.no_grad():
            yield model
    elif frozen is not None:
        modes = {m: m.training for m in frozen.modules()}
        try:
            with torch.no_grad():
                yield frozen.train(model.training)
        finally:
            for m, training in modes.items():
                m.training = training
    else:
        raise ValueError("a model without adapters needs its reference given: frozen=frozen_copy(model)")
