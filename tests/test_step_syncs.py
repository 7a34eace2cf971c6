"""No host-device sync inside a training step: the stats stay on the device until the log
interval (counted with a TorchFunctionMode on CPU; each counted call would stall a CUDA stream)."""

import pytest

from coral_cli.config import resolve
from coral_cli.rewards.packing import pad_ids
from coral_cli.runs import run_dir
from coral_cli.tasks.train import generator_trainer
from tests.fixed_rewards import ResponseTokenReward, make
from tests.step_syncs import one_step_syncs, own_syncs
from tests.tiny_generator import write_recipe

OVERRIDES = {"train.log_every": 50, "train.max_batch_size": 4, "generator.dropout": 0.0, "runtime.device": "cpu"}


def test_a_cross_entropy_step_reads_nothing_back_from_the_device(tmp_path):
    trainer = generator_trainer(resolve(write_recipe(tmp_path), OVERRIDES), run_dir(tmp_path, "ce"), [])
    sites = one_step_syncs(trainer)
    assert own_syncs(sites) == {}
    assert sum(sites.values()) <= 3  # HF's SDPA mask checks: encoder, decoder, cross-attention masks
    assert trainer.state.step == 1 and len(trainer._window["loss"]) == 1  # the step ran, its loss waits


def test_padding_ids_reads_no_tensor_back():
    ids, mask = pad_ids([[1, 2, 3], [4]], 0)
    assert ids.tolist() == [[1, 2, 3], [4, 0, 0]] and mask.tolist() == [[True] * 3, [True, False, False]]
    assert pad_ids([], 0)[0].shape == (0, 1)


@pytest.mark.slow
def test_a_coral_step_reads_back_only_in_decoding(tmp_path, monkeypatch):
    """With a reward that scores the generator's ids, the CORAL step's host reads are in on-policy
    decoding (HF `generate`'s all-rows-finished check, the nucleus sampler's data-dependent rows),
    plus one for the candidates' label count: sampled lengths live on the device, so the count is
    read back once (`Responses.label_count`) and the scored head gathers by a static-size index,
    with no boolean index (two syncs and a compile graph break before).
    Counted as on an accelerator: a CPU cuts candidate and reward padding to read-back lengths
    (free there), which `trims_padding` turns off."""
    monkeypatch.setattr("coral_cli.rewards.packing.trims_padding", lambda device: False)
    cfg = resolve(write_recipe(tmp_path), {**OVERRIDES, "objective.loss": "coral", "objective.p_plus": 0.5})
    trainer = generator_trainer(cfg, run_dir(tmp_path, "coral"), [], reward=lambda c, r: [0.5] * len(r))
    reward = make(ResponseTokenReward, "test-token-syncs", trainer.task.policy.tokenizer)
    trainer.task.objective.reward = trainer.task.reward = reward
    sites = own_syncs(one_step_syncs(trainer))
    assert sites  # on-policy decoding did run
    files = {where.rsplit(":", 1)[0] for _, where, _ in sites}
    assert files <= {"generator/decoding/sampling.py", "generator/decoding/nucleus.py", "generator/core/batch.py"}, sites
    outside = {k: n for k, n in sites.items() if not k[1].startswith("generator/decoding/")}
    assert sum(outside.values()) == 1, outside  # `Responses.label_count`: the candidates' one read
    assert {where.rsplit(":", 1)[0] for _, where, _ in outside} == {"generator/core/batch.py"}, outside
