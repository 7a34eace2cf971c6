"""The CORAL loss (paper §3.2-3.3, Algorithm 1, eq. 1-3).

For each (context c, ground truth r+) of a batch: with probability p+ the candidate is r+,
otherwise a negative r- from the configured sampler (random utterances off-policy; nucleus
samples of the model itself in mix-policy). R3(c, r) = f_R(c, r) - b with a frozen retriever
f_R and baseline b (the paper's fixed margin m; moving-average and RLOO baselines go beyond it,
per its footnote 3). Per candidate: L = -R3(c, r) * sum_t log P(r_t | r_<t, c) (eq. 2), summed
over positives and negatives (eq. 3) and averaged over the batch ('sequence'), or divided by the
number of target tokens ('token', which with p+ = 1, m = 0, R3 = 1 is exactly cross-entropy).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from coral_cli.config.schema import ObjectiveConfig
from coral_cli.generator.batch import IGNORE, Seq2SeqBatch, TrainBatch
from coral_cli.generator.logprobs import token_logprobs
from coral_cli.rewards.base import RewardModel
from coral_cli.samplers.base import Candidates, SampleRequest


def choose_sources(rng: np.random.Generator, n: int, cfg: ObjectiveConfig) -> np.ndarray:
    """Per row: 0 = positive (prob p+), 1 = on-policy negative, 2 = random negative."""
    positive = rng.random(n) < cfg.p_plus
    if cfg.policy == "off":
        negative = np.full(n, 2)
    else:
        negative = np.where(rng.random(n) < cfg.random_ratio, 2, 1)
    return np.where(positive, 0, negative)


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
    """sample candidates -> score with the frozen reward -> L = -R3 * sum_t log P (eq. 2-3)."""

    def __init__(self, cfg: ObjectiveConfig, reward: RewardModel, samplers: dict[str, Any], tok: Any) -> None:
        self.cfg, self.reward, self.samplers, self.tok = cfg, reward, samplers, tok
        self.ema = None  # running mean reward (baseline = moving-average)

    def __call__(self, model: Any, batch: TrainBatch) -> tuple[torch.Tensor, dict[str, Any]]:
        cfg, tok = self.cfg, self.tok
        src = choose_sources(batch.rng, len(batch.contexts), cfg)
        parts, rows, kinds, on_policy = [], [], [], slice(0, 0)
        for code, name in ((0, "positive"), (1, cfg.on_policy_sampler), (2, cfg.negative_sampler)):
            idx = np.flatnonzero(src == code)
            if not len(idx):
                continue
            k = cfg.rloo_k if (code == 1 and cfg.baseline == "rloo") else 1
            request = SampleRequest([batch.contexts[i] for i in idx], [batch.positives[i] for i in idx],
                                    batch.pool_index[idx], batch.enc_ids[idx], batch.enc_mask[idx], batch.rng, model, k)
            start = sum(len(r) for r in rows)
            parts.append(self.samplers[name].sample(request))
            rows.append(np.repeat(idx, k))
            kinds.append(np.full(len(idx) * k, code))
            if code == 1:
                on_policy = slice(start, start + len(idx) * k)
        cand = _concat(parts, tok.pad_token_id)
        device = batch.enc_ids.device
        row = torch.as_tensor(np.concatenate(rows), device=device)
        kind = torch.as_tensor(np.concatenate(kinds), device=device)
        f = self.score(batch, cand, row)  # (N,) f_R in (0, 1); the reward is frozen, no gradient
        r3 = (f - self.baseline(f, on_policy)).detach()
        seq = decoder_batch(batch.enc_ids[row], batch.enc_mask[row], cand, tok.cls_token_id, tok.sep_token_id,
                            tok.pad_token_id)
        logp = token_logprobs(model, seq)  # (N, T)
        n_tok = seq.labels.ne(IGNORE).sum(1)
        per_candidate = -r3 * logp.sum(1)  # eq. 2
        if cfg.normalize == "token":
            loss = per_candidate.sum() / n_tok.sum().clamp(min=1)
        else:
            loss = per_candidate.mean()
        return loss, self.stats(f, r3, kind, n_tok, logp, batch)

    def score(self, batch: TrainBatch, cand: Candidates, row: torch.Tensor) -> torch.Tensor:
        """f_R(c, r) on the device with the retriever's own context/response budgets."""
        return self.reward.score_samples(batch.contexts, cand.ids, cand.mask, row).clone()

    def baseline(self, f: torch.Tensor, on_policy: slice) -> torch.Tensor:
        """fixed: the margin m (paper); moving-average: running mean of f_R; rloo: for on-policy
        samples, the mean reward of the other k - 1 samples of the same context."""
        cfg = self.cfg
        if cfg.baseline == "moving-average":
            mean = f.mean().detach()
            self.ema = mean if self.ema is None else cfg.ema_decay * self.ema + (1 - cfg.ema_decay) * mean
            return self.ema.expand_as(f)
        b = torch.full_like(f, cfg.margin)
        if cfg.baseline == "rloo" and on_policy.stop > on_policy.start:
            g = f[on_policy].view(-1, cfg.rloo_k)
            b[on_policy] = ((g.sum(1, keepdim=True) - g) / (cfg.rloo_k - 1)).flatten()
        return b

    def stats(self, f, r3, kinds, n_tok, logp, batch) -> dict[str, Any]:
        pos, neg = kinds.eq(0), kinds.ne(0)
        nan = torch.tensor(float("nan"), device=f.device)
        return {
            "r3_pos": torch.where(pos.any(), (r3 * pos).sum() / pos.sum().clamp(min=1), nan),
            "r3_neg": torch.where(neg.any(), (r3 * neg).sum() / neg.sum().clamp(min=1), nan),
            "f_R": f.mean(),
            "neg_share": neg.float().mean(),
            "resp_len": n_tok.float().mean(),
            "nll": -(logp.sum() / n_tok.sum().clamp(min=1)).detach(),
            "nonfinite_reward": (~torch.isfinite(f)).sum(),
            "tokens": batch.tokens,
        }


def _concat(parts: list[Candidates], pad_id: int) -> Candidates:
    width = max(p.ids.shape[1] for p in parts)

    def widen(t: torch.Tensor, fill: Any) -> torch.Tensor:
        return torch.nn.functional.pad(t, (0, width - t.shape[1]), value=fill)

    return Candidates(torch.cat([widen(p.ids, pad_id) for p in parts]),
                      torch.cat([widen(p.mask, False) for p in parts]),
                      torch.cat([p.ended for p in parts]))
