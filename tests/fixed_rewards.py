"""Reward models with known, fixed behaviour for testing the CORAL objective.

They are real `RewardModel` subclasses (registered by name like any plugin); their f_R is a fixed
function of the response, so a test can compute the expected loss or training effect by hand.
"""

from __future__ import annotations

from typing import Any

import torch

from coral_cli.config import resolve
from coral_cli.registry import REWARDS
from coral_cli.rewards.base import NoArgs, RewardModel, SpecialIds


class ResponseTokenReward(RewardModel):
    """f_R = high if the response contains `token`, else low; a NaN if `nan` (tests)."""

    Args = NoArgs
    token, high, low, nan = 1029, 0.9, 0.1, False  # 1029 = '?'

    def __init__(self, cfg: Any, args: Any, special: SpecialIds, arch: Any) -> None:
        super().__init__(cfg, args, special, arch)
        self.anchor = torch.nn.Parameter(torch.zeros(1))  # gives the model a device

    def forward(self, ctx, ctx_mask, resp, resp_mask):
        has = (resp.eq(self.token) & resp_mask).any(1)
        p = torch.where(has, torch.tensor(self.high), torch.tensor(self.low)).to(resp.device)
        logit = torch.log(p) - torch.log1p(-p) + 0 * self.anchor
        return torch.full_like(logit, float("nan")) if self.nan else logit


class ConstantReward(ResponseTokenReward):
    """f_R = 1 exactly for every pair (sigmoid(+inf))."""

    def forward(self, ctx, ctx_mask, resp, resp_mask):
        return torch.full((resp.shape[0],), float("inf"), device=resp.device) + 0 * self.anchor


def make(cls: type, name: str, tok: Any) -> RewardModel:
    if name not in REWARDS.names():
        REWARDS.register(name, cls)
    cfg = resolve(None, {"retriever.model": name}).retriever
    model = cls(cfg, NoArgs(), SpecialIds.of(tok), {})
    model.tokenizer = tok
    return model.eval().requires_grad_(False)


class NanReward(ResponseTokenReward):
    """A broken reward: f_R is NaN."""

    nan = True
