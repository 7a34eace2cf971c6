"""A plain function as the reward f_R, as TRL accepts reward functions: f(contexts, responses) ->
one score in [0, 1] per pair, where each context is its list of utterances and each response a
string. It sees text, so it works whatever the generator's tokenizer (paper §3.1: R3 = f_R - m)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from coral_cli.errors import CoralError


class CallableReward:
    """Adapts `fn(contexts, responses) -> scores` to the text side of the reward contract
    (`score`), which the CORAL step uses for every reward that does not read its ids."""

    def __init__(self, fn: Callable[[list[list[str]], list[str]], Any]) -> None:
        if not callable(fn):
            raise CoralError(f"reward {fn!r} is not callable", "register a RewardModel class or a function f(contexts, responses)")
        self.fn = fn
        self.name = getattr(fn, "__name__", type(fn).__name__)

    def score(self, contexts: Sequence[Sequence[str]], responses: Sequence[str]) -> torch.Tensor:
        """f_R for texts -> (B,) float32 on CPU, input order."""
        scores = self.fn([list(c) for c in contexts], list(responses))
        out = torch.as_tensor(scores if torch.is_tensor(scores) else list(scores), dtype=torch.float32).flatten().cpu()
        if out.numel() != len(responses):
            raise CoralError(f"reward function '{self.name}' returned {out.numel()} scores for {len(responses)} responses",
                             "return one score per (context, response) pair")
        return out
