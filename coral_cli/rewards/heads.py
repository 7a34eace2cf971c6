"""The scoring head the paper puts on every retriever: an MLP with two hidden layers -> one logit."""

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
