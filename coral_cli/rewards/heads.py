"""The scoring head the paper puts on every retriever (an MLP with two hidden layers -> one logit)
and how an encoder's token vectors are pooled into the one vector it reads."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class MLPHead(nn.Module):
    """in_dim -> hidden[0] -> hidden[1] -> 1 (GELU, dropout); sigmoid is applied by the caller."""

    def __init__(self, in_dim: int, hidden: Sequence[int], dropout: float) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for width in hidden:
            layers += [nn.Dropout(dropout), nn.Linear(in_dim, width), nn.GELU()]
            in_dim = width
        layers += [nn.Dropout(dropout), nn.Linear(in_dim, 1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_dim) -> (B,) logits."""
        return self.net(x).squeeze(-1)


POOLING_HELP = ("cls: the [CLS] vector (paper); mean: mean over tokens (how sentence embedders such as the "
                "bundled all-MiniLM-L6-v2 were trained, whose [CLS] is nearly constant); auto: mean for the "
                "bundled backbone, else cls")
POOLINGS = ("auto", "cls", "mean")


def resolve_pooling(pooling: str, backbone: str) -> str:
    """'auto' -> 'mean' for the bundled sentence embedder, else 'cls' (resolved once, when a
    model is first built, so its checkpoint records what it used)."""
    if pooling != "auto":
        return pooling
    return "mean" if backbone == "bundled" else "cls"


def pool(hidden: torch.Tensor, mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """(B, T, D) token vectors + (B, T) mask -> (B, D) by [CLS] or by the mean over real tokens."""
    if pooling == "mean":
        m = mask[..., None].to(hidden.dtype)
        return (hidden * m).sum(1) / m.sum(1).clamp(min=1)
    return hidden[:, 0]
