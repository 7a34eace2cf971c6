"""Seq2seq batches from id lists: encoder "[CLS] context [SEP]", decoder "[CLS] r" -> "r [SEP]"."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from coral_cli.rewards.packing import pad_ids

IGNORE = -100


@dataclass
class Seq2SeqBatch:
    """Tensors on the device; `labels` is IGNORE where there is no target token."""

    input_ids: torch.Tensor  # (B, S)
    attention_mask: torch.Tensor  # (B, S)
    decoder_input_ids: torch.Tensor  # (B, T)
    labels: torch.Tensor  # (B, T)
    tokens: int  # real (unpadded) tokens, for throughput

    def __len__(self) -> int:
        return self.input_ids.shape[0]


def encoder_inputs(contexts: Sequence[Sequence[int]], cls_id: int, sep_id: int, pad_id: int,
                   device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor]:
    """"[CLS] context [SEP]" right-padded -> (ids, mask)."""
    ids, mask = pad_ids([[cls_id, *c, sep_id] for c in contexts], pad_id, device)
    return ids, mask


def seq2seq_batch(contexts: Sequence[Sequence[int]], responses: Sequence[Sequence[int]], cls_id: int,
                  sep_id: int, pad_id: int, device: torch.device | str) -> Seq2SeqBatch:
    """Teacher-forcing batch: the decoder reads [CLS] r_1..r_T and predicts r_1..r_T [SEP]."""
    ids, mask = encoder_inputs(contexts, cls_id, sep_id, pad_id, device)
    dec, _ = pad_ids([[cls_id, *r] for r in responses], pad_id, device)
    labels, lmask = pad_ids([[*r, sep_id] for r in responses], pad_id, device)
    labels = labels.masked_fill(~lmask, IGNORE)
    tokens = sum(len(c) + 2 for c in contexts) + sum(len(r) + 1 for r in responses)
    return Seq2SeqBatch(ids, mask, dec, labels, tokens)


@dataclass
class TrainBatch:
    """A generator training batch: the ground-truth teacher-forcing tensors (CE) plus what the
    CORAL objective needs to draw candidates (contexts, positives, pool indices, a seeded rng)."""

    seq2seq: Seq2SeqBatch
    contexts: list[list[int]]
    positives: list[list[int]]
    pool_index: np.ndarray
    rng: np.random.Generator

    @property
    def enc_ids(self) -> torch.Tensor:
        return self.seq2seq.input_ids

    @property
    def enc_mask(self) -> torch.Tensor:
        return self.seq2seq.attention_mask

    @property
    def tokens(self) -> int:
        return self.seq2seq.tokens
