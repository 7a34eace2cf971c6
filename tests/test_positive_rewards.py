"""The r+ reward cache (objectives/positive_rewards.py): f_R(c, r+) of a training pair is scored once,
later epochs read it; the training is the one without the cache; a resume carries it."""

import numpy as np
import pytest
import torch

from coral_cli.config import resolve
from coral_cli.objectives.positive_rewards import PositiveRewardCache
from coral_cli.runs import run_dir
from coral_cli.samplers.base import Candidates
from coral_cli.tasks.train import generator_trainer
from tests.fixed_rewards import ResponseTokenReward, make
from tests.tiny_generator import write_recipe


def test_known_positives_come_from_the_cache_and_the_rest_from_the_reward():
    cache = PositiveRewardCache(pairs=10, device=torch.device("cpu"))
    cand = Candidates.from_lists([[1], [2], [3], [4]], 0, "cpu")
    rows, kinds = np.array([0, 1, 2, 2]), np.array([0, 1, 0, 2])  # r+, a sample, r+, a random negative
    examples = np.array([7, 3, 5])  # the batch rows' training pairs
    asked = []

    def score(index):  # a reward that returns 10 x the candidate's token
        asked.append(index.tolist())
        return cand.ids[index, 0].float() * 10

    first = cache.rewards(examples, rows, kinds, cand, score)
    assert asked == [[0, 1, 2, 3]] and first.tolist() == [10, 20, 30, 40]
    assert cache.known[[7, 5]].all() and cache.known.sum() == 2  # the r+ of pairs 7 and 5 only
    again = cache.rewards(examples, rows, kinds, cand, score)
    assert asked[-1] == [1, 3] and again.tolist() == [10, 20, 30, 40]  # the r+ were not scored again
    restored = PositiveRewardCache(10, torch.device("cpu"))
    restored.load(cache.tensors())
    assert np.array_equal(restored.known, cache.known) and torch.equal(restored.values, cache.values)
    other = PositiveRewardCache(11, torch.device("cpu"))  # another data set: start empty
    other.load(cache.tensors())
    assert not other.known.any()


OVERRIDES = {"objective.loss": "coral", "objective.policy": "mix", "objective.p_plus": 0.9,
             "objective.sample_max_new_tokens": 4, "train.max_epochs": 2, "train.max_batch_size": 4,
             "train.eval_every": 0, "train.log_every": 1, "generator.dropout": 0.0, "data.max_pairs": 24,
             "runtime.device": "cpu"}


def _train(tmp_path, name, cached: bool):
    """Two epochs of CORAL with a fixed reward model; the rows each reward pass scored, per epoch."""
    cfg = resolve(write_recipe(tmp_path), OVERRIDES)
    trainer = generator_trainer(cfg, run_dir(tmp_path, name), [], reward=lambda c, r: [0.5] * len(r))
    reward = make(ResponseTokenReward, "test-cache", trainer.task.policy.tokenizer)
    trainer.task.objective.reward = trainer.task.reward = reward
    trainer.task.objective.positive_rewards = PositiveRewardCache(len(trainer.task.ctx), torch.device("cpu")) \
        if cached else None
    scored, stepping, loss = {0: 0, 1: 0}, [False], trainer.task.loss

    def step_loss(batch):  # count the training steps' reward rows, not validation's
        stepping[0] = True
        try:
            return loss(batch)
        finally:
            stepping[0] = False

    def count(module, args):
        if stepping[0]:
            scored[trainer.state.epoch] += len(args[0])

    trainer.task.loss = step_loss
    reward.register_forward_pre_hook(count)
    trainer.fit()
    weights = {k: v.clone() for k, v in trainer.task.model.state_dict().items()}
    return scored, weights, trainer


@pytest.mark.slow
def test_a_cached_run_trains_exactly_as_an_uncached_one_with_fewer_reward_rows(tmp_path):
    plain, plain_weights, _ = _train(tmp_path, "plain", cached=False)
    cached, cached_weights, trainer = _train(tmp_path, "cached", cached=True)
    for key in plain_weights:  # the same f_R, so the same updates
        torch.testing.assert_close(cached_weights[key], plain_weights[key], rtol=0, atol=0, msg=key)
    assert cached[0] == plain[0] and plain[1] == plain[0]  # the first epoch scores everything
    assert cached[1] < 0.5 * plain[1]  # the second: most r+ (p+ 0.9) from the cache
    cache = trainer.task.objective.positive_rewards
    assert 0.8 < cache.known.mean() <= 1  # the pairs whose r+ was drawn at least once
    state = trainer.task.extra_state()  # and the checkpoint carries it for a resume
    assert torch.equal(state["objective.positive_known"], torch.from_numpy(cache.known))
