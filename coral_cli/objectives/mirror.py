"""The Mirror baseline's loss (Li, Kiseleva and de Rijke, SIGIR 2021): the negative ELBO of
log p(x, y | c) with backward reasoning (the model and the notation: `coral_cli.generator.mirror.model`).

Per example, with z ~ q(z | c, x, y) reparameterised and NLL summed over a sequence's tokens:

    L = 1/2 [ NLL(y | c, x, z) + NLL(x | c, z) ]                 forward factorisation
      + 1/2 * lambda * [ NLL(x | c, y, z) + NLL(y | c, z) ]      backward factorisation (reasoning)
      + beta_t * KL( q(z | c, x, y) || p(z | c) )               both Gaussian, in closed form

averaged over the batch (the authors normalise by sentences, not tokens, which keeps the KL and the
NLL on one scale: the ELBO is per example). lambda = `backward_weight` (the authors' back_factor,
1 by default); beta_t rises linearly from 0 to 1 over `kl_anneal_batches` training batches (their
`kl_balance` epochs of annealing, cszmli/mirror-sigir onmt/Trainer.py). Everything else follows
their trainer: `loss_all = kl_w * KL / B + 0.5 * (cxz2y + back * cyz2x + cz2x + back * cz2y) / B`.
"""

from __future__ import annotations

from typing import Any

import torch

from coral_cli.config.schema import MirrorConfig
from coral_cli.generator.core.batch import IGNORE, TrainBatch
from coral_cli.generator.core.logprobs import label_logprobs
from coral_cli.generator.mirror.model import MirrorOutput
from coral_cli.generator.mirror.policy import MirrorPolicy


def sequence_nll(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(B, T, V) logits, or (M, V) at the M scored positions (labels != IGNORE, row-major), and
    (B, T) labels -> (B,) -sum_t log P(label_t), IGNORE positions left out."""
    if logits.dim() == 3:
        logits = logits[labels.ne(IGNORE)]
    return -label_logprobs(logits, labels).sum(1)


def gaussian_kl(mu_q: torch.Tensor, logvar_q: torch.Tensor, mu_p: torch.Tensor,
                logvar_p: torch.Tensor) -> torch.Tensor:
    """(B, Z) each -> (B,) KL(N(mu_q, e^logvar_q) || N(mu_p, e^logvar_p)), summed over dimensions."""
    return 0.5 * (logvar_p - logvar_q + (logvar_q.exp() + (mu_q - mu_p).pow(2)) / logvar_p.exp() - 1).sum(-1)


def mirror_loss(out: MirrorOutput, y_labels: torch.Tensor, x_labels: torch.Tensor, kl_weight: float,
                backward_weight: float) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The batch mean of L above -> (loss, detached stats: per-token NLL of each decoder, mean KL)."""
    y_cxz, x_cz = sequence_nll(out.y_given_cxz, y_labels), sequence_nll(out.x_given_cz, x_labels)
    x_cyz, y_cz = sequence_nll(out.x_given_cyz, x_labels), sequence_nll(out.y_given_cz, y_labels)
    kl = gaussian_kl(out.mu_q.float(), out.logvar_q.float(), out.mu_p.float(), out.logvar_p.float())
    loss = (0.5 * (y_cxz + x_cz) + 0.5 * backward_weight * (x_cyz + y_cz) + kl_weight * kl).mean()
    ny = y_labels.ne(IGNORE).sum().clamp(min=1)
    nx = x_labels.ne(IGNORE).sum().clamp(min=1)
    stats = {"nll": y_cxz.sum() / ny, "nll_x_cyz": x_cyz.sum() / nx, "nll_x_cz": x_cz.sum() / nx,
             "nll_y_cz": y_cz.sum() / ny, "kl": kl.mean(), "kl_weight": torch.tensor(float(kl_weight), device=kl.device),
             "target_tokens": ny.float()}
    return loss, {k: v.detach() for k, v in stats.items()}


class MirrorObjective:
    """`(model, batch) -> (loss, stats)` for a `MirrorPolicy`; counts training batches for the KL
    annealing (the count is saved with last/, so a resumed run anneals as an uninterrupted one)."""

    def __init__(self, policy: MirrorPolicy, cfg: MirrorConfig) -> None:
        self.policy, self.cfg = policy, cfg
        self.batches_seen = 0

    def kl_weight(self) -> float:
        n = self.cfg.kl_anneal_batches
        return 1.0 if n == 0 else min(1.0, self.batches_seen / n)

    def __call__(self, model: Any, train_batch: TrainBatch) -> tuple[torch.Tensor, dict[str, Any]]:
        inp = self.policy.training_inputs(train_batch.teacher)
        out = model(inp.c, inp.x, inp.y, inp.x_in, inp.y_in, inp.x_labels.ne(IGNORE), inp.y_labels.ne(IGNORE))
        loss, stats = mirror_loss(out, inp.y_labels, inp.x_labels, self.kl_weight(), self.cfg.backward_weight)
        self.batches_seen += 1
        return loss, {**stats, "tokens": train_batch.tokens}
