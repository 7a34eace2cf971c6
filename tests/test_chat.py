import asyncio
import json

import pytest

from coral_cli.chat.commands import apply_command
from coral_cli.chat.loading import load_session
from coral_cli.chat.session import ChatSettings
from coral_cli.rewards import save_reward
from coral_cli.tokenizer import load_tokenizer
from tests.fixed_rewards import ResponseTokenReward, make


@pytest.fixture(scope="module")
def models(overfit_generator, tmp_path_factory):
    _, run, _, _ = overfit_generator
    reward = tmp_path_factory.mktemp("chat") / "question"
    save_reward(make(ResponseTokenReward, "test-question", load_tokenizer()), reward)
    return run.checkpoint("last"), reward


def session(models, **settings):
    return load_session(models[0], models[1], "cpu", ChatSettings(**settings), [])


@pytest.mark.slow
def test_candidates_are_scored_and_sorted_by_r3(models):
    s = session(models, n=4, margin=0.2)
    turn = s.say("Say , Jim , how about going for a few beers after dinner ?")
    assert len(turn.candidates) == 4
    r3 = [c.r3 for c in turn.candidates]
    assert r3 == sorted(r3, reverse=True)
    assert all(c.r3 == pytest.approx(c.f_r - 0.2) for c in turn.candidates)
    assert all(0 < p <= 1 for c in turn.candidates for _, p in c.tokens)
    assert turn.reply == turn.candidates[0].text and "jim" in turn.seen_context
    s.choose(2)
    assert s.history()[-1] == turn.candidates[2].text
    apply_command(s, "/margin 0.5")
    assert turn.candidates[turn.chosen].text == s.history()[-1]  # rescoring keeps the chosen reply
    s.undo()
    assert s.turns == []
    with pytest.raises(ValueError, match="within"):
        apply_command(s, "/n 99")


@pytest.mark.slow
def test_plain_mode_round_trip(cli, models):
    lines = "Say , Jim , how about going for a few beers after dinner ?\n/n 2\n/rerank off\nwhat do you mean ?\n"
    result = cli("chat", "-c", str(models[0]), "--reward-checkpoint", str(models[1]), "--plain", "-n", "3",
                 input=lines)
    assert result.exit_code == 0, result.output
    rows = [json.loads(x) for x in result.stdout.splitlines()]
    assert len(rows[0]["candidates"]) == 3 and rows[1] == {"command": "/n 2", "result": "n = 2"}
    assert len(rows[3]["candidates"]) == 2 and rows[3]["reply"] == rows[3]["candidates"][0]["text"]
    r3 = [c["R3"] for c in rows[0]["candidates"]]
    assert r3 == sorted(r3, reverse=True)


@pytest.mark.slow
def test_bad_checkpoints_fail_before_the_app(cli, models, tmp_path):
    result = cli("chat", "-c", str(tmp_path / "missing"))
    assert result.exit_code == 2 and "not a checkpoint folder" in result.stderr
    result = cli("chat", "-c", str(models[1]))  # a reward checkpoint is not a generator
    assert result.exit_code == 2 and "not a generator checkpoint" in result.stderr
    result = cli("chat", "-c", str(models[0]), "--reward-checkpoint", str(models[0]))
    assert result.exit_code == 2 and "not a reward-model checkpoint" in result.stderr


@pytest.mark.slow
def test_textual_app_with_pilot(models, tmp_path):
    from textual.widgets import ListView, Static

    from coral_cli.tui.chat_app import ChatApp

    transcript = tmp_path / "t.jsonl"
    app = ChatApp(lambda: session(models, n=3), transcript)

    async def drive():
        async with app.run_test(size=(120, 40)) as pilot:
            await app.workers.wait_for_complete()
            await pilot.pause()
            assert app.session is not None
            await pilot.press(*"hello , how are you ?", "enter")
            await pilot.pause()
            await app.workers.wait_for_complete()
            await pilot.pause()
            turn = app.session.turns[-1]
            assert len(app.query_one("#candidates", ListView).children) == 3
            assert [c.r3 for c in turn.candidates] == sorted((c.r3 for c in turn.candidates), reverse=True)
            first = turn.reply
            await pilot.press("ctrl+n")
            await pilot.pause()
            assert app.session.turns[-1].chosen == 1 and app.session.turns[-1].reply == turn.candidates[1].text
            shown = [str(w.render()) for w in app.query(".model").results(Static)]
            assert shown and turn.candidates[1].text in shown[-1] and (first == turn.candidates[1].text or first not in shown[-1])
            await pilot.press("ctrl+s")
            await pilot.pause()

    asyncio.run(drive())
    rows = [json.loads(x) for x in transcript.read_text().splitlines()]
    assert rows[0]["user"] == "hello , how are you ?" and rows[0]["chosen"] == 1 and len(rows[0]["candidates"]) == 3


def test_the_transcript_keeps_each_turns_own_settings(generator_ckpt, tmp_path):
    """After `/margin`, an earlier turn's R3 was made with its own margin: the transcript says so,
    rather than the session's settings at save time for every turn."""
    reward = tmp_path / "question"
    save_reward(make(ResponseTokenReward, "test-question", load_tokenizer()), reward)
    s = load_session(generator_ckpt, reward, "cpu", ChatSettings(n=2, max_new_tokens=4, margin=0.1), [])
    s.say("hello , how are you ?")
    apply_command(s, "/n 3")  # changes later turns only
    apply_command(s, "/margin 0.3")  # rescores the last turn: its R3 now uses 0.3
    s.say("what do you mean ?")
    apply_command(s, "/margin 0.5")  # rescores the second turn only
    rows = s.transcript()
    assert [r["settings"]["margin"] for r in rows] == [0.3, 0.5]
    assert [r["settings"]["n"] for r in rows] == [2, 3] == [len(r["candidates"]) for r in rows]
    for r in rows:
        assert all(c["R3"] == pytest.approx(c["f_R"] - r["settings"]["margin"]) for c in r["candidates"])
