"""runtime.cpu_bf16: bf16 autocast on a CPU with native bf16, scoped to training (and its reward
scoring), never to decoding or evaluation, and off where the CPU would only emulate it."""

import pytest
import torch

from coral_cli import device as dev
from coral_cli.config import resolve
from coral_cli.device import autocast_dtype, cpu_bf16, decoding_dtype
from coral_cli.runs import run_dir
from coral_cli.tasks.train import train_generator
from coral_cli.training.events import StepEnd
from tests.tiny_generator import write_recipe

CPU = torch.device("cpu")


def test_cpu_bf16_holds_inside_its_block_only_and_needs_native_bf16(monkeypatch):
    monkeypatch.setattr(dev, "cpu_bf16_supported", lambda: True)
    assert autocast_dtype(CPU) is None
    with cpu_bf16(True) as on:
        assert on and autocast_dtype(CPU) is torch.bfloat16
        assert decoding_dtype(CPU) is None  # decoding stays fp32 on a CPU (measured faster)
        assert autocast_dtype(CPU, enabled=False) is None  # train.bf16 = false still wins
        with cpu_bf16(False):
            assert autocast_dtype(CPU) is None
        assert autocast_dtype(CPU) is torch.bfloat16
    assert autocast_dtype(CPU) is None
    monkeypatch.setattr(dev, "cpu_bf16_supported", lambda: False)  # emulated bf16 is slower than fp32: stay fp32
    with cpu_bf16(True) as on:
        assert not on and autocast_dtype(CPU) is None


@pytest.mark.slow
def test_generator_training_under_cpu_bf16_multiplies_in_bf16_and_learns(tmp_path, monkeypatch):
    """The decoder's LM head computes in bf16 in every training step, and 8 steps lower the CE
    loss (outside the block the CPU is fp32: the test above)."""
    monkeypatch.setattr(dev, "cpu_bf16_supported", lambda: True)  # correct, if slow, where emulated
    seen: set[torch.dtype] = set()
    losses: list[float] = []
    original = torch.nn.Linear.forward

    def spy(self, x):
        out = original(self, x)
        if self.out_features > 1000 and torch.is_grad_enabled():  # the LM head, in a training step
            seen.add(out.dtype)
        return out

    monkeypatch.setattr(torch.nn.Linear, "forward", spy)
    cfg = resolve(write_recipe(tmp_path), {"train.max_steps": 8, "train.eval_every": 1000, "train.warmup_steps": 2,
                                           "train.log_every": 2, "runtime.cpu_bf16": True})
    train_generator(cfg, run_dir(tmp_path, "bf16").create(cfg, "test"),
                    [lambda e: losses.append(e.stats["loss"]) if isinstance(e, StepEnd) else None])
    assert seen == {torch.bfloat16}
    assert losses[-1] < losses[0] - 0.5, losses
    assert autocast_dtype(CPU) is None  # the block ended with training
