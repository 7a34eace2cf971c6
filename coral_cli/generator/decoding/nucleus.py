"""Nucleus (top-p) filtering from a per-row top-k instead of a sort of the whole vocabulary.

Hugging Face's `TopPLogitsWarper` sorts all V logits of every row at every decoding step (~0.1 s
for 48 rows of SmolLM2's 49k vocabulary on a CPU); a nucleus rarely holds more than a few hundred
tokens. `NucleusLogitsProcessor` keeps exactly the tokens that warper keeps (with
`min_tokens_to_keep=1`), so sampling with it draws the same tokens from the same seed.

`NucleusSampler` goes one step further: HF's sampling then draws from a softmax over all V
entries (`torch.multinomial` fills V exponential variates per row: on a CPU, as long as the rest of
the step); the sampler draws from the k kept top-k entries, the same distribution (paper §4.1's
nucleus samples), and hands `generate` a row that is finite at the drawn token only, so `generate`
runs its greedy loop and picks it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import LogitsProcessor, TopPLogitsWarper

KS = (64, 1024, 8192)  # top-k widths tried in turn; rows still undecided get the full sort
SAMPLER_KS = (64, 1024)  # when sampling, rejection beats a top 8,192 (about a sort's cost on a CPU)


@dataclass
class Decided:
    """Rows whose nucleus one top-k width decided: (R, k) values, token ids and the warper's
    removals; `vals` None for rows no width decides (the warper's full sort serves them)."""

    rows: torch.Tensor
    vals: torch.Tensor | None
    idx: torch.Tensor | None
    remove: torch.Tensor | None

    def scatter(self, out: torch.Tensor) -> torch.Tensor:
        """Write the kept values into `out` (R, V) of -inf: the filtered scores of these rows."""
        return out.scatter_(1, self.idx, self.vals.masked_fill(self.remove, float("-inf")))


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
    next width in `ks`; the rest run the warper itself, so the result is always the warper's.
    """

    def __init__(self, top_p: float, ks: tuple[int, ...] = KS, margin: float = 1e-5) -> None:
        self.warper = TopPLogitsWarper(top_p, min_tokens_to_keep=1)  # validates top_p; the exact fallback
        self.top_p, self.threshold = float(top_p), 1.0 - float(top_p)
        self.ks, self.margin = ks, margin

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        groups = self.groups(scores)
        if len(groups) == 1 and groups[0].vals is not None:  # every row decided at the first width
            return groups[0].scatter(torch.full_like(scores, float("-inf")))
        out = torch.full_like(scores, float("-inf"))
        for g in groups:
            if not len(g.rows):
                continue
            if g.vals is None:
                out[g.rows] = self.warper(input_ids[g.rows], scores[g.rows])
            else:
                out[g.rows] = g.scatter(out[g.rows])
        return out

    def sample(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.Tensor:
        """(B, V) scores -> (B,) one token per row, drawn from its nucleus: softmax over the kept
        tokens only (k of them, not V), the distribution HF's sampling draws from after this
        filter. Rows no top-k width decides draw by rejection (`_draw_by_rejection`)."""
        tokens = torch.empty(scores.shape[0], dtype=torch.long, device=scores.device)
        for g in self.groups(scores):
            if not len(g.rows):
                continue
            if g.vals is None:
                tokens[g.rows] = self._draw_by_rejection(input_ids[g.rows], scores[g.rows])
            else:
                probs = g.vals.masked_fill(g.remove, float("-inf")).softmax(-1)
                tokens[g.rows] = g.idx.gather(1, torch.multinomial(probs, 1))[:, 0]
        return tokens

    def _draw_by_rejection(self, input_ids: torch.Tensor, scores: torch.Tensor, tries: int = 8) -> torch.Tensor:
        """(R, V) rows whose nucleus is wider than every top k -> (R,) draws from their nucleus
        without a sort: draw from the full softmax and keep the draw if the warper keeps its token,
        else draw again (accepted with probability >= top_p). A token is kept when even the
        lowest-ranked member of its group of tied values has `cum` > threshold + margin and removed
        when the highest-ranked one has `cum` <= threshold - margin; for a draw in between the
        warper's own kept set decides, and a row still rejected after `tries` draws draws from the
        warper's filtered row. Either way the output follows softmax restricted to the nucleus."""
        probs = scores.softmax(-1)  # float32, as the warper's
        tokens = torch.empty(scores.shape[0], dtype=torch.long, device=scores.device)
        todo = torch.arange(scores.shape[0], device=scores.device)
        t, m = self.threshold, self.margin
        for _ in range(tries):
            if not len(todo):
                return tokens
            p = probs[todo]
            draw = _inverse_cdf_draw(p)  # (n, 1)
            pi = p.gather(1, draw)
            above = torch.where(p > pi, p, 0.0).sum(-1, dtype=torch.float64)  # the mass ranked above the token
            tied = torch.where(p == pi, p, 0.0).sum(-1, dtype=torch.float64)
            keep = 1.0 - above - tied + pi[:, 0].double() > t + m
            drop = 1.0 - above <= t - m
            unclear = ~keep & ~drop
            if bool(unclear.any()):  # ask the warper whether it keeps these draws
                rows = todo[unclear]
                kept = self.warper(input_ids[rows], scores[rows]).isfinite().gather(1, draw[unclear])[:, 0]
                keep[unclear], drop[unclear] = kept, ~kept
            tokens[todo[keep]] = draw[keep, 0]
            todo = todo[drop]
        if len(todo):
            tokens[todo] = _inverse_cdf_draw(self.warper(input_ids[todo], scores[todo]).softmax(-1))[:, 0]
        return tokens

    def groups(self, scores: torch.Tensor) -> list[Decided]:
        """(B, V) scores -> the rows grouped by the top-k width that decided them; rows no width
        decides come last, with `vals` None (the warper's). A row retries at the next width that
        could hold its nucleus. Vectorised over rows; each retry costs host syncs (`any()` and row
        selection), which steps whose rows all decide at the first width never reach."""
        rows = torch.arange(scores.shape[0], device=scores.device)
        vals, idx, remove, need = self._from_topk(scores, self.ks[0])
        waiting, waiting_need = rows[:0], need[:0]  # undecided rows too wide for the last width tried
        out: list[Decided] = []
        for k in (*self.ks[1:], None):
            undecided = need > 0
            if not len(waiting) and not bool(undecided.any()):
                return [*out, Decided(rows, vals, idx, remove)]
            out.append(Decided(rows[~undecided], vals[~undecided], idx[~undecided], remove[~undecided]))
            waiting, waiting_need = torch.cat([waiting, rows[undecided]]), torch.cat([waiting_need, need[undecided]])
            if k is None:
                return [*out, Decided(waiting, None, None, None)]
            out.append(Decided(waiting[waiting_need.isinf()], None, None, None))  # no width can decide them
            tier = waiting_need <= k
            rows = waiting[tier]
            vals, idx, remove, need = self._from_topk(scores[rows], k)
            keep = waiting_need.isfinite() & ~tier
            waiting, waiting_need = waiting[keep], waiting_need[keep]
        raise AssertionError("unreachable")

    def _from_topk(self, scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(R, V) scores -> ((R, k) top-k values, (R, k) their ids, (R, k) which of them the
        warper removes, (R,) 0 where that is surely the warper's answer, else a lower bound on the
        top-k width that could decide the row: inf if none can)."""
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
        return vals, idx, remove, need


def _inverse_cdf_draw(p: torch.Tensor) -> torch.Tensor:
    """(n, V) probabilities -> (n, 1) one draw per row: the first token whose float64 cumulative
    mass exceeds a uniform draw (never a zero-probability token). `torch.multinomial` on a CPU
    draws an exponential variate for every entry: half the sampling time of a flat 30k row."""
    cdf = p.cumsum(-1, dtype=torch.float64)
    u = torch.rand(p.shape[0], 1, dtype=torch.float64, device=p.device) * cdf[:, -1:]
    return torch.searchsorted(cdf, u, right=True).clamp_(max=p.shape[-1] - 1)


class NucleusSampler(LogitsProcessor):
    """The last logits processor of sampled decoding under `generate(do_sample=False)`: applies
    the temperature, draws each row's token from its exact nucleus (`NucleusLogitsProcessor.sample`)
    and returns scores that are 0 at that token and -inf elsewhere, so greedy search's argmax
    takes it. HF's own processors (min length, n-gram rules) run before it, as they run before
    its warpers when sampling. top_p = 1 draws from the full softmax (no nucleus to find)."""

    def __init__(self, top_p: float, temperature: float = 1.0) -> None:
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0 to sample, got {temperature}")
        self.nucleus = NucleusLogitsProcessor(top_p, ks=SAMPLER_KS) if top_p < 1.0 else None
        self.temperature = float(temperature)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self.temperature != 1.0:
            scores = scores / self.temperature
        if self.nucleus is None:
            tokens = _inverse_cdf_draw(scores.softmax(-1))[:, 0]
        else:
            tokens = self.nucleus.sample(input_ids, scores)
        return torch.full_like(scores, float("-inf")).scatter_(1, tokens[:, None], 0.0)
