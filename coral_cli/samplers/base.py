"""The sampler contract: for some rows of a batch, return one response candidate per row
(or k, for on-policy samples) as padded token ids on the device.

Built-ins are plugins (`plugins/samplers/`): `positive` (the ground truth r+), `random`
(RandomNegative: a uniform training utterance, never the true response) and `nucleus`
(on-policy: a nucleus sample of the generator itself). Adding one is a small class.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch

from coral_cli.rewards.packing import pad_ids


@dataclass
class Candidates:
    """(N, L) response ids with a mask over the real tokens; `ended` (N,) says a [SEP] target
    follows (true for dataset utterances, for samples only when the model produced [SEP])."""

    ids: torch.Tensor
    mask: torch.Tensor
    ended: torch.Tensor

    @classmethod
    def from_lists(cls, seqs: Sequence[Sequence[int]], pad_id: int, device: torch.device) -> Candidates:
        ids, mask = pad_ids(seqs, pad_id, device)
        return cls(ids, mask, torch.ones(len(seqs), dtype=torch.bool, device=device))

    def __len__(self) -> int:
        return self.ids.shape[0]


@dataclass
class SamplerEnv:
    """What samplers may use: the training utterance pool, the generator, decoding settings."""

    pool_ids: list[list[int]]  # tokenized distinct training utterances
    tokenizer: Any
    device: torch.device
    top_p: float = 0.9
    temperature: float = 1.0
    max_new_tokens: int = 40
    bf16: bool = True  # bf16 autocast for on-policy sampling on CUDA (train.bf16)


@dataclass
class SampleRequest:
    """The rows of a batch that need a candidate from one sampler."""

    contexts: list[list[int]]  # their context ids
    positives: list[list[int]]  # their ground-truth responses
    pool_index: np.ndarray  # each ground truth's index in the pool (-1 = absent)
    enc_ids: torch.Tensor  # (n, S) encoder inputs "[CLS] c [SEP]" on the device
    enc_mask: torch.Tensor  # (n, S)
    rng: np.random.Generator  # seeded per batch: a resumed run draws the same
    model: Any  # the generator being trained (on-policy samplers)
    k: int = 1  # candidates per row (contiguous per row)


class Sampler(Protocol):
    """Built with a `SamplerEnv`; `sample` returns len(rows) * k candidates, row-major."""

    on_policy: bool

    def __init__(self, env: SamplerEnv) -> None: ...

    def sample(self, request: SampleRequest) -> Candidates: ...
