"""The tensors every generator backend shares: responses as padded ids on the device, and
teacher-forcing batches whose labels cover the response tokens only (plus the end token)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from coral_cli.rewards.packing import pad_ids

IGNORE = -100


@dataclass
class Responses:
    """(N, L) response ids with a mask over the real tokens; `ended` (N,) says the end token
    follows (true for dataset utterances, for samples only when the model produced it)."""

    ids: torch.Tensor
    mask: torch.Tensor
    ended: torch.Tensor

    @classmethod
    def from_lists(cls, seqs: Sequence[Sequence[int]], pad_id: int, device: torch.device | str,
                   multiple: int = 1) -> Responses:
        ids, mask = pad_ids(seqs, pad_id, device, multiple)
        return cls(ids, mask, torch.ones(len(seqs), dtype=torch.bool, device=ids.device))

    def label_count(self) -> int:
        """The tokens teacher forcing scores: each response's tokens, and its end token where it
        `ended` (the `Policy.teacher` contract). One read-back, where the teacher batch would
        otherwise learn its scored rows from a boolean index: two syncs on CUDA, and a graph break
        under torch.compile."""
        return int(self.mask.sum() + self.ended.sum())

    def lists(self) -> list[list[int]]:
        """The real tokens of each row (leaves the device once)."""
        return [row[: int(n)] for row, n in zip(self.ids.tolist(), self.mask.sum(1).tolist())]

    def __len__(self) -> int:
        return self.ids.shape[0]


@dataclass
class TeacherBatch:
    """Teacher-forcing tensors on the device. Encoder-decoders read the prompt in the encoder and
    the response in the decoder (`decoder_input_ids`); decoder-only models read prompt + response
    in one sequence (`decoder_input_ids` None). `labels` line up with the logits the backend
    returns and are IGNORE everywhere but the response tokens and the end token."""

    input_ids: torch.Tensor  # (B, S)
    attention_mask: torch.Tensor  # (B, S)
    decoder_input_ids: torch.Tensor | None  # (B, T), or None for decoder-only models
    labels: torch.Tensor  # (B, T): T = S for decoder-only models
    tokens: int  # real (unpadded) tokens, for throughput
    scored: int | None = None  # label tokens, where the host knows the count without reading the device

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    def scored_index(self) -> torch.Tensor | None:
        """(M,) flat row-major positions of the label tokens when `scored` is known, else None.
        `torch.nonzero_static` with a size known on the host needs no host-device sync and keeps
        shapes static for torch.compile, where a boolean index (`x[labels != IGNORE]`) syncs on
        CUDA to learn M and breaks the compiled graph."""
        if self.scored is None:
            return None
        return torch.nonzero_static(self.labels.reshape(-1).ne(IGNORE), size=self.scored).squeeze(1)


def scored_rows(x: torch.Tensor, where: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
    """(B, T, ...) -> (M, ...): the rows at the True positions of `where` (B, T), row-major; by
    `index` (M,), their flat positions (`TeacherBatch.scored_index`), when known: the same rows
    without the boolean index's host-device sync."""
    if index is None:
        return x[where]
    return x.reshape(-1, *x.shape[2:]).index_select(0, index)


@dataclass
class TrainBatch:
    """A generator training batch: the ground truth's teacher-forcing tensors (CE) plus what the
    CORAL step needs to draw and score candidates (prompts, contexts, positives, pool indices,
    a seeded rng)."""

    teacher: TeacherBatch
    prompt_ids: torch.Tensor  # (B, P) the backend's prompt tensors (encoder input / left-padded prompt)
    prompt_mask: torch.Tensor  # (B, P)
    contexts: list[list[int]]  # each row's context ids in the generator's format
    positives: list[list[int]]  # each row's ground-truth response ids
    pool_index: np.ndarray  # (B,) the ground truth's index in the pool, -1 if absent
    rng: np.random.Generator
    texts: list[list[str]] | None = None  # each row's context utterances (rewards with another tokenizer)
    examples: np.ndarray | None = None  # (B,) each row's index in the training pairs (the r+ reward cache)

    @property
    def tokens(self) -> int:
        return self.teacher.tokens


def pad_left(seqs: Sequence[Sequence[int]], pad_id: int, device: torch.device | str,
             multiple: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-pad lists of ids -> (ids (B, T), mask (B, T)): prompts of a decoder-only model end at
    the same position, so generation continues all rows from the last column."""
    ids, mask = pad_ids([list(reversed(s)) for s in seqs], pad_id, device, multiple)
    return ids.flip(1), mask.flip(1)
