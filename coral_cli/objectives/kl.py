"""A KL penalty to a reference policy, as a pure function of per-token log-probabilities.

Beyond the paper (CORAL trains a randomly initialised model, eq. 2-3): when a pretrained LM is
fine-tuned with a learned reward, the policy can drift into text the reward over-scores (reward
hacking) and lose its fluency. The usual guard, as in TRL's PPO / GRPO trainers, adds
beta * KL(policy || reference) to the loss, estimated on the tokens actually scored.
"""

from __future__ import annotations

import torch

ESTIMATORS = ("k1", "k3")


def kl_penalty(logp: torch.Tensor, ref_logp: torch.Tensor, mask: torch.Tensor,
               estimator: str = "k3") -> torch.Tensor:
    """Per-sequence KL(policy || reference) estimate (N,), summed over the response tokens.

    logp (N, T): log P_policy of each target token (carries the gradient); ref_logp (N, T):
    log P_ref of the same tokens (detached here); mask (N, T): 1 on response tokens, 0 on padding.
    With d = ref_logp - logp per token (Schulman, "Approximating KL divergence", 2020):
    k1 = -d, unbiased but can be negative; k3 = exp(d) - d - 1, unbiased and never negative,
    with lower variance. Padding never contributes, even where its log-probs are -inf.
    """
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {ESTIMATORS}, not {estimator!r}")
    if logp.shape != ref_logp.shape or logp.shape != mask.shape:
        raise ValueError(f"shapes differ: logp {tuple(logp.shape)}, ref_logp {tuple(ref_logp.shape)}, "
                         f"mask {tuple(mask.shape)}")
    keep = mask.bool()
    d = torch.where(keep, ref_logp.detach() - logp, torch.zeros_like(logp))  # (N, T), 0 off the response
    per_token = -d if estimator == "k1" else torch.expm1(d) - d
    return per_token.sum(dim=-1)  # (N,)
