"""BERT cross-encoder retriever (paper §4.1): "[CLS] c [SEP] r [SEP]" -> [CLS] -> MLP -> sigmoid."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch

from coral_cli.config.schema import RetrieverConfig
from coral_cli.rewards.backbone import backbone_from_arch, load_backbone
from coral_cli.config.fields import opt
from coral_cli.rewards.base import RewardModel, SpecialIds
from coral_cli.rewards.heads import MLPHead
from coral_cli.rewards.packing import pack_cross_pair


@dataclass
class BertArgs:
    """BERT options (`[retriever.args]`)."""

    pooling: str = opt("auto", "cls: the [CLS] vector (paper); mean: mean over tokens (how sentence "
                       "embedders such as the bundled all-MiniLM-L6-v2 were trained, whose [CLS] is nearly "
                       "constant); auto: mean for the bundled backbone, else cls", choices=("auto", "cls", "mean"))


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
            self.args = replace(args, pooling="mean" if cfg.backbone == "bundled" else "cls")

    def arch(self) -> dict[str, Any]:
        return {"encoder": self.encoder.config.to_dict()}

    def forward(self, ctx: torch.Tensor, ctx_mask: torch.Tensor, resp: torch.Tensor, resp_mask: torch.Tensor) -> torch.Tensor:
        s = self.special
        ids, types, mask = pack_cross_pair(ctx, ctx_mask, resp, resp_mask, s.cls, s.sep, s.pad, self.max_length)
        hidden = self.encoder(input_ids=ids, token_type_ids=types, attention_mask=mask.long()).last_hidden_state
        if self.args.pooling == "mean":
            m = mask[..., None].to(hidden.dtype)
            return self.head((hidden * m).sum(1) / m.sum(1).clamp(min=1))  # (B,)
        return self.head(hidden[:, 0])  # (B,)
