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
    """The decoder's LM head computes in bf16 during training steps, and 16 steps lower the CE
    loss; with the key off (one step) the same head computes in fp32."""
    monkeypatch.setattr(dev, "cpu_bf16_supported", lambda: True)  # correct, if slow, where emulated
    dtypes: dict[bool, set[torch.dtype]] = {}
    losses: list[float] = []
    for on in (True, False):
        cfg = resolve(write_recipe(tmp_path), {"train.max_steps": 16 if on else 1, "train.eval_every": 1000, "train.warmup_steps": 2,
                                               "train.log_every": 4, "runtime.cpu_bf16": on})
        seen = dtypes.setdefault(on, set())
        original = torch.nn.Linear.forward

        def spy(self, x, _seen=seen, _original=original):
            out = _original(self, x)
            if self.out_features > 1000 and torch.is_grad_enabled():  # the LM head, in a training step
                _seen.add(out.dtype)
            return out

        monkeypatch.setattr(torch.nn.Linear, "forward", spy)
        listener = (lambda e: losses.append(e.stats["loss"]) if isinstance(e, StepEnd) else None) if on else (lambda e: None)
        train_generator(cfg, run_dir(tmp_path, f"bf16-{on}").create(cfg, "test"), [listener])
        monkeypatch.setattr(torch.nn.Linear, "forward", original)
    assert dtypes == {True: {torch.bfloat16}, False: {torch.float32}}
    assert losses[-1] < losses[0] - 1.0
    assert autocast_dtype(CPU) is None  # the block ended with training
