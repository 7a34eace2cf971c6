"""The CORAL step (paper §3.2-3.3, Algorithm 1, eq. 1-3), read top to bottom in `CoralObjective`:

1. candidates: per row of the batch the ground truth r+ with probability p+, else a negative r-
   from the configured sampler (random utterances off-policy; the model's own nucleus samples in
   mix-policy; k samples per row when the baseline is RLOO). One candidate per row, as in
   Algorithm 1: eq. 3 sums an r+ and an r- term for every context, and drawing one of the two per
   row (r+ with probability p+) optimises the same objective in expectation, with each term
   weighted p+ and 1 - p+, at half the forward passes;
2. f = f_R(c, r) from the frozen retriever (a reward model, or any plain callable); a reward
   model's f_R(c, r+) is kept per training pair after its first scoring, so later epochs skip
   the reward pass on r+ (`objectives/positive_rewards.py`); beyond the paper,
   `objective.length_debias = "residual"` takes the part of f_R that reply length predicts out of
   it (`objectives/length_debias.py`);
3. R3 = f - b with baseline b: the paper's fixed margin m, or (beyond it, per its footnote 3) a
   moving average of f_R over earlier batches, or the leave-one-out mean of the k on-policy
   samples of a context;
4. log P(r | c) of each candidate under the generator, then `coral_loss` (eq. 2-3);
5. beyond the paper, for pretrained LMs: the KL guard beta * KL(pi || ref) on the on-policy
   samples only (`objective.kl_coef`, `objectives/kl.py` says which estimator follows which
   gradient), normalised like the CORAL term.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist

from coral_cli.config.schema import ObjectiveConfig
from coral_cli.generator.core.batch import IGNORE, Responses, TrainBatch
from coral_cli.generator.core.policy import Policy
from coral_cli.generator.core.reference import reference_model
from coral_cli.objectives.candidates import CandidateSet, check_samplers, draw_candidates
from coral_cli.objectives.coral_loss import coral_loss
from coral_cli.objectives.kl import kl_penalty
from coral_cli.objectives.length_debias import LengthDebias
from coral_cli.objectives.positive_rewards import PositiveRewardCache
from coral_cli.objectives.reward_input import score_candidates

ON_POLICY = 1  # CandidateSet.kind of the model's own samples


class CoralObjective:
    """candidates -> f_R -> R3 = f_R - baseline -> L = -R3 * sum_t log P (eq. 2-3)."""

    def __init__(self, cfg: ObjectiveConfig, reward: Any, samplers: dict[str, Any], policy: Policy,
                 reference: Any = None) -> None:
        """`reward` is a `RewardModel` or a `CallableReward` (see `score_candidates`); `samplers`
        maps plugin names to built samplers; `policy` is the generator backend; `reference` the
        frozen copy the KL term compares with (None: the policy with its adapters off)."""
        self.cfg, self.reward, self.samplers, self.policy, self.reference = cfg, reward, samplers, policy, reference
        self.ema = None  # moving-average baseline: bias-corrected mean f_R of the batches so far
        self.ema_batches = 0
        self.length_debias: LengthDebias | None = None  # fitted at the run's start (tasks/train.py)
        self.positive_rewards: PositiveRewardCache | None = None  # set by GeneratorTask for a frozen reward model
        check_samplers(cfg, samplers)

    def __call__(self, model: Any, batch: TrainBatch) -> tuple[torch.Tensor, dict[str, Any]]:
        cs = draw_candidates(self.cfg, self.samplers, model, batch, self.policy.pad_id)
        f = self.candidate_rewards(batch, cs)  # (N,) frozen
        raw_f = f
        if self.length_debias is not None:
            f = self.length_debias(f, cs.cand.mask.sum(1))
        r3 = (f - self.baseline(f, cs)).detach()
        self.update_ema(f, cs)  # after R3: the baseline never includes the batch it judges
        seq = self.policy.teacher(batch.prompt_ids[cs.row], batch.prompt_mask[cs.row], cs.cand)
        seq.scored = cs.cand.label_count()  # the scored rows by a static-size index: no boolean index
        rng = _rng_state(seq.labels.device) if self.cfg.kl_coef else None
        logp, scored = self.policy.logprobs(model, seq), seq.labels.ne(IGNORE)  # (N, T) each
        penalty, kl = None, None
        if self.cfg.kl_coef:
            on_policy = scored & cs.kind.eq(ON_POLICY)[:, None]  # (N, T): the model's own samples only
            term, kl = kl_penalty(logp, self.reference_logprobs(model, seq, rng), on_policy, self.cfg.kl_estimator)
            penalty = self.cfg.kl_coef * term
        loss, stats = coral_loss(logp.sum(1), r3, scored.sum(1), self.cfg.normalize, cs.weight, penalty)
        if kl is not None:
            on = cs.kind.eq(ON_POLICY)
            stats["kl"] = torch.where(on.any(), (kl * on).sum() / on.sum().clamp(min=1),
                                      torch.tensor(float("nan"), device=kl.device))
        if self.length_debias is not None:
            stats["f_R_raw"] = raw_f.mean()
        return loss, {**stats, **candidate_stats(f, r3, cs), "tokens": batch.tokens}

    def candidate_rewards(self, batch: TrainBatch, cs: CandidateSet) -> torch.Tensor:
        """f_R (N,) of the candidates against their rows' contexts: r+ already scored in an earlier
        epoch from the cache, every other candidate from the reward."""

        def score(index: torch.Tensor | None = None) -> torch.Tensor:
            cand, rows = cs.cand, cs.row
            if index is not None:
                cand, rows = Responses(cand.ids[index], cand.mask[index], cand.ended[index]), rows[index]
            return score_candidates(self.reward, self.policy, batch.contexts, batch.texts, cand, rows)

        cache = self.positive_rewards
        if cache is None or batch.examples is None or cs.row_host is None:
            return score()
        return cache.rewards(batch.examples, cs.row_host, cs.kind_host, cs.cand, score)

    def reference_logprobs(self, model: Any, seq: Any, rng: Any) -> torch.Tensor:
        """(N, T) log ref of the candidates' tokens, in the policy's train/eval mode and with the
        random state the policy's pass started from: with a frozen copy, dropout then draws the
        same masks on both sides, so the KL is exactly 0 while the weights are equal."""
        with torch.random.fork_rng(devices=rng[1]):
            _set_rng_state(rng)
            with reference_model(getattr(model, "module", model), self.reference) as ref:
                return self.policy.logprobs(ref, seq)

    def baseline(self, f: torch.Tensor, cs: CandidateSet) -> torch.Tensor:
        """fixed: the margin m (paper); moving-average: the mean f_R of the earlier batches (the
        margin for the first); rloo: for the k samples of a context, the mean reward of the
        other k - 1 (others keep the margin)."""
        cfg = self.cfg
        if cfg.baseline == "moving-average" and self.ema is not None:
            return self.ema.to(f.dtype).expand_as(f)
        b = torch.full_like(f, cfg.margin)  # fixed, rloo's non-samples, and the first moving-average batch
        if cfg.baseline == "rloo":
            for start, stop, k in cs.groups:
                g = f[start:stop].view(-1, k)
                b[start:stop] = ((g.sum(1, keepdim=True) - g) / (k - 1)).flatten()
        return b

    def update_ema(self, f: torch.Tensor, cs: CandidateSet) -> None:
        """Fold this batch's weighted mean f_R, averaged over every rank (so that all ranks share
        one baseline), into a bias-corrected moving average (Adam's correction: an EMA started at
        0 and divided by 1 - decay^n, so early batches are not pulled towards 0)."""
        if self.cfg.baseline != "moving-average":
            return
        w = cs.weight.to(f.dtype)
        mean = ((w * f).sum() / w.sum()).detach().float()
        if dist.is_available() and dist.is_initialized():
            mean = mean.clone()
            dist.all_reduce(mean)
            mean = mean / dist.get_world_size()
        decay, n = self.cfg.ema_decay, self.ema_batches
        raw = (self.ema if self.ema is not None else mean.new_zeros(())) * (1 - decay ** n)  # uncorrected EMA
        raw = decay * raw + (1 - decay) * mean
        self.ema_batches = n + 1
        self.ema = raw / (1 - decay ** self.ema_batches) if decay < 1 else mean


def _rng_state(device: torch.device) -> tuple[Any, list]:
    """The CPU (and this CUDA device's) generator state, to replay the policy's dropout masks."""
    if device.type == "cuda":
        return (torch.get_rng_state(), [device], torch.cuda.get_rng_state(device))
    return (torch.get_rng_state(), [], None)


def _set_rng_state(state: tuple[Any, list, Any]) -> None:
    torch.set_rng_state(state[0])
    if state[2] is not None:
        torch.cuda.set_rng_state(state[2], state[1][0])


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
