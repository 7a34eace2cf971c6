"""The CORAL step (paper §3.2-3.3, Algorithm 1, eq. 1-3), read top to bottom in `CoralObjective`:

1. candidates: per row of the batch the ground truth r+ with probability p+, else a negative r-
   from the configured sampler (random utterances off-policy; the model's own nucleus samples in
   mix-policy; k samples per row when the baseline is RLOO);
2. f = f_R(c, r) from the frozen retriever (a reward model, or any plain callable);
3. R3 = f - b with baseline b: the paper's fixed margin m, or (beyond it, per its footnote 3) a
   moving average of f_R or the leave-one-out mean of the k on-policy samples of a context;
4. log P(r | c) of each candidate under the generator, then `coral_loss` (eq. 2-3).
"""

from __future__ import annotations

from typing import Any

import torch

from coral_cli.config.schema import ObjectiveConfig
from coral_cli.generator.batch import IGNORE, Seq2SeqBatch, TrainBatch
from coral_cli.generator.logprobs import token_logprobs
from coral_cli.objectives.coral_loss import coral_loss
from coral_cli.objectives.candidates import CandidateSet, check_samplers, draw_candidates
from coral_cli.samplers.base import Candidates


def decoder_batch(enc_ids: torch.Tensor, enc_mask: torch.Tensor, cand: Candidates, cls_id: int, sep_id: int,
                  pad_id: int) -> Seq2SeqBatch:
    """Teacher-forcing tensors for candidates, built on the device (no host round trip):
    the decoder reads [CLS] r and predicts r, then [SEP] where the candidate ended."""
    n, length = cand.ids.shape
    ids = cand.ids.masked_fill(~cand.mask, pad_id)
    start = torch.full((n, 1), cls_id, dtype=ids.dtype, device=ids.device)
    dec = torch.cat([start, ids], 1)  # (n, L + 1)
    labels = torch.cat([ids.masked_fill(~cand.mask, IGNORE), torch.full_like(start, IGNORE)], 1)
    pos = torch.arange(length + 1, device=ids.device)[None, :]
    eos = pos.eq(cand.mask.sum(1, keepdim=True)) & cand.ended[:, None]
    labels = torch.where(eos, torch.full_like(labels, sep_id), labels)
    return Seq2SeqBatch(enc_ids, enc_mask, dec, labels, 0)


class CoralObjective:
    """candidates -> f_R -> R3 = f_R - baseline -> L = -R3 * sum_t log P (eq. 2-3)."""

    def __init__(self, cfg: ObjectiveConfig, reward: Any, samplers: dict[str, Any], tok: Any) -> None:
        """`reward` has `score_samples(context_ids, ids, mask, rows) -> (N,)` (a `RewardModel` or a
        `CallableReward`); `samplers` maps plugin names to built samplers."""
        self.cfg, self.reward, self.samplers, self.tok = cfg, reward, samplers, tok
        self.ema = None  # running mean reward (baseline = moving-average)
        check_samplers(cfg, samplers)

    def __call__(self, model: Any, batch: TrainBatch) -> tuple[torch.Tensor, dict[str, Any]]:
        cs = draw_candidates(self.cfg, self.samplers, model, batch, self.tok.pad_token_id)
        f = self.reward.score_samples(batch.contexts, cs.cand.ids, cs.cand.mask, cs.row).float().clone()  # (N,) frozen
        r3 = (f - self.baseline(f, cs)).detach()
        logp, n_tok = self.logprobs(model, batch, cs)
        loss, stats = coral_loss(logp, r3, n_tok, self.cfg.normalize, cs.weight)
        return loss, {**stats, **candidate_stats(f, r3, cs), "tokens": batch.tokens}

    def logprobs(self, model: Any, batch: TrainBatch, cs: CandidateSet) -> tuple[torch.Tensor, torch.Tensor]:
        """sum_t log P(r_t | r_<t, c) (N,) and target tokens (N,) of each candidate."""
        tok = self.tok
        seq = decoder_batch(batch.enc_ids[cs.row], batch.enc_mask[cs.row], cs.cand, tok.cls_token_id,
                            tok.sep_token_id, tok.pad_token_id)
        logp = token_logprobs(model, seq)  # (N, T)
        return logp.sum(1), seq.labels.ne(IGNORE).sum(1)

    def baseline(self, f: torch.Tensor, cs: CandidateSet) -> torch.Tensor:
        """fixed: the margin m (paper); moving-average: running mean of f_R; rloo: for the k
        samples of a context, the mean reward of the other k - 1 (others keep the margin)."""
        cfg = self.cfg
        if cfg.baseline == "moving-average":
            mean = f.mean().detach()
            self.ema = mean if self.ema is None else cfg.ema_decay * self.ema + (1 - cfg.ema_decay) * mean
            return self.ema.expand_as(f)
        b = torch.full_like(f, cfg.margin)
        if cfg.baseline == "rloo":
            for start, stop, k in cs.groups:
                g = f[start:stop].view(-1, k)
                b[start:stop] = ((g.sum(1, keepdim=True) - g) / (k - 1)).flatten()
        return b


def candidate_stats(f: torch.Tensor, r3: torch.Tensor, cs: CandidateSet) -> dict[str, Any]:
    """Detached means by kind, kept on the device (NaN where a batch has no candidate of a kind)."""
    pos, neg, w = cs.kind.eq(0), cs.kind.ne(0), cs.weight
    nan = torch.tensor(float("nan"), device=f.device)

    def mean(mask: torch.Tensor) -> torch.Tensor:
        return torch.where(mask.any(), (r3 * w * mask).sum() / (w * mask).sum().clamp(min=1e-12), nan)

    return {
        "r3_pos": mean(pos),
        "r3_neg": mean(neg),
        "f_R": f.mean(),
        "neg_share": (w * neg).sum() / w.sum(),
        "nonfinite_reward": (~torch.isfinite(f)).sum(),
    }
