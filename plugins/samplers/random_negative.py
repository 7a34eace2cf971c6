"""RandomNegative sampling (RNS, paper §3.3): a uniformly drawn training utterance."""

from __future__ import annotations

from coral_cli.api import Candidates, sample_negatives, SamplerEnv, SampleRequest


class RandomSampler:
    """RandomNegative: a uniform training-pool utterance, never the true response (off-policy)."""

    on_policy = False

    def __init__(self, env: SamplerEnv) -> None:
        self.env = env

    def sample(self, request: SampleRequest) -> Candidates:
        pool = self.env.pool_ids
        picks = sample_negatives(request.rng, len(pool), request.pool_index, request.k)  # (n, k)
        rows = []
        for i, row in enumerate(picks):
            for j in row:
                while pool[j] == request.positives[i]:  # same ids as the truth, e.g. a duplicate
                    j = int(request.rng.integers(len(pool)))
                rows.append(pool[j])
        return Candidates.from_lists(rows, self.env.policy.pad_id, self.env.device)
