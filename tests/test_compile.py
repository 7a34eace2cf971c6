"""`train.compile = true`: the loss's forward runs through torch.compile and gives eager's losses."""

import pytest
import torch

from coral_cli.config import resolve
from coral_cli.runs import run_dir
from coral_cli.tasks.train import generator_trainer
from coral_cli.training.distributed import unwrap
from tests.tiny_generator import write_recipe

OVERRIDES = {"train.max_steps": 3, "train.max_batch_size": 4, "train.batch_tokens": 4096, "train.log_every": 1,
             "train.eval_every": 3, "train.warmup_steps": 1, "generator.dropout": 0.0, "runtime.device": "cpu"}


def _losses(tmp_path, name: str, **extra) -> tuple[list[float], object]:
    cfg = resolve(write_recipe(tmp_path), {**OVERRIDES, **extra})
    trainer = generator_trainer(cfg, run_dir(tmp_path, name), [])
    seen: list[float] = []
    loss = trainer.task.loss
    trainer.task.loss = lambda batch: (lambda out: (seen.append(float(out[0].detach())), out)[1])(loss(batch))
    trainer.fit()
    return seen, trainer


@pytest.mark.slow
def test_a_compiled_forward_trains_with_eager_losses(tmp_path):
    eager, _ = _losses(tmp_path, "eager")
    compiled, trainer = _losses(tmp_path, "compiled", **{"train.compile": True})
    assert type(trainer.task.forward_model).__name__ == "OptimizedModule"  # the loss ran through torch.compile
    assert unwrap(trainer.task.forward_model) is trainer.task.model
    assert compiled == pytest.approx(eager, abs=1e-4, rel=0)
    assert len(set(round(v, 3) for v in eager)) == 3  # three different batches: a real comparison
