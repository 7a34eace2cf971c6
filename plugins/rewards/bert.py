"""BERT cross-encoder retriever (paper §4.1): "[CLS] c [SEP] r [SEP]" -> [CLS] -> MLP -> sigmoid."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch

from coral_cli.api import (
    POOLING_HELP, POOLINGS, backbone_from_arch, load_backbone, MLPHead, opt, pack_cross_pair, pool,
    resolve_pooling, RetrieverConfig, RewardModel, SpecialIds,
)


@dataclass
class BertArgs:
    """BERT options (`[retriever.args]`)."""

    pooling: str = opt("auto", POOLING_HELP, choices=POOLINGS)


class BertRetriever(RewardModel):
    """BERT cross-encoder: "[CLS] context [SEP] response [SEP]" -> [CLS] (or mean) -> 2-hidden-layer MLP -> sigmoid."""

    Args = BertArgs

    def __init__(self, cfg: RetrieverConfig, args: Any, special: SpecialIds, arch: dict[str, Any] | None) -> None:
        super().__init__(cfg, args, special, arch)
        self.encoder = backbone_from_arch(arch["encoder"]) if arch else load_backbone(cfg, special.vocab_size)
        self.max_length = min(cfg.max_context_tokens + cfg.max_response_tokens + 3,
                              self.encoder.config.max_position_embeddings)
        self.head = MLPHead(self.encoder.config.hidden_size, cfg.mlp_hidden, cfg.dropout)
        if args.pooling == "auto":  # resolve once, so the checkpoint records what was used
            self.args = replace(args, pooling=resolve_pooling(args.pooling, cfg.backbone))

    def arch(self) -> dict[str, Any]:
        return {"encoder": self.encoder.config.to_dict()}

    def forward(self, ctx: torch.Tensor, ctx_mask: torch.Tensor, resp: torch.Tensor, resp_mask: torch.Tensor) -> torch.Tensor:
        s = self.special
        ids, types, mask = pack_cross_pair(ctx, ctx_mask, resp, resp_mask, s.cls, s.sep, s.pad, self.max_length)
        hidden = self.encoder(input_ids=ids, token_type_ids=types, attention_mask=mask.long()).last_hidden_state
        return self.head(pool(hidden, mask, self.args.pooling))  # (B,)
