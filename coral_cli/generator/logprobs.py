"""log P(r_t | r_<t, c) of target tokens: the quantity both the CE loss and the CORAL loss
(paper eq. 2: -R3 * sum_t log P) are built from, whatever the backend."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from coral_cli.generator.batch import IGNORE


def label_logprobs(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(B, T, V) logits aligned with (B, T) labels -> (B, T) log-probabilities; 0 where IGNORE."""
    valid = labels.ne(IGNORE)
    logp = F.log_softmax(logits.float(), dim=-1).gather(-1, labels.clamp(min=0)[..., None]).squeeze(-1)
    return logp * valid
