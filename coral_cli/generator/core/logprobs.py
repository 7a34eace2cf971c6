"""log P(r_t | r_<t, c) of target tokens: the quantity both the CE loss and the CORAL loss
(paper eq. 2: -R3 * sum_t log P) are built from, whatever the backend."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from coral_cli.generator.core.batch import IGNORE, Responses, scored_rows


def label_logprobs(logits: torch.Tensor, labels: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
    """(M, V) logits of the M scored positions (labels != IGNORE, row-major) and the (B, T) labels
    -> (B, T) log-probabilities of the labels, 0 where IGNORE. `index` (M,), the scored positions
    as flat indices (`TeacherBatch.scored_index`), avoids the boolean index's host-device sync."""
    scored = labels.ne(IGNORE)
    logp = -F.cross_entropy(logits.float(), scored_rows(labels, scored, index), reduction="none")
    if index is not None:
        return torch.zeros(labels.numel(), dtype=logp.dtype, device=logp.device).index_copy(0, index, logp).view(labels.shape)
    return torch.zeros(scored.shape, dtype=logp.dtype, device=logp.device).masked_scatter(scored, logp)


def scored_mean(logp: torch.Tensor, responses: Responses) -> torch.Tensor:
    """(N, L) token log-probs of generated rows -> (N,) mean over what the re-score scores: the
    response tokens, then the end token where the model produced it (nothing after it)."""
    pos = torch.arange(logp.shape[1], device=logp.device)[None, :]
    scored = pos < (responses.mask.sum(1) + responses.ended.long())[:, None]
    return torch.where(scored, logp, 0.0).sum(1) / scored.sum(1).clamp(min=1)
