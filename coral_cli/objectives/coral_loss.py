"""The CORAL loss as a pure function of per-candidate quantities (paper eq. 2-3).

Everything model- or sampler-specific happens before it: candidates are drawn, scored by the
frozen reward and baselined into R3; this turns (log P, R3) into the REINFORCE loss.
"""

from __future__ import annotations

import torch


def coral_loss(logp: torch.Tensor, r3: torch.Tensor, n_tokens: torch.Tensor, normalize: str = "sequence",
               weight: torch.Tensor | None = None,
               penalty: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """L = -R3(c, r) * sum_t log P(r_t | r_<t, c) per candidate (eq. 2), combined over the batch (eq. 3).

    logp (N,): sum_t log P of each candidate; r3 (N,): its reward (treated as a constant);
    n_tokens (N,): its target tokens; weight (N,): its share of its context's row (1, or 1/k for
    each of k on-policy samples of one context, so every row weighs the same and p+ keeps its
    meaning). 'sequence' averages over rows; 'token' divides by the rows' weighted target tokens,
    which at p+ = 1, m = 0, f_R = 1 is exactly the CE loss. penalty (N,): a per-candidate term
    added before normalising (the KL guard, `kl_penalty`), so that it is weighed exactly like the
    CORAL term it guards, whatever `normalize` says.
    """
    if normalize not in ("sequence", "token"):
        raise ValueError(f"normalize must be 'sequence' or 'token', not {normalize!r}")
    w = torch.ones_like(logp) if weight is None else weight.to(logp.dtype)
    per_candidate = -r3.detach() * logp  # eq. 2
    if penalty is not None:
        per_candidate = per_candidate + penalty
    total = (w * per_candidate).sum()
    if normalize == "token":
        loss = total / (w * n_tokens.to(logp.dtype)).sum().clamp(min=1)
    else:
        loss = total / w.sum().clamp(min=1e-12)
    stats = {
        "r3": (w * r3).sum().detach() / w.sum().clamp(min=1e-12),
        "nll": -(logp.sum() / n_tokens.sum().clamp(min=1)).detach(),
        "resp_len": n_tokens.float().mean(),
    }
    return loss, stats
