"""Each generated token's log-probability under the model, collected while `generate` decodes, so
`coral generate` needs no second (teacher-forced) forward pass to report a response's mean log-prob.

The log-probs are of the model's raw distribution (before temperature, top-p, min-length or n-gram
rules), as the teacher-forced re-score computes them. `generate` hands logits processors only the
processed scores, and its own processors run before any we pass, so the raw logits are read with a
forward hook on the model instead; the processor only learns which token each step chose (the last
column of `input_ids` at the next step). Kept per step: one (N,) column, plus one step's logits.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from transformers import LogitsProcessor


class StepLogprobs(LogitsProcessor):
    """A pass-through logits processor that records log P(chosen token) of every decoding step.

    Use: `with rec.attached(model): model.generate(..., logits_processor=[rec, ...])`, then
    `rec.token_logprobs(generated)`. One recorder serves one `generate` call. Exact for greedy and
    sampling, where step t's row i continues row i; beam search reorders rows between steps, so
    its callers keep the teacher-forced re-score.
    """

    def __init__(self) -> None:
        self.columns: list[torch.Tensor] = []  # (N,) log-prob of the token generated at step t
        self._logits: torch.Tensor | None = None  # (N, V) raw logits of the latest forward
        self._last: tuple[torch.Tensor, torch.Tensor] | None = None  # the previous step's (logits, logsumexp)

    @contextmanager
    def attached(self, model: Any) -> Iterator[StepLogprobs]:
        """Hook the module `generate` calls each step (the base model under a peft wrapper)."""
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        handle = base.register_forward_hook(self._grab)
        try:
            yield self
        finally:
            handle.remove()

    def _grab(self, module: Any, args: Any, output: Any) -> None:
        self._logits = output.logits[:, -1].to(torch.float32, copy=True)  # as `generate` reads it

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self._last is not None:
            self.columns.append(self._pick(input_ids[:, -1]))
        if self._logits is None:
            raise RuntimeError("StepLogprobs saw no forward pass: use it inside `attached(model)`")
        self._last, self._logits = (self._logits, self._logits.logsumexp(-1)), None
        return scores

    def _pick(self, tokens: torch.Tensor) -> torch.Tensor:
        logits, lse = self._last
        return logits.gather(1, tokens[:, None]).squeeze(1) - lse

    def token_logprobs(self, generated: torch.Tensor) -> torch.Tensor:
        """(N, L) tokens `generate` appended (its output minus the prompt / decoder start) -> (N, L)
        their log-probs. `generate` may decode a step or two past the end and drop them: the extra
        columns are dropped here too."""
        length = generated.shape[1]
        columns = self.columns[:length]
        if len(columns) == length - 1:
            columns.append(self._pick(generated[:, -1]))
        if len(columns) != length:
            raise RuntimeError(f"recorded {len(columns)} decoding steps for {length} generated tokens")
        return torch.stack(columns, 1) if columns else generated.new_zeros(generated.shape, dtype=torch.float32)
