"""DMI-style dual encoder (Santra et al. 2021): context and response encoded separately and
trained to maximise their mutual information with InfoNCE over in-batch negatives; an MLP head
with sigmoid on the pair features [c, r, c*r, |c-r|] gives f_R. The DMI_Medium checkpoint is not
available offline, so both encoders start from the backbone and learn on the dialogue data."""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from coral_cli.api import (
    POOLING_HELP, POOLINGS, backbone_from_arch, ConfigError, load_backbone, MLPHead, opt, pool,
    resolve_pooling, RetrieverConfig, RewardModel, SpecialIds, wrap_single,
)


@dataclass
class DmiArgs:
    """DMI options (`[retriever.args]`)."""

    infonce_weight: float = opt(1.0, "weight of the InfoNCE term added to the BCE loss", min=0.0)
    temperature: float = opt(0.1, "InfoNCE temperature on cosine similarities", min=1e-4)
    shared_encoder: bool = opt(False, "one encoder for context and response (DMI uses two)")
    pooling: str = opt("auto", POOLING_HELP, choices=POOLINGS)
    score: str = opt("mlp", "f_R from the pair: mlp = the MLP head on [c, r, c*r, |c-r|] (DMI); cosine = "
                     "sigmoid(a cos(c, r) + b) with learned a, b, which keeps a pretrained sentence encoder's "
                     "ranking from the first step (fast CPU rewards)", choices=("mlp", "cosine"))


class DmiRetriever(RewardModel):
    """DMI dual encoder: separate context/response encoders, InfoNCE + MLP head on pair features."""

    Args = DmiArgs

    def __init__(self, cfg: RetrieverConfig, args: DmiArgs, special: SpecialIds, arch: dict[str, Any] | None) -> None:
        super().__init__(cfg, args, special, arch)
        self.ctx_encoder = backbone_from_arch(arch["encoder"]) if arch else load_backbone(cfg, special.vocab_size)
        self.resp_encoder = self.ctx_encoder if args.shared_encoder else copy.deepcopy(self.ctx_encoder)
        d = self.ctx_encoder.config.hidden_size
        limit = self.ctx_encoder.config.max_position_embeddings - 2
        if max(cfg.max_context_tokens, cfg.max_response_tokens) > limit:
            raise ConfigError(f"dmi encodes at most {limit} tokens per side",
                              f"set retriever.max_context_tokens and max_response_tokens <= {limit}")
        self.head: nn.Module = MLPHead(4 * d, cfg.mlp_hidden, cfg.dropout) if args.score == "mlp" else CosineHead()
        # a fresh model resolves 'auto'; checkpoints saved before this option pooled with [CLS]
        self.args = replace(args, pooling=resolve_pooling(args.pooling, cfg.backbone) if arch is None
                            else ("cls" if args.pooling == "auto" else args.pooling))

    def arch(self) -> dict[str, Any]:
        return {"encoder": self.ctx_encoder.config.to_dict()}

    def embed(self, encoder: nn.Module, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The pooled vector of "[CLS] x [SEP]": (B, T) -> (B, D)."""
        s = self.special
        wrapped, wmask = wrap_single(ids, mask, s.cls, s.sep, s.pad)
        return pool(encoder(input_ids=wrapped, attention_mask=wmask.long()).last_hidden_state, wmask, self.args.pooling)

    def _features(self, ctx, ctx_mask, resp, resp_mask):
        c = self.embed(self.ctx_encoder, ctx, ctx_mask)
        r = self.embed(self.resp_encoder, resp, resp_mask)
        if self.args.score == "cosine":
            return c, r, self.head(c, r)
        return c, r, self.head(torch.cat([c, r, c * r, (c - r).abs()], -1))

    def forward(self, ctx: torch.Tensor, ctx_mask: torch.Tensor, resp: torch.Tensor, resp_mask: torch.Tensor) -> torch.Tensor:
        return self._features(ctx, ctx_mask, resp, resp_mask)[2]

    def training_outputs(self, ctx, ctx_mask, resp, resp_mask, n_pos):
        """BCE logits for all rows plus InfoNCE over the positives' in-batch pairs (both directions)."""
        c, r, logits = self._features(ctx, ctx_mask, resp, resp_mask)
        if n_pos < 2 or self.args.infonce_weight == 0:
            return logits, None, {}
        cp, rp = F.normalize(c[:n_pos].float(), dim=-1), F.normalize(r[:n_pos].float(), dim=-1)
        sim = cp @ rp.T / self.args.temperature  # (P, P): diagonal = true pairs
        target = torch.arange(n_pos, device=sim.device)
        nce = 0.5 * (F.cross_entropy(sim, target) + F.cross_entropy(sim.T, target))
        acc = (sim.argmax(1) == target).float().mean()
        return logits, self.args.infonce_weight * nce, {"infonce": nce.detach(), "inbatch_acc": acc.detach()}


class CosineHead(nn.Module):
    """logit = a * cos(c, r) + b: a calibrated cosine similarity. Starts at a = 10, b = -2 (a pair
    at cosine 0.2 scores 0.5): all-MiniLM-L6-v2 puts DailyDialog replies at cosine 0.29 +- 0.17 to
    their contexts and random ones at 0.08 +- 0.09."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(10.0))
        self.bias = nn.Parameter(torch.tensor(-2.0))

    def forward(self, c: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        return self.scale * F.cosine_similarity(c.float(), r.float(), dim=-1) + self.bias
