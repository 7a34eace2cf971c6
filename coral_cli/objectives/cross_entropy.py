"""The cross-entropy baseline: mean token-level NLL of the ground-truth response.

CORAL with m = 0, p+ = 1 and a constant reward of 1 reduces to this (paper §3.3).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from coral_cli.generator.core.batch import IGNORE, TrainBatch, scored_rows
from coral_cli.generator.core.policy import Policy


class CrossEntropy:
    """L = -(1/N) sum over all target tokens of log P(r_t | r_<t, c), N = number of tokens."""

    def __init__(self, policy: Policy, label_smoothing: float = 0.0) -> None:
        self.policy, self.label_smoothing = policy, label_smoothing

    def __call__(self, model: Any, train_batch: TrainBatch) -> tuple[torch.Tensor, dict[str, Any]]:
        batch = train_batch.teacher
        scored, index = batch.labels.ne(IGNORE), batch.scored_index()
        logits = self.policy.scored_logits(model, batch, index)  # (N, V): the LM head skips padding
        loss = F.cross_entropy(logits.float(), scored_rows(batch.labels, scored, index),
                               label_smoothing=self.label_smoothing)
        n = scored.sum()
        return loss, {"nll": loss.detach(), "target_tokens": n.detach().float(), "tokens": batch.tokens}
