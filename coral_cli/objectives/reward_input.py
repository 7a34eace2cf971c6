"""Feed candidates to the reward f_R in the reward's own tokens (paper §3.1: R3 = f_R - m).

When the reward reads exactly the generator's ids (the paper's setting: WordPiece contexts
joined with [SEP] on both sides), candidates stay on the device and are scored as they are.
Otherwise (a pretrained LM's tokenizer, a plain-function reward) the candidates are decoded to
text and the reward tokenizes them, with the contexts' utterances, itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from coral_cli.generator.core.batch import Responses
from coral_cli.generator.core.policy import Policy
from coral_cli.tokenizer import tokenizer_fingerprint


def shares_tokens(reward: Any, policy: Policy) -> bool:
    """Whether `reward` can score the generator's context and response ids directly."""
    tok = getattr(reward, "tokenizer", None)
    return (hasattr(reward, "score_samples") and tok is not None and policy.format == "wordpiece-sep"
            and tokenizer_fingerprint(tok) == tokenizer_fingerprint(policy.tokenizer))


def score_candidates(reward: Any, policy: Policy, context_ids: Sequence[Sequence[int]],
                     texts: Sequence[Sequence[str]] | None, cand: Responses, rows: torch.Tensor | None = None) -> torch.Tensor:
    """f_R (N,) float32 on the candidates' device, for candidate i against context `rows[i]`
    (given as ids in the generator's format and as utterance texts)."""
    if shares_tokens(reward, policy):
        return reward.score_samples(context_ids, cand.ids, cand.mask, rows).float().clone()
    if texts is None:
        raise ValueError("this reward reads text: pass the contexts' utterances")
    picked = range(len(texts)) if rows is None else rows.tolist()
    scores = reward.score([list(texts[i]) for i in picked], policy.texts(cand))
    return scores.to(device=cand.ids.device, dtype=torch.float32)
