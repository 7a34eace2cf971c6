"""The reward-model contract that training, evaluation and chat all use.

A plugin subclasses `RewardModel` and implements `forward(ctx, ctx_mask, resp, resp_mask) ->
logits (B,)` on right-padded id tensors; the base class provides batched scoring
f_R(c, r) = sigmoid(logit) in (0, 1) from tensors, id lists or text (paper §3.1: R3 = f_R - m).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from coral_cli.config.schema import RetrieverConfig
from coral_cli.data import encode
from coral_cli.device import autocast_dtype
from coral_cli.rewards.packing import pad_ids, trim_on_cpu
from coral_cli.training.batching import token_budget_batches


@dataclasses.dataclass
class NoArgs:
    """This plugin takes no extra options."""


@dataclasses.dataclass(frozen=True)
class SpecialIds:
    cls: int
    sep: int
    pad: int
    vocab_size: int

    @classmethod
    def of(cls, tok: PreTrainedTokenizerBase) -> SpecialIds:
        return cls(tok.cls_token_id, tok.sep_token_id, tok.pad_token_id, len(tok))


class RewardModel(nn.Module):
    """f_R(c, r): a response retriever scoring how well r continues c."""

    Args: ClassVar[type] = NoArgs  # the plugin's `[retriever.args]` dataclass
    bf16: bool = True  # bf16 autocast when scoring on CUDA; the CORAL trainer sets train.bf16

    def __init__(self, cfg: RetrieverConfig, args: Any, special: SpecialIds, arch: dict[str, Any] | None) -> None:
        """`arch` is None for a fresh model (load pretrained weights), else what `arch()` saved."""
        super().__init__()
        self.cfg, self.args, self.special = cfg, args, special
        self.tokenizer: PreTrainedTokenizerBase | None = None  # set by build/load

    # ---- what a plugin implements -------------------------------------------------------
    def forward(self, ctx: torch.Tensor, ctx_mask: torch.Tensor, resp: torch.Tensor, resp_mask: torch.Tensor) -> torch.Tensor:
        """(B, Tc), (B, Tc), (B, Tr), (B, Tr) -> (B,) logits."""
        raise NotImplementedError

    def arch(self) -> dict[str, Any]:
        """What rebuilds the architecture without pretrained downloads (saved in config.json)."""
        return {}

    def training_outputs(self, ctx: torch.Tensor, ctx_mask: torch.Tensor, resp: torch.Tensor,
                         resp_mask: torch.Tensor, n_pos: int) -> tuple[torch.Tensor, torch.Tensor | None, dict[str, torch.Tensor]]:
        """(logits (B,), auxiliary loss or None, stats); the first `n_pos` rows are positives."""
        return self(ctx, ctx_mask, resp, resp_mask), None, {}

    # ---- scoring -----------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @torch.inference_mode()
    def score_tensors(self, ctx: torch.Tensor, ctx_mask: torch.Tensor, resp: torch.Tensor, resp_mask: torch.Tensor) -> torch.Tensor:
        """f_R on padded tensors already on the device -> (B,) float32 in (0, 1); no host sync."""
        dtype = autocast_dtype(self.device, self.bf16)
        with torch.autocast(self.device.type, dtype=dtype, enabled=dtype is not None):
            return torch.sigmoid(self(ctx, ctx_mask, resp, resp_mask).float())

    def score_ids(self, context_ids: Sequence[Sequence[int]], response_ids: Sequence[Sequence[int]]) -> torch.Tensor:
        """f_R for id lists (contexts already joined with [SEP]) -> (B,) on CPU, input order.

        Pairs are truncated to the retriever's budgets and scored in length-sorted token-budget
        batches.
        """
        if len(context_ids) != len(response_ids):
            raise ValueError("contexts and responses differ in number")
        cmax, rmax = self.cfg.max_context_tokens, self.cfg.max_response_tokens
        ctx = [list(c[-cmax:]) for c in context_ids]
        resp = [list(r[:rmax]) for r in response_ids]
        lengths = np.array([len(c) + len(r) + 3 for c, r in zip(ctx, resp)])
        out = torch.empty(len(ctx), dtype=torch.float32)
        was_training = self.training
        self.eval()
        for idx in token_budget_batches(lengths, self.cfg.score_batch_tokens, 4096, seed=None):
            c, cm = pad_ids([ctx[i] for i in idx], self.special.pad, self.device)
            r, rm = pad_ids([resp[i] for i in idx], self.special.pad, self.device)
            out[torch.as_tensor(idx)] = self.score_tensors(c, cm, r, rm).cpu()
        self.train(was_training)
        return out

    def score(self, contexts: Sequence[Sequence[str]], responses: Sequence[str]) -> torch.Tensor:
        """f_R(c, r) for texts: each context a list of utterances -> (B,) in (0, 1), input order."""
        if self.tokenizer is None:
            raise RuntimeError("reward model has no tokenizer attached")
        ids = encode.token_ids(self.tokenizer, list(responses))
        ctx = encode.context_ids(self.tokenizer, [list(c) for c in contexts], self.cfg.max_context_tokens)
        return self.score_ids(ctx, [ids[r] for r in responses])

    def score_samples(self, context_ids: Sequence[Sequence[int]], resp: torch.Tensor, resp_mask: torch.Tensor,
                      rows: torch.Tensor | None = None) -> torch.Tensor:
        """f_R of device-side responses (N, L) against id-list contexts (row `rows[i]` for response
        i), each cut to this retriever's budgets -> (N,) on the device."""
        c, cm = pad_ids([list(x[-self.cfg.max_context_tokens :]) for x in context_ids], self.special.pad, resp.device)
        if rows is not None:
            c, cm = c[rows], cm[rows]
        resp, resp_mask = trim_on_cpu(resp[:, : self.cfg.max_response_tokens], resp_mask[:, : self.cfg.max_response_tokens])
        return self.score_tensors(c, cm, resp, resp_mask)
