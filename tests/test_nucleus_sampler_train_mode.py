"""The on-policy nucleus sampler plugin samples in eval mode and gives the model back in the mode
it found it, even when sampling raises."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from coral_cli.samplers.base import SampleRequest, SamplerEnv
from coral_plugins.samplers.nucleus import NucleusSampler


class FailingPolicy:
    """A stand-in generator backend whose sampling fails (as out-of-memory would)."""

    def __init__(self) -> None:
        self.mode_seen: bool | None = None

    def sample(self, model, ids, mask, decoding, k, bf16):
        self.mode_seen = model.training
        raise RuntimeError("CUDA out of memory")


def test_a_raising_sample_restores_train_mode():
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Dropout(0.1)).train()
    policy = FailingPolicy()
    sampler = NucleusSampler(SamplerEnv(pool_ids=[], policy=policy, device=torch.device("cpu")))
    request = SampleRequest(contexts=[[1]], positives=[[2]], pool_index=np.array([-1]),
                            prompt_ids=torch.ones(1, 1, dtype=torch.long),
                            prompt_mask=torch.ones(1, 1, dtype=torch.bool), rng=np.random.default_rng(0), model=model)
    with pytest.raises(RuntimeError, match="out of memory"):
        sampler.sample(request)
    assert policy.mode_seen is False  # sampled without dropout
    assert model.training and all(m.training for m in model.modules())  # and given back in train mode
