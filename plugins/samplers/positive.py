"""The ground-truth response r+ (off-policy positive, paper eq. 3)."""

from __future__ import annotations

from coral_cli.api import Candidates, SamplerEnv, SampleRequest


class PositiveSampler:
    """The ground-truth response r+ of the context (off-policy)."""

    on_policy = False

    def __init__(self, env: SamplerEnv) -> None:
        self.env = env

    def sample(self, request: SampleRequest) -> Candidates:
        rows = [r for r in request.positives for _ in range(request.k)]
        return Candidates.from_lists(rows, self.env.policy.pad_id, self.env.device)
