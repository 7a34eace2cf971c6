"""`train.pad_to_multiple`: training batches padded to a few static widths (for cuBLAS, the caching
allocator and torch.compile on a GPU) give the same log-probs and loss as tightly padded ones."""

from __future__ import annotations

import pytest
import torch

from coral_cli.config import resolve
from coral_cli.generator.core.batch import IGNORE
from coral_cli.rewards.packing import pad_ids
from coral_cli.runs import run_dir
from coral_cli.tasks.train import generator_trainer
from tests.test_scored_head import CONTEXTS, RESPONSES, causal, seq2seq
from tests.tiny_generator import write_recipe


def test_pad_ids_rounds_the_width_up_to_the_multiple():
    ids, mask = pad_ids([[1, 2, 3], [4]], 0, multiple=8)
    assert ids.shape == mask.shape == (2, 8)
    assert mask.sum(1).tolist() == [3, 1] and ids[0, 3:].eq(0).all()
    assert pad_ids([[1] * 8], 0, multiple=8)[0].shape == (1, 8)  # already a multiple: unchanged
    assert pad_ids([[1] * 9], 0, multiple=8)[0].shape == (1, 16)


@pytest.mark.parametrize("make", [seq2seq, causal], ids=["seq2seq", "causal"])
def test_padded_batches_give_the_same_logprobs(make):
    policy = make()
    tight, _, _ = policy.ground_truth(CONTEXTS, RESPONSES, "cpu")
    policy.pad_multiple = 16
    padded, prompt_ids, _ = policy.ground_truth(CONTEXTS, RESPONSES, "cpu")
    assert prompt_ids.shape[1] % 16 == 0 and prompt_ids.shape[1] > tight.input_ids.shape[1] - 16
    assert padded.labels.numel() > tight.labels.numel()  # more padding than the tight batch
    assert padded.scored == tight.scored == int(tight.labels.ne(IGNORE).sum())
    with torch.no_grad():
        a, b = policy.logprobs(policy.model, tight), policy.logprobs(policy.model, padded)
    # the same scored tokens, in the same row-major order, with the same log-probs
    torch.testing.assert_close(b[padded.labels.ne(IGNORE)], a[tight.labels.ne(IGNORE)], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(b.sum(1), a.sum(1), rtol=1e-5, atol=1e-5)


def test_the_trainer_pads_its_batches_to_the_configured_multiple(tmp_path):
    cfg = resolve(write_recipe(tmp_path), {"train.pad_to_multiple": 32, "train.max_batch_size": 4,
                                           "generator.dropout": 0.0, "runtime.device": "cpu"})
    trainer = generator_trainer(cfg, run_dir(tmp_path, "padded"), [])
    assert trainer.task.policy.pad_multiple == 32
    batch = trainer.task.collate(trainer._batches(0)[0], 0, 0)
    assert batch.prompt_ids.shape[1] % 32 == 0 and (batch.teacher.labels.shape[1] - 1) % 32 == 0
