"""Collapse alarms: hand-computed stats, real DailyDialog replies raise none, `coral evaluate`
reports them (JSON and table), and `train.stop_on_collapse` ends a collapsed CORAL run."""

import json

import pytest
import torch

from coral_cli.config import DataConfig, resolve
from coral_cli.config.drift import config_drift
from coral_cli.data.sources import load_pairs
from coral_cli.metrics.collapse import check_collapse, collapse_stats, collapse_warnings, has_repeat_run
from coral_cli.runs import run_dir
from coral_cli.training.events import EvalEnd

# 7 of 10 the same after lowercasing / whitespace; 8 with a run; 1 empty
REPLIES = ["i i i i ."] * 5 + ["I i i i .", "i  i i i  ."] + ["thank you thank you thank you", "", "see you at noon ."]


def test_stats_by_hand():
    stats = collapse_stats(REPLIES)
    assert stats["top_reply_share"] == pytest.approx(0.7)
    assert stats["distinct_replies"] == pytest.approx(0.4)  # 'i i i i .', 'thank you ...', '', 'see you at noon .'
    assert stats["Dist-1"] == pytest.approx(7 / 46)  # i . thank you see at noon over 35 + 6 + 0 + 5 words
    assert stats["repeat_run_share"] == pytest.approx(0.8)
    assert stats["empty_share"] == pytest.approx(0.1)
    assert "reference_Dist-1" not in stats
    refs = [f"w{2 * i} w{2 * i + 1}" for i in range(10)]  # 20 distinct words: Dist-1 = 1
    assert collapse_stats(REPLIES, refs)["reference_Dist-1"] == 1.0


def test_warnings_say_what_was_seen_and_the_threshold():
    assert check_collapse(REPLIES)[1] == [
        "70% of 10 replies are the same reply ('i i i i .'), above the 20% alarm: the generator has collapsed",
        ("80% of 10 replies repeat a word 4+ times or a bigram 3+ times in a row, above the 20% alarm: "
         "degenerate repetition"),
    ]  # Dist-1 7/46 is above the 0.02 floor; 10% empty is under 20%
    _, with_refs = check_collapse(REPLIES, [f"w{2 * i} w{2 * i + 1}" for i in range(10)])
    assert "Dist-1 of 10 replies is 0.1522, under 0.25 x the references' own 1.0000 = 0.2500: " \
           "the replies reuse a handful of words" in with_refs
    assert check_collapse(["ok ."] * 200)[1][1] == "Dist-1 of 200 replies is 0.0050, under the 0.02 floor: " \
                                                   "the replies reuse a handful of words"


def test_thresholds_are_strict_and_small_sets_are_spared():
    assert check_collapse(["ok ."] * 9)[1] == []  # 9 identical: under 10 replies, chance
    two_same = ["ok ."] * 2 + [f"reply number {i} ." for i in range(8)]
    assert collapse_stats(two_same)["top_reply_share"] == 0.2 and check_collapse(two_same)[1] == []
    empty = [""] * 3 + [f"reply number {i} ." for i in range(7)]
    assert check_collapse(empty)[1] == ["30% of 10 replies are empty, above the 20% alarm"]
    assert check_collapse([""] * 10)[1] == ["100% of 10 replies are empty, above the 20% alarm"]  # that alone
    long = "a very long reply that goes on and on and on until the end"
    assert "('a very long reply that goes on and on a…')" in check_collapse([long] * 10)[1][0]
    assert collapse_warnings(collapse_stats([]), 0) == []


@pytest.mark.parametrize("text,run", [("i i i i .", True), ("i i i .", False), ("ha ha ha ha", True),
                                      ("no , no , no , thanks", True), ("thank you thank you", False),
                                      ("THANK you thank YOU thank you", True), ("", False)])
def test_repeat_runs(text, run):
    assert has_repeat_run(text) is run


@pytest.mark.parametrize("split", ["validation", "test"])
def test_real_dailydialog_replies_raise_no_alarm(split):
    refs = load_pairs(DataConfig(), split)["response"]
    for chunk in (refs[:10], refs[:200], refs):
        assert check_collapse(chunk, chunk)[1] == [] and check_collapse(chunk)[1] == []


def write_jsonl(path, predictions, references):
    path.write_text("".join(json.dumps({"context": ["hi ?"], "reference": r, "response": p}) + "\n"
                            for p, r in zip(predictions, references)))
    return path


