"""Loss checks every pretrained-LM policy (causal, seq2seq) must pass against hand-computed values:
the same two dialogue pairs, CE = the mean hand NLL, CORAL = mean of -(f - m) * sum log P.

`hand_nll(policy, ctx, resp)` is the backend's own unpadded, one-example-at-a-time -log P of every
response token and the end token."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch

from coral_cli.config import resolve
from coral_cli.generator.core.batch import TrainBatch
from coral_cli.objectives.cross_entropy import CrossEntropy
from coral_cli.tasks.train import build_objective
from coral_cli.tokenizer import load_tokenizer
from tests.fixed_rewards import ResponseTokenReward, make

CPU = torch.device("cpu")
CONTEXTS = [["hello , how are you ?", "fine , thanks ."], ["what time is it ?"]]
RESPONSES = ["and you ?", "it is six ."]
HandNll = Callable[[object, list, list], list[list[float]]]


def pairs(policy) -> tuple[list, list]:
    return policy.context_ids(CONTEXTS, 64), policy.response_ids(RESPONSES, 16)


def assert_ce_equals_hand_nll(policy, hand_nll: HandNll) -> None:
    ctx, resp = pairs(policy)
    batch, ids, mask = policy.ground_truth(ctx, resp, CPU)
    loss, _ = CrossEntropy(policy)(policy.model, TrainBatch(batch, ids, mask, ctx, resp, np.zeros(2), np.random.default_rng()))
    nll = [x for row in hand_nll(policy, ctx, resp) for x in row]
    assert loss.item() == pytest.approx(sum(nll) / len(nll), rel=1e-4)


def assert_coral_equals_hand(policy, hand_nll: HandNll) -> None:
    """Ground truths only (p+ = 1), m = 0.3, a reward that reads text through another tokenizer."""
    cfg = resolve(None, {"objective.p_plus": 1.0, "objective.margin": 0.3, "objective.policy": "off"})
    reward = make(ResponseTokenReward, "test-question", load_tokenizer("bundled"))
    objective = build_objective(cfg, reward, policy, [[5, 6]], CPU)
    ctx, resp = pairs(policy)
    teacher, ids, mask = policy.ground_truth(ctx, resp, CPU)
    batch = TrainBatch(teacher, ids, mask, ctx, resp, np.array([-1, -1]), np.random.default_rng(0), CONTEXTS)
    loss, _ = objective(policy.model, batch)
    f = torch.tensor([0.9, 0.1])  # only the first reply asks something
    logp = torch.tensor([-sum(row) for row in hand_nll(policy, ctx, resp)])
    assert loss.item() == pytest.approx((-(f - 0.3) * logp).mean().item(), rel=1e-4)
