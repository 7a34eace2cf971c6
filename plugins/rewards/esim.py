"""ESIM retriever (Chen & Wang 2019; paper §4.1): BiLSTM encoding, cross-attention, BiLSTM
composition, mean+max pooling, MLP, sigmoid. Token embeddings start from the pretrained
backbone's embedding matrix (the paper used Blenderbot's)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from coral_cli.api import load_backbone, MLPHead, opt, RetrieverConfig, RewardModel, SpecialIds


@dataclass
class EsimArgs:
    """ESIM options (`[retriever.args]`)."""

    hidden: int = opt(300, "LSTM hidden size per direction", min=4)
    freeze_embeddings: bool = opt(False, "keep the initial token embeddings fixed")


class EsimRetriever(RewardModel):
    """ESIM: BiLSTM encode, cross-attention, BiLSTM compose, pooling, MLP, sigmoid."""

    Args = EsimArgs

    def __init__(self, cfg: RetrieverConfig, args: EsimArgs, special: SpecialIds, arch: dict[str, Any] | None) -> None:
        super().__init__(cfg, args, special, arch)
        if arch:
            self.embed = nn.Embedding(arch["vocab_size"], arch["embed_dim"], padding_idx=special.pad)
        else:
            source = load_backbone(cfg, special.vocab_size).get_input_embeddings().weight.detach()
            self.embed = nn.Embedding.from_pretrained(source.clone(), freeze=False, padding_idx=special.pad)
        self.embed.weight.requires_grad_(not args.freeze_embeddings)
        d, h = self.embed.embedding_dim, args.hidden
        self.encode = nn.LSTM(d, h, batch_first=True, bidirectional=True)
        self.project = nn.Sequential(nn.Linear(8 * h, h), nn.ReLU())
        self.compose = nn.LSTM(h, h, batch_first=True, bidirectional=True)
        self.head = MLPHead(8 * h, cfg.mlp_hidden, cfg.dropout)

    def arch(self) -> dict[str, Any]:
        return {"vocab_size": self.embed.num_embeddings, "embed_dim": self.embed.embedding_dim}

    def forward(self, ctx: torch.Tensor, ctx_mask: torch.Tensor, resp: torch.Tensor, resp_mask: torch.Tensor) -> torch.Tensor:
        a = self._lstm(self.encode, self.embed(ctx), ctx_mask)  # (B, Tc, 2h)
        b = self._lstm(self.encode, self.embed(resp), resp_mask)  # (B, Tr, 2h)
        e = torch.einsum("bid,bjd->bij", a, b)  # (B, Tc, Tr)
        neg = torch.finfo(e.dtype).min
        a_hat = torch.softmax(e.masked_fill(~resp_mask[:, None, :], neg), dim=2) @ b  # (B, Tc, 2h)
        b_hat = torch.softmax(e.masked_fill(~ctx_mask[:, :, None], neg), dim=1).transpose(1, 2) @ a
        va = self._lstm(self.compose, self.project(torch.cat([a, a_hat, a - a_hat, a * a_hat], -1)), ctx_mask)
        vb = self._lstm(self.compose, self.project(torch.cat([b, b_hat, b - b_hat, b * b_hat], -1)), resp_mask)
        return self.head(torch.cat([*_pool(va, ctx_mask), *_pool(vb, resp_mask)], -1))  # (B,)

    @staticmethod
    def _lstm(lstm: nn.LSTM, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Run over the true lengths only (packed), so padding never leaks into the backward pass."""
        lengths = mask.sum(1).clamp(min=1).cpu()
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        out, _ = lstm(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
        return out


def _pool(x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Masked mean and max over time: (B, T, D) -> (B, D), (B, D)."""
    m = mask[..., None].to(x.dtype)
    mean = (x * m).sum(1) / m.sum(1).clamp(min=1)
    mx = x.masked_fill(~mask[..., None], torch.finfo(x.dtype).min).amax(1)
    return mean, mx
