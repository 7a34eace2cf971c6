"""The cross-entropy baseline: mean token-level NLL of the ground-truth response.

CORAL with m = 0, p+ = 1 and a constant reward of 1 reduces to this (paper §3.3).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from transformers import PreTrainedModel

from coral_cli.generator.batch import IGNORE, TrainBatch


class CrossEntropy:
    """L = -(1/N) sum over all target tokens of log P(r_t | r_<t, c), N = number of tokens."""

    def __init__(self, label_smoothing: float = 0.0) -> None:
        self.label_smoothing = label_smoothing

    def __call__(self, model: PreTrainedModel, train_batch: TrainBatch) -> tuple[torch.Tensor, dict[str, Any]]:
        batch = train_batch.seq2seq
        logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                       decoder_input_ids=batch.decoder_input_ids, use_cache=False).logits
        loss = F.cross_entropy(logits.float().flatten(0, 1), batch.labels.flatten(), ignore_index=IGNORE,
                               label_smoothing=self.label_smoothing)
        n = batch.labels.ne(IGNORE).sum()
        return loss, {"nll": loss.detach(), "target_tokens": n.detach().float(), "tokens": batch.tokens}
