"""The CORAL step (paper §3.2-3.3, Algorithm 1, eq. 1-3), read top to bottom in `CoralObjective`:

1. candidates: per row of the batch the ground truth r+ with probability p+, else a negative r-
   from the configured sampler (random utterances off-policy; the model's own nucleus samples in
   mix-policy; k samples per row when the baseline is RLOO);
2. f = f_R(c, r) from the frozen retriever (a reward model, or any plain callable);
3. R3 = f - b with baseline b: the paper's fixed margin m, or (beyond it, per its footnote 3) a
   moving average of f_R or the leave-one-out mean of the k on-policy samples of a context;
4. log P(r | c) of each candidate under the generator, then `coral_loss` (eq. 2-3);
5. beyond the paper, for pretrained LMs: + kl_coef * KL(policy || reference) on the candidates'
   tokens, the usual guard against reward hacking in RL fine-tuning (`objective.kl_coef`).
"""

from __future__ import annotations

from typing import Any

import torch

from coral_cli.config.schema import ObjectiveConfig
from coral_cli.generator.batch import IGNORE, TrainBatch
from coral_cli.generator.lora import reference_model
from coral_cli.generator.policy import Policy
from coral_cli.objectives.coral_loss import coral_loss
from coral_cli.objectives.kl import kl_penalty
from coral_cli.objectives.candidates import CandidateSet, check_samplers, draw_candidates
from coral_cli.objectives.reward_input import score_candidates


class CoralObjective:
    """candidates -> f_R -> R3 = f_R - baseline -> L = -R3 * sum_t log P (eq. 2-3)."""

    def __init__(self, cfg: ObjectiveConfig, reward: Any, samplers: dict[str, Any], policy: Policy,
                 reference: Any = None) -> None:
        """`reward` is a `RewardModel` or a `CallableReward` (see `score_candidates`); `samplers`
        maps plugin names to built samplers; `policy` is the generator backend; `reference` the
        frozen copy the KL term compares with (None: the policy with its adapters off)."""
        self.cfg, self.reward, self.samplers, self.policy, self.reference = cfg, reward, samplers, policy, reference
        self.ema = None  # running mean reward (baseline = moving-average)
        check_samplers(cfg, samplers)

    def __call__(self, model: Any, batch: TrainBatch) -> tuple[torch.Tensor, dict[str, Any]]:
        cs = draw_candidates(self.cfg, self.samplers, model, batch, self.policy.pad_id)
        f = score_candidates(self.reward, self.policy, batch.contexts, batch.texts, cs.cand, cs.row)  # (N,) frozen
        r3 = (f - self.baseline(f, cs)).detach()
        seq = self.policy.teacher(batch.prompt_ids[cs.row], batch.prompt_mask[cs.row], cs.cand)
        logp, scored = self.policy.logprobs(model, seq), seq.labels.ne(IGNORE)  # (N, T) each
        loss, stats = coral_loss(logp.sum(1), r3, scored.sum(1), self.cfg.normalize, cs.weight)
        if self.cfg.kl_coef:
            kl = self.kl(model, seq, logp, scored)  # (N,)
            loss = loss + self.cfg.kl_coef * (cs.weight * kl).sum() / cs.weight.sum()
            stats["kl"] = kl.detach().mean()
        return loss, {**stats, **candidate_stats(f, r3, cs), "tokens": batch.tokens}

    def kl(self, model: Any, seq: Any, logp: torch.Tensor, scored: torch.Tensor) -> torch.Tensor:
        """Per-candidate KL estimate to the reference policy on the candidates' own tokens."""
        with reference_model(getattr(model, "module", model), self.reference) as ref:
            ref_logp = self.policy.logprobs(ref, seq)
        return kl_penalty(logp, ref_logp, scored, self.cfg.kl_estimator)

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
