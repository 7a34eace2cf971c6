"""A KL guard to a reference policy, as a pure function of per-token log-probabilities.

Beyond the paper (CORAL trains a randomly initialised model, eq. 2-3): when a pretrained LM is
fine-tuned with a learned reward, the policy can drift into text the reward over-scores (reward
hacking) and lose its fluency. The usual guard adds beta * KL(pi || ref) to what is minimised.

What matters is the *gradient* of the term, not its value (Schulman, "Approximating KL
divergence", 2020; Tang and Munos 2025 on this pitfall in GRPO). Only samples y ~ pi estimate
KL(pi || ref) = E_{y~pi}[log pi(y) - log ref(y)]: the ground truth and random negatives are not
drawn from pi, so the caller passes a mask of on-policy tokens only. With d_t = log pi(y_t) -
log ref(y_t) on those tokens:

- `k1-reward` (default, as in PPO-style RLHF): the sequence's k1 = sum_t d_t, detached, is
  subtracted from its reward: the loss term is beta * k1 * sum_t log pi(y_t). Its expected
  gradient is exactly grad KL(pi || ref) over whole sequences (REINFORCE with reward -k1).
- `k2`: the loss beta * 1/2 sum_t d_t^2. Its gradient sum_t d_t grad log pi(y_t) is
  grad KL(pi || ref) for one token; over a sequence it ignores each token's effect on later
  prefixes (the per-token KL gradient), with lower variance than k1-reward.
- `k3`: the loss beta * sum_t (exp(-d_t) + d_t - 1). An unbiased, never negative estimate of the
  *value* of KL(pi || ref), but its expected gradient, (1 - ref/pi) grad log pi, is
  grad KL(ref || pi): the reverse divergence (mass-covering). Kept for that, labelled as such.

k1 as a plain loss is not offered: its expected gradient is zero (E_pi[grad log pi] = 0).
"""

from __future__ import annotations

import torch

ESTIMATORS = ("k1-reward", "k2", "k3")
# the divergence whose gradient each estimator's loss follows in expectation (logged with the run)
FOLLOWS = {"k1-reward": "KL(pi || ref)", "k2": "KL(pi || ref), per token", "k3": "KL(ref || pi)"}


def kl_penalty(logp: torch.Tensor, ref_logp: torch.Tensor, mask: torch.Tensor,
               estimator: str = "k1-reward") -> tuple[torch.Tensor, torch.Tensor]:
    """Per-candidate KL loss term (N,) and the detached k1 estimate of KL(pi || ref) (N,).

    logp (N, T): log pi of each target token (carries the gradient); ref_logp (N, T): log ref of
    the same tokens (detached here); mask (N, T): 1 on the on-policy samples' response tokens, 0
    elsewhere (ground truth, random negatives, padding), which then contribute nothing, not even a
    gradient, even where their log-probs are -inf. The caller normalises the term like the CORAL
    term (`coral_loss(penalty=...)`) and scales it by beta.
    """
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {ESTIMATORS}, not {estimator!r}")
    if logp.shape != ref_logp.shape or logp.shape != mask.shape:
        raise ValueError(f"shapes differ: logp {tuple(logp.shape)}, ref_logp {tuple(ref_logp.shape)}, "
                         f"mask {tuple(mask.shape)}")
    keep = mask.bool()
    zero = torch.zeros_like(logp)
    lp = torch.where(keep, logp, zero)  # (N, T): no gradient path through masked entries
    d = lp - torch.where(keep, ref_logp.detach(), zero)  # (N, T) log pi - log ref, 0 off the samples
    k1 = d.sum(-1)  # (N,)
    if estimator == "k1-reward":
        term = k1.detach() * lp.sum(-1)  # REINFORCE with reward -k1: the score-function gradient
    elif estimator == "k2":
        term = 0.5 * d.pow(2).sum(-1)
    else:
        term = (torch.expm1(-d) + d).sum(-1)
    return term, k1.detach()
