"""A plain function as the reward f_R, as TRL accepts reward functions: f(contexts, responses) ->
one score in [0, 1] per pair, where each context is its list of utterances and each response a
string. It sees text, so it works whatever the generator's tokenizer (paper §3.1: R3 = f_R - m)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from coral_cli.errors import CoralError
from coral_cli.tokenizer import wordpiece_text


class CallableReward:
    """Adapts `fn(contexts, responses) -> scores` to the reward contract the CORAL step uses."""

    def __init__(self, fn: Callable[[list[list[str]], list[str]], Any], tokenizer: Any) -> None:
        if not callable(fn):
            raise CoralError(f"reward {fn!r} is not callable", "register a RewardModel class or a function f(contexts, responses)")
        self.fn, self.tokenizer = fn, tokenizer
        self.name = getattr(fn, "__name__", type(fn).__name__)

    def score(self, contexts: Sequence[Sequence[str]], responses: Sequence[str]) -> torch.Tensor:
        """f_R for texts -> (B,) float32 on CPU, input order."""
        scores = self.fn([list(c) for c in contexts], list(responses))
        out = torch.as_tensor(scores if torch.is_tensor(scores) else list(scores), dtype=torch.float32).flatten().cpu()
        if out.numel() != len(responses):
            raise CoralError(f"reward function '{self.name}' returned {out.numel()} scores for {len(responses)} responses",
                             "return one score per (context, response) pair")
        return out

    def score_samples(self, context_ids: Sequence[Sequence[int]], resp: torch.Tensor, resp_mask: torch.Tensor,
                      rows: torch.Tensor | None = None) -> torch.Tensor:
        """f_R of device-side responses (N, L) against id-list contexts (row `rows[i]` for response
        i) -> (N,) on the responses' device; both are decoded to text first."""
        tok = self.tokenizer
        contexts = [self.utterances(c) for c in context_ids]
        picked = range(len(contexts)) if rows is None else rows.tolist()
        responses = [wordpiece_text(tok, r) for r in resp.masked_fill(~resp_mask, tok.pad_token_id).tolist()]
        return self.score([contexts[i] for i in picked], responses).to(resp.device)

    def utterances(self, ids: Sequence[int]) -> list[str]:
        """Context ids (utterances joined by [SEP]) -> the utterance texts."""
        sep, turns, current = self.tokenizer.sep_token_id, [], []
        for i in ids:
            if i == sep:
                turns.append(current)
                current = []
            else:
                current.append(i)
        turns.append(current)
        return [wordpiece_text(self.tokenizer, t) for t in turns if t]
