"""A length-debiased reward for CORAL training: ODIN's idea (Chen et al. 2024, arXiv 2402.07319)
in its simplest form.

A learned retriever can prefer longer replies: on SmolLM2, the training reward's R3 correlated
0.35 with reply length, and CORAL-FT's replies grew to 1.5x the references'. With
`objective.length_debias = "residual"`, training starts by fitting f_R ~ a + b * length on
validation pairs (the references and the model's own samples, scored by the training reward) and
then trains on f_R - b * (length - mean reference length): a reply of the references' mean length
keeps its score, and length alone no longer pays. Lengths are counted in the policy's tokens
(response tokens, without the end token). The fit is logged and saved with the run.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from coral_cli.config.schema import GenerateConfig
from coral_cli.generator.core.batch import Responses
from coral_cli.generator.core.policy import Policy
from coral_cli.objectives.reward_input import score_candidates

MODES = ("none", "residual")


@dataclass(frozen=True)
class LengthDebias:
    """f_R - slope * (length - ref_length); `corr` is the fitted Pearson r of f_R with length."""

    slope: float
    intercept: float
    ref_length: float
    corr: float
    pairs: int

    def __call__(self, f: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Debiased rewards (N,) for rewards f (N,) of replies `lengths` (N,) tokens long."""
        return f - self.slope * (lengths.to(f.dtype) - self.ref_length)

    def record(self) -> dict[str, float]:
        return asdict(self)

    def tensors(self) -> dict[str, torch.Tensor]:
        """For the run's extra state (a resume keeps the fit of the run's start)."""
        return {f"objective.length_debias.{k}": torch.tensor([float(v)], dtype=torch.float64)
                for k, v in asdict(self).items()}

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor]) -> LengthDebias | None:
        keys = {k.removeprefix("objective.length_debias."): float(v[0]) for k, v in tensors.items()
                if k.startswith("objective.length_debias.")}
        if set(keys) != {"slope", "intercept", "ref_length", "corr", "pairs"}:
            return None
        return cls(**{**keys, "pairs": int(keys["pairs"])})


def fit_length_debias(scores: torch.Tensor | np.ndarray, lengths: torch.Tensor | np.ndarray,
                      ref_length: float) -> LengthDebias:
    """Least squares f ~ a + b * length over the pairs; b = 0 when every length is the same."""
    f = np.asarray(torch.as_tensor(scores).double().cpu())
    n = np.asarray(torch.as_tensor(lengths).double().cpu())
    if len(f) != len(n) or len(f) < 2:
        raise ValueError(f"need at least two (score, length) pairs of equal count, got {len(f)} and {len(n)}")
    var_n, var_f = n.var(), f.var()
    cov = ((n - n.mean()) * (f - f.mean())).mean()
    slope = float(cov / var_n) if var_n > 0 else 0.0
    corr = float(cov / math.sqrt(var_n * var_f)) if var_n > 0 and var_f > 0 else 0.0
    return LengthDebias(slope, float(f.mean() - slope * n.mean()), float(ref_length), corr, len(f))


@torch.no_grad()
def fit_on_validation(policy: Policy, model: Any, reward: Any, val: dict[str, Any], decoding: GenerateConfig,
                      device: torch.device, bf16: bool = True, pairs: int = 256, batch_size: int = 32) -> LengthDebias:
    """Score the first `pairs` validation references and one sample of the model per context
    (`decoding`: the on-policy sampler's nucleus), then fit f_R on length over both."""
    ctx, refs = val["context_ids"][:pairs], val["response_ids"][:pairs]
    texts = val.get("texts")
    texts = texts[:pairs] if texts is not None else None
    order = np.argsort([len(c) for c in ctx], kind="stable")  # similar prompt lengths batch together
    scores, lens = [], []
    was_training = model.training
    model.eval()
    try:
        for idx in np.array_split(order, max(1, math.ceil(len(order) / batch_size))):
            batch_ctx = [ctx[i] for i in idx]
            batch_texts = [texts[i] for i in idx] if texts is not None else None
            ids, mask = policy.prompts(batch_ctx, device)
            own = policy.sample(model, ids, mask, decoding, num_return_sequences=1, bf16=bf16)
            ref = Responses.from_lists([refs[i] for i in idx], policy.pad_id, device)
            for cand in (ref, own):
                scores.append(score_candidates(reward, policy, batch_ctx, batch_texts, cand).float().cpu())
                lens.append(cand.mask.sum(1).cpu())
    finally:
        model.train(was_training)
    ref_length = float(np.mean([len(r) for r in refs]))
    return fit_length_debias(torch.cat(scores), torch.cat(lens), ref_length)
