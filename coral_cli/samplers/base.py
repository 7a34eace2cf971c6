"""The sampler contract: for some rows of a batch, return one response candidate per row
(or k, for on-policy samples) as padded token ids on the device.

Built-ins are plugins (`plugins/samplers/`): `positive` (the ground truth r+), `random`
(RandomNegative: a uniform training utterance, never the true response) and `nucleus`
(on-policy: a nucleus sample of the generator itself). Adding one is a small class.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch

from coral_cli.generator.core.batch import Responses

Candidates = Responses  # a candidate set is a batch of responses on the device


@dataclass
class SamplerEnv:
    """What samplers may use: the training utterance pool, the generator, decoding settings."""

    pool_ids: list[list[int]]  # distinct training utterances, in the generator's tokens
    policy: Any  # the generator backend (coral_cli.generator.core.policy.Policy): its pad id, its sampling
    device: torch.device
    top_p: float = 0.9
    temperature: float = 1.0
    max_new_tokens: int = 40
    bf16: bool = True  # bf16 autocast for on-policy sampling on CUDA (train.bf16)
    kv_cache: str = "dynamic"  # generate.kv_cache: how decoding runs, never what it samples


@dataclass
class SampleRequest:
    """The rows of a batch that need a candidate from one sampler."""

    contexts: list[list[int]]  # their context ids
    positives: list[list[int]]  # their ground-truth responses
    pool_index: np.ndarray  # each ground truth's index in the pool (-1 = absent)
    prompt_ids: torch.Tensor  # (n, P) the generator's prompt tensors on the device
    prompt_mask: torch.Tensor  # (n, P)
    rng: np.random.Generator  # seeded per batch: a resumed run draws the same
    model: Any  # the generator being trained (on-policy samplers)
    k: int = 1  # candidates per row (contiguous per row)


class Sampler(Protocol):
    """Built with a `SamplerEnv`; `sample` returns len(rows) * k candidates, row-major."""

    on_policy: bool

    def __init__(self, env: SamplerEnv) -> None: ...

    def sample(self, request: SampleRequest) -> Candidates: ...
