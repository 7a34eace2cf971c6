
import numpy as np
import pytest

from coral_cli.config import resolve
from coral_cli.config.schema import GenerateConfig
from coral_cli.data.encode import encode_pairs
from coral_cli.data.sources import load_pairs
from coral_cli.generation.responses import generate_for_contexts
from coral_cli.generator.bart.model import load_generator
from coral_cli.generator.core.policy import Seq2SeqPolicy
from coral_cli.rewards import save_reward
from coral_cli.runs import run_dir
from coral_cli.tasks.train import train_generator
from coral_cli.tokenizer import load_tokenizer
from tests.fixed_rewards import NanReward, ResponseTokenReward, make
from tests.tiny_generator import write_recipe


@pytest.fixture(scope="module")
def question_reward(tmp_path_factory):
    """A saved reward checkpoint whose f_R prefers responses containing '?' (0.9 vs 0.1)."""
    path = tmp_path_factory.mktemp("rq") / "question"
    save_reward(make(ResponseTokenReward, "test-question", load_tokenizer()), path)
    return path


def question_share(path, cfg):
    tok = load_tokenizer()
    enc = encode_pairs(load_pairs(cfg.data, "train"), tok, cfg.data)
    model, tok, _ = load_generator(path)
    out = generate_for_contexts(Seq2SeqPolicy(model, tok), enc["context_ids"], GenerateConfig(strategy="greedy", max_new_tokens=24))
    return float(np.mean(["?" in o["responses"][0] for o in out]))


def coral_overrides(reward, init, **extra):
    return {"objective.loss": "coral", "objective.reward": "test-question", "objective.reward_checkpoint": str(reward),
            "objective.p_plus": 0.0, "objective.margin": 0.5, "objective.policy": "mix",
            "objective.sample_max_new_tokens": 16, "generator.init": str(init), "train.lr": 1e-3,
            "train.warmup_steps": 5, "train.max_batch_size": 16, **extra}


@pytest.mark.slow
def test_coral_raises_the_reward_of_greedy_outputs(overfit_generator, question_reward, tmp_path):
    """Mix-policy CORAL with a reward that prefers questions turns greedy answers into questions."""
    cfg, ce_run, _, _ = overfit_generator
    before = question_share(ce_run.checkpoint("last"), cfg)
    over = coral_overrides(question_reward, ce_run.checkpoint("last"), **{"train.max_steps": 30, "train.eval_every": 30})
    coral_cfg = resolve(write_recipe(tmp_path), over)
    run = run_dir(tmp_path, "coral").create(coral_cfg, "coral coral train")
    state = train_generator(coral_cfg, run, [])
    after = question_share(run.checkpoint("last"), coral_cfg)
    assert before < 0.5 and after > 0.8, (before, after)
    evals = [r for r in run.read_metrics() if r["event"] == "eval"]
    assert evals[-1]["val_R3"] > -0.4 and "samples" in evals[-1] and "val_loss" in evals[-1]
    steps = [r for r in run.read_metrics() if r["event"] == "step"]
    assert steps[-1]["f_R"] > steps[0]["f_R"] and steps[-1]["neg_share"] == 1.0
    assert state.best is not None


@pytest.mark.slow
def test_cli_coral_train_and_its_errors(cli, overfit_generator, question_reward, tmp_path):
    _, ce_run, _, _ = overfit_generator
    recipe = write_recipe(tmp_path, f'\n[runtime]\nruns_dir = "{tmp_path}"\n')
    base = ["coral", "train", "--recipe", recipe, "--init", str(ce_run.checkpoint("last"))]
    ok = cli(*base, "--loss", "coral", "--reward", "test-question", "--reward-checkpoint", str(question_reward),
             "--p-plus", "0.5", "--margin", "0.4", "--policy", "off", "--max-steps", "4", "--name", "c")
    assert ok.exit_code == 0, ok.output
    saved = resolve(tmp_path / "c" / "config.toml")
    assert (saved.objective.p_plus, saved.objective.margin, saved.objective.policy) == (0.5, 0.4, "off")
    assert any(r["event"] == "eval" and "val_R3" in r for r in run_dir(tmp_path, "c").read_metrics())

    bad = cli(*base, "--p-plus", "1.5", "--name", "x")
    assert bad.exit_code == 2 and "'objective.p_plus' = 1.5 is out of range [0.0, 1.0]" in bad.stderr
    missing = cli(*base, "--loss", "coral", "--name", "y")
    assert missing.exit_code == 2 and "--reward-checkpoint" in missing.stderr
    wrong = cli(*base, "--loss", "coral", "--reward", "esim", "--reward-checkpoint", str(question_reward), "--name", "z")
    assert wrong.exit_code == 2 and "holds a 'test-question' retriever" in wrong.stderr


@pytest.mark.slow
def test_nan_reward_is_a_clear_error_naming_the_batch(cli, overfit_generator, tmp_path):
    _, ce_run, _, _ = overfit_generator
    nan_ckpt = tmp_path / "nan"
    save_reward(make(NanReward, "test-nan", load_tokenizer()), nan_ckpt)
    recipe = write_recipe(tmp_path, f'\n[runtime]\nruns_dir = "{tmp_path}"\n')
    result = cli("coral", "train", "--recipe", recipe, "--init", str(ce_run.checkpoint("last")), "--loss", "coral",
                 "--reward", "test-nan", "--reward-checkpoint", str(nan_ckpt), "--max-steps", "3", "--name", "n")
    assert result.exit_code == 2, result.output
    assert "the reward model returned NaN or inf in batch 0 of epoch 0" in result.stderr
    assert "Traceback" not in result.output
    assert not (tmp_path / "n" / "checkpoints" / "last").exists()  # nothing was saved from the broken step
