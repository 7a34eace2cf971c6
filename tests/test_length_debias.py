"""The length-debiased reward (ODIN's idea, simplest form): the fit, a reward that is pure length,
and a CORAL run that fits, logs and saves it."""

import json

import numpy as np
import pytest
import torch

from coral_cli.objectives.length_debias import LengthDebias, fit_length_debias


def test_a_reward_that_is_pure_length_becomes_constant():
    lengths = torch.tensor([3, 7, 12, 20, 5, 9])
    f = 0.1 + 0.03 * lengths.float()
    fit = fit_length_debias(f, lengths, ref_length=10.0)
    assert fit.slope == pytest.approx(0.03) and fit.corr == pytest.approx(1.0)
    debiased = fit(f, lengths)
    torch.testing.assert_close(debiased, torch.full_like(f, 0.1 + 0.03 * 10.0))  # the score at the reference length
    # other replies of other lengths, same pure-length reward: constant too
    more = torch.tensor([1, 40, 13])
    torch.testing.assert_close(fit(0.1 + 0.03 * more.float(), more), torch.full((3,), 0.4))


def test_the_fit_is_least_squares_and_keeps_what_length_does_not_explain():
    rng = np.random.default_rng(0)
    lengths = rng.integers(2, 30, 500)
    quality = rng.normal(0, 0.1, 500)
    f = torch.tensor(0.2 + 0.01 * lengths + quality)
    fit = fit_length_debias(f, torch.tensor(lengths), ref_length=12.0)
    b, a = np.polyfit(lengths, f.numpy(), 1)
    assert fit.slope == pytest.approx(b) and fit.intercept == pytest.approx(a)
    residual = fit(f, torch.tensor(lengths)).numpy()
    assert abs(np.corrcoef(residual, lengths)[0, 1]) < 1e-9  # no length left in it
    assert np.corrcoef(residual, quality)[0, 1] > 0.9  # the rest stays


def test_equal_lengths_fit_no_slope_and_bad_input_is_refused():
    fit = fit_length_debias(torch.tensor([0.2, 0.9]), torch.tensor([4, 4]), 5.0)
    assert fit.slope == 0.0 and fit.corr == 0.0
    with pytest.raises(ValueError, match="two"):
        fit_length_debias(torch.tensor([0.2]), torch.tensor([4]), 5.0)
    again = LengthDebias.from_tensors(fit.tensors())
    assert again == fit


@pytest.mark.slow
def test_a_coral_run_fits_logs_and_saves_the_debias(tmp_path):
    """A tiny CORAL run whose reward is pure reply length: the fit finds it, writes it beside the
    config, the checkpoint carries it for a resume, and the steps log the raw f_R beside."""
    from coral_cli.config import resolve
    from coral_cli.runs import run_dir
    from coral_cli.tasks.train import train_generator
    from coral_cli.training.events import StepEnd
    from tests.tiny_generator import write_recipe

    cfg = resolve(write_recipe(tmp_path), {"objective.loss": "coral", "objective.policy": "mix",
                                           "objective.p_plus": 0.5, "objective.length_debias": "residual",
                                           "objective.length_debias_pairs": 16, "train.max_steps": 2, "train.log_every": 1,
                                           "objective.sample_max_new_tokens": 8})
    run = run_dir(tmp_path, "debias").create(cfg, "coral coral train")
    steps = []

    def words(contexts, responses):
        return [min(1.0, 0.05 * len(r.split())) for r in responses]

    train_generator(cfg, run, [lambda e: steps.append(e.stats) if isinstance(e, StepEnd) else None], reward=words)
    record = json.loads((run.root / "length_debias.json").read_text())
    assert record["slope"] > 0 and record["corr"] > 0.5 and record["pairs"] == 32
    from safetensors.torch import load_file

    from coral_cli.training.state import OPTIM_FILE

    saved = {k.removeprefix("extra."): v for k, v in load_file(str(run.checkpoint("last") / OPTIM_FILE)).items()}
    assert LengthDebias.from_tensors(saved) == LengthDebias(**record)
    assert steps and all("f_R_raw" in s for s in steps)


@pytest.mark.slow
def test_a_resume_keeps_the_fit_of_the_start_and_does_not_fit_again(tmp_path, monkeypatch):
    """The fit samples the validation contexts (minutes on a real model): a resume takes it from
    last/ instead of sampling again."""
    import coral_cli.tasks.train as train
    from coral_cli.config import resolve
    from coral_cli.runs import run_dir
    from tests.tiny_generator import write_recipe

    cfg = resolve(write_recipe(tmp_path), {"objective.loss": "coral", "objective.policy": "mix",
                                           "objective.p_plus": 0.5, "objective.length_debias": "residual",
                                           "objective.length_debias_pairs": 8, "train.max_steps": 1,
                                           "objective.sample_max_new_tokens": 4})
    run = run_dir(tmp_path, "debias").create(cfg, "coral coral train")

    def words(contexts, responses):
        return [min(1.0, 0.05 * len(r.split())) for r in responses]

    train.train_generator(cfg, run, [], reward=words)
    saved = LengthDebias(**json.loads((run.root / "length_debias.json").read_text()))
    fits = []
    real = train.fit_length_debias
    monkeypatch.setattr(train, "fit_length_debias", lambda *a: fits.append(1) or real(*a))
    cfg.train.max_steps = 2
    trainer = train.generator_trainer(cfg, run, [], reward=words, resume=True)
    trainer.fit(resume=True)
    assert fits == [] and trainer.task.objective.length_debias == saved