def test_evaluate_reports_a_collapsed_generator(cli, tmp_path):
    refs = load_pairs(DataConfig(), "test")["response"][:200]
    preds = write_jsonl(tmp_path / "p.jsonl", ["i i i i . . . ."] * 200, refs)
    result = cli("evaluate", "-p", str(preds), "--json", "--metrics", "avg_len,distinct")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["collapse"]["top_reply_share"] == 1.0 and report["collapse"]["repeat_run_share"] == 1.0
    assert report["collapse"]["Dist-1"] == pytest.approx(2 / 1600)
    same = "100% of 200 replies are the same reply ('i i i i . . . .'), above the 20% alarm: the generator has collapsed"
    assert report["warnings"][0] == same and len(report["warnings"]) == 3  # + Dist-1, + repetition
    assert f"warning: {same}" in result.stderr
    text = tmp_path / "p.txt"
    text.write_text("i i i i . . . .\n" * 200)
    table = cli("evaluate", "-p", str(text))
    assert table.exit_code == 0 and f"warning: {same}" in table.stdout  # after the table, on stdout
    assert table.stdout.index("Dist-1") < table.stdout.index("warning:")
    fluent = cli("evaluate", "-p", str(preds), "--references-as-predictions", "--json", "--metrics", "distinct")
    assert fluent.exit_code == 0 and json.loads(fluent.stdout)["warnings"] == []
    (tmp_path / "new.json").write_text(result.stdout)
    old = json.loads(fluent.stdout)
    del old["collapse"]  # a report written before the key existed
    (tmp_path / "old.json").write_text(json.dumps(old))
    compare = cli("evaluate", "compare", str(tmp_path / "old.json"), str(tmp_path / "new.json"), "--markdown")
    assert compare.exit_code == 0 and "| Dist-1 |" in compare.stdout and "collapse" not in compare.stdout


def test_stop_on_collapse_does_not_change_what_is_trained():
    assert config_drift(resolve(None), resolve(None, {"train.stop_on_collapse": True}), "generator") == []


@pytest.mark.slow
def test_stop_on_collapse_ends_a_collapsed_coral_run_and_off_it_trains_on(tmp_path, capsys):
    """A tiny CORAL run whose output bias makes greedy decoding say 'i i i i ...' to every context:
    with stop_on_collapse it stops at the first validation (last/ and best/ saved); resumed with
    it off, it trains to max_steps and logs the alarm at each validation."""
    from coral_cli.commands.progress import TrainingView
    from coral_cli.tasks.train import generator_trainer
    from tests.tiny_generator import write_recipe

    cfg = resolve(write_recipe(tmp_path), {
        "objective.loss": "coral", "objective.policy": "off", "objective.p_plus": 0.0, "data.max_pairs": 12,
        "generator.encoder_layers": 1, "generator.decoder_layers": 1, "generator.d_model": 32, "generator.ffn_dim": 64,
        "generator.eval_pairs": 10, "generate.max_new_tokens": 8, "objective.sample_max_new_tokens": 8,
        "train.max_batch_size": 4, "train.max_steps": 4, "train.eval_every": 2, "train.stop_on_collapse": True})
    run = run_dir(tmp_path, "collapsed").create(cfg, "test")
    evals: list[EvalEnd] = []
    view = TrainingView("generator coral")
    trainer = generator_trainer(cfg, run, [view, lambda e: evals.append(e) if isinstance(e, EvalEnd) else None],
                                reward=lambda contexts, responses: [0.5] * len(responses))
    with torch.no_grad():  # greedy decoding now says 'i' whatever the context
        trainer.task.model.final_logits_bias[..., trainer.task.policy.tokenizer.convert_tokens_to_ids("i")] = 50.0
    with view:
        state = trainer.fit()
    assert (state.stopped, state.step, len(evals)) == ("collapse", 2, 1)
    assert run.checkpoint("last").exists() and run.checkpoint("best").exists()
    records = run.read_metrics()
    first = next(r for r in records if r["event"] == "eval")
    assert first["val_top_reply_share"] == 1.0 and first["val_repeat_run_share"] == 1.0 and first["val_Dist-1"] < 0.02
    assert first["collapse"][0].startswith("100% of 10 replies are the same reply ('i i i i i i i i')")
    assert records[-1] == {**records[-1], "event": "end", "reason": "collapse", "step": 2}
    logged = capsys.readouterr().err
    assert "warning: validation replies @ step 2: 100% of 10 replies are the same reply" in logged
    assert "--resume --set train.stop_on_collapse=false" in logged

    cfg.train.stop_on_collapse = False  # the trainer's TrainConfig: what --set would change
    with view:
        state = trainer.fit(resume=True)
    assert (state.stopped, state.step) == ("max_steps", 4)
    assert [e.step for e in evals] == [2, 4] and all(e.metrics["collapse"] for e in evals)
    assert [r["step"] for r in run.read_metrics() if r["event"] == "eval" and r["collapse"]] == [2, 4]
    logged = capsys.readouterr().err
    assert "warning: validation replies @ step 4:" in logged and "done: max_steps at step 4" in logged
    assert "stop_on_collapse=false" not in logged
