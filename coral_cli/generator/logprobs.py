"""log P(r_t | r_<t, c) of target tokens: the quantity both the CE loss and the CORAL loss
(paper eq. 2: -R3 * sum_t log P) are built from, whatever the backend."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from coral_cli.generator.batch import IGNORE


def label_logprobs(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(M, V) logits of the M scored positions (labels != IGNORE, row-major) and the (B, T) labels
    -> (B, T) log-probabilities of the labels, 0 where IGNORE."""
    scored = labels.ne(IGNORE)
    logp = -F.cross_entropy(logits.float(), labels[scored], reduction="none")
    return torch.zeros(scored.shape, dtype=logp.dtype, device=logp.device).masked_scatter(scored, logp)
