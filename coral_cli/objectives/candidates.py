"""CORAL candidates (paper §3.3, Algorithm 1): per row of a batch the ground truth r+ with
probability p+, else a negative r- from a sampler plugin; each sampler's own `on_policy` flag
says whether its candidates come from the model (mix-policy) or not (off-policy)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from coral_cli.config.schema import ObjectiveConfig
from coral_cli.errors import ConfigError
from coral_cli.generator.core.batch import TrainBatch
from coral_cli.rewards.packing import trim_on_cpu
from coral_cli.samplers.base import Candidates, SampleRequest


@dataclass
class CandidateSet:
    """The candidates of one batch: `cand` (N, L) with, per candidate, the batch row it answers,
    its kind (0 ground truth, 1 on-policy sample, 2 off-policy negative) and its weight in the row."""

    cand: Candidates
    row: torch.Tensor  # (N,)
    kind: torch.Tensor  # (N,)
    weight: torch.Tensor  # (N,) 1, or 1/k for each of the k samples of one row
    groups: list[tuple[int, int, int]]  # (start, stop, k) blocks of k samples per row, for RLOO
    row_host: np.ndarray | None = None  # `row` and `kind` on the host: selections without a read-back
    kind_host: np.ndarray | None = None


def choose_sources(rng: np.random.Generator, n: int, cfg: ObjectiveConfig) -> np.ndarray:
    """Per row: 0 = positive (prob p+), 1 = on-policy negative, 2 = random negative."""
    positive = rng.random(n) < cfg.p_plus
    if cfg.policy == "off":
        negative = np.full(n, 2)
    else:
        negative = np.where(rng.random(n) < cfg.random_ratio, 2, 1)
    return np.where(positive, 0, negative)


def check_samplers(cfg: ObjectiveConfig, samplers: dict[str, Any]) -> None:
    """Each sampler's own `on_policy` flag must fit the slot it fills."""
    if cfg.policy == "mix" and cfg.random_ratio < 1 and not getattr(samplers[cfg.on_policy_sampler], "on_policy", False):
        raise ConfigError(f"objective.on_policy_sampler = '{cfg.on_policy_sampler}' is not an on-policy sampler",
                          "name an on-policy sampler (e.g. nucleus), or set objective.policy = \"off\"")
    if getattr(samplers[cfg.negative_sampler], "on_policy", False):
        raise ConfigError(f"objective.negative_sampler = '{cfg.negative_sampler}' samples on-policy",
                          "name an off-policy sampler (e.g. random); on-policy negatives belong in on_policy_sampler")


def draw_candidates(cfg: ObjectiveConfig, samplers: dict[str, Any], model: Any, batch: TrainBatch,
                    pad_id: int) -> CandidateSet:
    """One candidate per row (k per row from an on-policy sampler under RLOO), grouped by sampler."""
    src = choose_sources(batch.rng, len(batch.contexts), cfg)
    parts, rows, kinds, weights, groups, start = [], [], [], [], [], 0
    for code, name in ((0, "positive"), (1, cfg.on_policy_sampler), (2, cfg.negative_sampler)):
        idx = np.flatnonzero(src == code)
        if not len(idx):
            continue
        sampler = samplers[name]
        on_policy = code != 0 and bool(getattr(sampler, "on_policy", False))
        k = cfg.rloo_k if (on_policy and cfg.baseline == "rloo") else 1
        request = SampleRequest([batch.contexts[i] for i in idx], [batch.positives[i] for i in idx],
                                batch.pool_index[idx], batch.prompt_ids[idx], batch.prompt_mask[idx], batch.rng, model, k)
        parts.append(sampler.sample(request))
        rows.append(np.repeat(idx, k))
        kinds.append(np.full(len(idx) * k, 0 if code == 0 else (1 if on_policy else 2)))
        weights.append(np.full(len(idx) * k, 1.0 / k))
        if k > 1:
            groups.append((start, start + len(idx) * k, k))
        start += len(idx) * k
    device = batch.prompt_ids.device
    row, kind = np.concatenate(rows), np.concatenate(kinds)
    return CandidateSet(_concat(parts, pad_id), torch.as_tensor(row, device=device), torch.as_tensor(kind, device=device),
                        torch.as_tensor(np.concatenate(weights), dtype=torch.float32, device=device), groups, row, kind)


def _concat(parts: list[Candidates], pad_id: int) -> Candidates:
    """One padded set; on a CPU cut after its longest candidate (samples come as wide as the
    decoding budget, and every padded column is decoder work in the teacher-forced pass)."""
    width = max(p.ids.shape[1] for p in parts)

    def widen(t: torch.Tensor, fill: Any) -> torch.Tensor:
        return torch.nn.functional.pad(t, (0, width - t.shape[1]), value=fill)

    ids, mask = trim_on_cpu(torch.cat([widen(p.ids, pad_id) for p in parts]),
                            torch.cat([widen(p.mask, False) for p in parts]))
    return Candidates(ids, mask, torch.cat([p.ended for p in parts]))
