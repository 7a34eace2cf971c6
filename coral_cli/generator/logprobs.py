"""log P(r_t | r_<t, c) of target tokens: the quantity both the CE loss and the CORAL loss
(paper eq. 2: -R3 * sum_t log P) are built from, whatever the backend."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def label_logprobs(logits: torch.Tensor, targets: torch.Tensor, scored: torch.Tensor) -> torch.Tensor:
    """(M, V) logits of the M scored positions with their (M,) target ids -> (B, T) log-probabilities
    laid out like `scored` (B, T), 0 where it is False."""
    logp = -F.cross_entropy(logits.float(), targets, reduction="none")
    return torch.zeros(scored.shape, dtype=logp.dtype, device=logp.device).masked_scatter(scored, logp)
