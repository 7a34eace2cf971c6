"""Defaults a newcomer expects: `coral chat` without -c opens the newest generator checkpoint under
runs/ (else the bundled SmolLM2) and says which; `coral coral train --reward bert` without
--reward-checkpoint names the newest trained bert retriever under runs/ in its `fix:` line."""

import json
import os
import shutil

from coral_cli.chat.loading import default_checkpoint
from coral_cli.rewards.checkpoint import FORMAT as REWARD_FORMAT
from coral_cli.runs import newest_checkpoint

TINY = ["--set", "generator.encoder_layers=1", "--set", "generator.decoder_layers=1", "--set", "generator.d_model=16",
        "--set", "generator.heads=2", "--set", "generator.ffn_dim=16", "--max-pairs", "4"]


def folder(root, run, name, mtime, files=None):
    path = root / run / "checkpoints" / name
    path.mkdir(parents=True)
    for file, data in (files or {}).items():
        (path / file).write_text(json.dumps(data) if isinstance(data, dict) else data)
    os.utime(path, (mtime, mtime))
    return path


def retriever(root, run, name, mtime, model):
    return folder(root, run, name, mtime, {"config.json": {"format": REWARD_FORMAT, "model": model}})


def test_newest_checkpoint_is_the_latest_best_or_last_that_is_accepted(tmp_path):
    old = folder(tmp_path, "a", "best", 100)
    folder(tmp_path, "b", "last", 300)
    folder(tmp_path, "c", "epoch-3", 400)  # neither best/ nor last/
    assert newest_checkpoint(tmp_path, lambda c: True) == tmp_path / "b" / "checkpoints" / "last"
    assert newest_checkpoint(tmp_path, lambda c: c.parent.parent.name == "a") == old
    assert newest_checkpoint(tmp_path, lambda c: False) is None
    assert newest_checkpoint(tmp_path / "none", lambda c: True) is None


def test_chat_default_skips_reward_and_damaged_checkpoints_and_falls_back_to_smollm2(tmp_path):
    runs = tmp_path / "runs"
    assert default_checkpoint(runs)[0].name == "smollm2"
    assert "bundled smollm2" in default_checkpoint(runs)[1]
    gen = folder(runs, "gen", "best", 100, {"coral.json": {"format": "coral-generator"}})
    retriever(runs, "ret", "best", 200, "bert")  # newer, but a retriever
    folder(runs, "broken", "last", 300, {"coral.json": "{not json"})  # newer, but damaged
    found, line = default_checkpoint(runs)
    assert found == gen and str(gen) in line and "newest generator checkpoint" in line


def test_chat_without_c_opens_the_newest_generator_run_and_says_so(cli, generator_ckpt, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    old, new = tmp_path / "runs" / "old" / "checkpoints" / "last", tmp_path / "runs" / "new" / "checkpoints" / "best"
    for path, mtime in ((old, 100), (new, 200)):
        shutil.copytree(generator_ckpt, path)
        os.utime(path, (mtime, mtime))
    result = cli("chat", "--plain", "-n", "1", "--strategy", "greedy", input="")
    assert result.exit_code == 0, result.output
    assert f"opening {os.path.join('runs', 'new', 'checkpoints', 'best')}" in result.stderr


def test_coral_train_without_reward_checkpoint_names_the_newest_retriever_of_its_kind(cli, tmp_path):
    runs = tmp_path / "runs"
    retriever(runs, "bert-old", "best", 100, "bert")
    newest = retriever(runs, "bert-new", "last", 200, "bert")
    retriever(runs, "esim", "best", 300, "esim")  # newer, another kind
    result = cli("coral", "train", "--reward", "bert", "--name", "t", "--set", f"runtime.runs_dir={runs}", *TINY)
    assert result.exit_code == 2, result.output
    assert "CORAL needs a trained retriever" in result.output
    assert f"pass --reward-checkpoint {newest} (the newest trained bert retriever)" in " ".join(result.output.split())


def test_coral_train_without_any_retriever_says_how_to_train_one(cli, tmp_path):
    runs = tmp_path / "runs"
    result = cli("coral", "train", "--reward", "bert", "--name", "t", "--set", f"runtime.runs_dir={runs}", *TINY)
    assert result.exit_code == 2, result.output
    assert "coral retriever train --model bert" in " ".join(result.output.split())
