"""AdaLabel's adaptive soft target and loss as pure functions of logits (Wang et al., ACL 2021,
"Diversifying Dialog Generation via Adaptive Label Smoothing", §3; arXiv 2105.14556).

For a target word y_t with the model's prediction p_t = softmax(main logits) and the auxiliary
decoder's logits z_t (`coral_cli.generator.bart.aux_decoder`):

- the soft target (eq. 2): q'_t = eps_t * v_t + (1 - eps_t) * q_t, q_t the one-hot of y_t;
- v_t, the distribution over the non-target words: softmax(z_t / T) with y_t (and the padding
  token) left out, from the light-weight bi-directional decoder;
- eps_t, the adaptive smoothing weight, from the model's own maximum probability:
  eps_t = 1 - max_w p_t(w), capped by 1 / (1 + max v_t) so that y_t keeps the largest probability
  in q'_t ((1 - eps) >= eps * max v);
- the training loss: KL(q'_t || p_t) for the generator plus the auxiliary decoder's own
  cross-entropy on the hard target y_t. v and eps are constants (no gradient through them).
The paper's text was not at hand offline: the equation number is the arXiv version's as we
recall it, and every formula here was checked against the authors' code.

Where the paper's text leaves room we follow the authors' code (lemon234071/AdaLabel,
onmt/utils/loss.py `AdaLabLoss`, and scripts/train_daily.sh), each a knob in `AdaLabelConfig`:
T = 1.5; the cap is 1 / (1 + max v) - margin with margin = 0.2; eps is then scaled by
alpha_t = (p_t(y_t) / max p_t) ** 2; v keeps only the 500 highest-scoring non-target words and
drops the single highest of them. Margin 0, alpha 0, keep_top 0 and drop_top 0 give the plain
form above. Our choices: the loss is averaged over target tokens (as our CE baseline), where the
authors' OpenNMT setup sums and divides by sentences; the two terms are added unweighted, as
there; ties at the keep_top boundary are cut (the authors keep them). The reported loss is the
KL (0 when p = q'), like the authors' `F.kl_div`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from coral_cli.config.schema import AdaLabelConfig


def non_target_distribution(aux_logits: torch.Tensor, target: torch.Tensor, cfg: AdaLabelConfig,
                            pad_id: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """v on its support: probabilities (N, K) and the word ids (N, K) they belong to. v is
    softmax(z / T) over the words other than the target (and padding) ranked drop_top+1 ..
    keep_top; all zeros where no word is left. K = keep_top - drop_top (or V), so nothing
    below costs O(V) per token but the ranking."""
    z = aux_logits.detach().float() / cfg.temperature  # a fresh tensor: safe to fill in place
    z.scatter_(1, target[:, None], float("-inf"))
    if pad_id is not None:
        z[:, pad_id] = float("-inf")
    n, vocab = z.shape
    if cfg.keep_top and cfg.keep_top < vocab:  # truncate the tail, then the head
        z, idx = z.topk(cfg.keep_top, dim=1)  # sorted, highest first
        z, idx = z[:, cfg.drop_top:], idx[:, cfg.drop_top:]
    else:
        idx = torch.arange(vocab, device=z.device).expand(n, vocab)
        if cfg.drop_top:
            z.scatter_(1, z.topk(min(cfg.drop_top, vocab), dim=1).indices, float("-inf"))
    left = torch.isfinite(z).any(1, keepdim=True)
    return torch.where(left, z.softmax(1), torch.zeros_like(z)), idx


def smoothing_weight(logp: torch.Tensor, target: torch.Tensor, v_max: torch.Tensor,
                     cfg: AdaLabelConfig) -> torch.Tensor:
    """eps (N,) = alpha * min(1 - max p, 1 / (1 + max v) - margin), alpha = (p(y) / max p) ** alpha,
    from the model's log-probabilities (N, V), taken as constants; 0 where v is empty."""
    lp = logp.detach()
    lp_max = lp.max(1).values
    lp_y = lp.gather(1, target[:, None])[:, 0]
    eps = torch.minimum(-torch.expm1(lp_max), 1 / (1 + v_max) - cfg.margin)
    eps = eps * torch.exp(cfg.alpha * (lp_y - lp_max))
    return torch.where(v_max > 0, eps, torch.zeros_like(eps))


def adalabel_loss(logits: torch.Tensor, aux_logits: torch.Tensor, target: torch.Tensor, cfg: AdaLabelConfig,
                  pad_id: int | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(1/N) sum over the N target tokens of [KL(q' || p) + CE(aux, y)]: logits and aux_logits
    (N, V) of the generator and the auxiliary decoder at those tokens, target (N,) their ids.

    q' = eps * v + (1 - eps) * one_hot(y) (eq. 2) is kept sparse: (1 - eps) at y, eps * v on v's
    support (which never holds y), so KL = (1 - eps) log((1 - eps) / p(y)) + sum_k eps v_k log(eps v_k / p(w_k))."""
    logp = F.log_softmax(logits.float(), -1)  # (N, V)
    aux = aux_logits.float()
    v, idx = non_target_distribution(aux, target, cfg, pad_id)  # (N, K) each
    eps = smoothing_weight(logp, target, v.max(1).values, cfg)
    q_v, q_y = eps[:, None] * v, 1 - eps  # q' off and at the target
    logp_y = logp.gather(1, target[:, None])[:, 0]
    kl = torch.xlogy(q_y, q_y) - q_y * logp_y + (torch.xlogy(q_v, q_v) - q_v * logp.gather(1, idx)).sum(1)
    aux_nll = F.cross_entropy(aux, target, reduction="none")
    n = max(len(target), 1)
    loss = (kl.sum() + aux_nll.sum()) / n
    stats = {"kl": kl.detach().sum() / n, "aux_nll": aux_nll.detach().sum() / n, "nll": -logp_y.detach().sum() / n,
             "epsilon": eps.sum() / n, "target_tokens": torch.tensor(float(len(target)))}
    return loss, stats
