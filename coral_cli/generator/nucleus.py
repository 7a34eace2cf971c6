"""Nucleus (top-p) filtering from a per-row top-k instead of a sort of the whole vocabulary.

Hugging Face's `TopPLogitsWarper` sorts all V logits of every row at every decoding step (~0.1 s
for 48 rows of SmolLM2's 49k vocabulary on a CPU); a nucleus rarely holds more than a few hundred
tokens. `NucleusLogitsProcessor` keeps exactly the tokens that warper keeps (with
`min_tokens_to_keep=1`), so sampling with it draws the same tokens from the same seed.
"""

from __future__ import annotations

import torch
from transformers import LogitsProcessor, TopPLogitsWarper

KS = (64, 1024, 8192)  # top-k widths tried in turn; rows still undecided get the full sort


class NucleusLogitsProcessor(LogitsProcessor):
    """Top-p filtering with the kept set of `TopPLogitsWarper(top_p, min_tokens_to_keep=1)`.

    That warper sorts each row ascending, takes the cumulative softmax mass `cum` and removes the
    tokens with `cum <= 1 - top_p`, always keeping the top one. Here `cum` of the k largest logits
    is 1 - (the mass ranked above the token), from `topk` and the row's softmax sum; the tokens
    below the k-th are removed. A row takes this fast path only when its answer cannot differ from
    the warper's: the k-th logit (and its ties) is removed, no token's `cum` lies within `margin`
    of the threshold (ours and the warper's differ by < 5e-7, float32 softmax rounding), no group
    of tied logits straddles the threshold (the warper's order inside a tie is its sort's,
    unspecified) and the top token is not a candidate for removal. A row whose top k is too small retries with the
    next width in `ks` that could hold its nucleus; the rest run the warper itself, so the result
    is always the warper's. Vectorised over rows; each retry costs a host sync (`any()` and row
    selection), which steps whose rows all decide at the first width never reach.
    """

    def __init__(self, top_p: float, ks: tuple[int, ...] = KS, margin: float = 1e-5) -> None:
        self.warper = TopPLogitsWarper(top_p, min_tokens_to_keep=1)  # validates top_p; the exact fallback
        self.top_p, self.threshold = float(top_p), 1.0 - float(top_p)
        self.ks, self.margin = ks, margin

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        out, need = self._from_topk(scores, self.ks[0])  # (B, V), (B,)
        rows = torch.arange(scores.shape[0], device=scores.device)
        for k in (*self.ks[1:], None):
            undecided = need > 0
            if not bool(undecided.any()):  # the one host sync of a step decided at the first width
                return out
            rows, need = rows[undecided], need[undecided]
            if k is None:
                out[rows] = self.warper(input_ids[rows], scores[rows])
                return out
            tier = need <= k
            out[rows[tier]], need[tier] = self._from_topk(scores[rows[tier]], k)
        return out

    def _from_topk(self, scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(R, V) scores -> ((R, V) filtered scores, (R,) 0 where that is surely the warper's answer,
        else a lower bound on the top-k width that could decide the row: inf if none can)."""
        vals, idx = scores.topk(min(k, scores.shape[-1]), dim=-1)  # (R, k), descending
        top = vals[:, :1]  # softmax as the warper takes it, exp(x - max) / sum: accurate where p is large
        p = (vals - top).exp().double() / (scores - top).exp_().sum(-1, keepdim=True).double()  # (R, k)
        cum = 1.0 - (p.cumsum(-1) - p)  # (R, k) the warper's ascending cumulative mass of each token
        t, m = self.threshold, self.margin
        remove = cum <= t
        lowest = vals == vals[:, -1:]  # the k-th logit and its ties inside the top k (more may lie below)
        wide_enough = torch.where(lowest, cum, float("-inf")).amax(-1) <= t - m
        clear = ((cum - t).abs() > m).all(-1) & ~remove[:, 0]  # no wider top k changes these
        clear &= ~((remove[:, 1:] != remove[:, :-1]) & (vals[:, 1:] == vals[:, :-1])).any(-1)
        more = ((self.top_p - p.sum(-1)) / p[:, -1]).clamp(min=1)  # later tokens have p <= p[:, -1]
        need = torch.where(clear & more.isfinite(), k + more, float("inf"))
        need = torch.where(clear & wide_enough, 0.0, need)
        kept = torch.full_like(scores, float("-inf")).scatter_(1, idx, vals.masked_fill(remove, float("-inf")))
        return kept, need
