"""The `coral annotate run` Textual screen, driven by key presses through Textual's Pilot."""

from __future__ import annotations

import asyncio
import json

from coral_cli.annotate.answers import Session, replay
from coral_cli.annotate.screen import screen
from coral_cli.annotate.study import make_study
from tests.test_annotate import write_predictions


def drive(session: Session, keys_then_check) -> None:
    from coral_cli.tui.annotate_app import AnnotateApp

    app = AnnotateApp(session)

    async def run():
        async with app.run_test(size=(110, 40)) as pilot:
            await pilot.pause()
            await keys_then_check(app, pilot)

    asyncio.run(run())


def test_pairwise_keys_answer_three_items_blind_with_undo(tmp_path):
    files = [write_predictions(tmp_path / "coral_run.jsonl", "zebra"), write_predictions(tmp_path / "mle_run.jsonl", "okapi")]
    study = make_study(tmp_path / "s", files, 4, 0, "pairwise", include_references=True)
    session = Session(study, "ann1")
    order = session.pending()[:3]
    seen = []

    async def keys(app, pilot):
        text = app.shown_text()
        for secret in ("coral_run", "mle_run", "reference", "system 1", "system 2", "system 3", ".jsonl"):
            assert secret not in text
        assert screen(session, order[0]).text().splitlines()[-1] in text  # the --plain lines, on screen
        assert f"Reply A: {order[0].shown_replies[0]}" in text and f"Reply B: {order[0].shown_replies[1]}" in text
        await pilot.press("a")
        seen.append(app.shown_text())
        await pilot.press("tab", *"too long", "enter")  # a reason for the next answer
        await pilot.press("b", "t", "u")  # the tie is undone ...
        await pilot.pause()
        assert "item 3 of 12 (2 answered)" in app.shown_text()
        await pilot.press("t", "q")

    drive(session, keys)
    assert f"Reply A: {order[1].shown_replies[0]}" in seen[0]  # the next item was drawn
    records = [json.loads(x) for x in session.path.read_text().splitlines()]
    assert [r.get("key", "undo") for r in records] == ["a", "b", "t", "undo", "t"]
    answers = list(replay(session.path).values())
    assert [a["item"] for a in answers] == [t.item["item"] for t in order]
    assert answers[0]["choice"] == order[0].shown_systems[0] and answers[1]["choice"] == order[1].shown_systems[1]
    assert answers[1]["reason"] == "too long" and answers[2]["choice"] == "tie"
    assert Session(study, "ann1").done == 3  # a new session resumes after the three


def test_likert_digits_rate_three_aspects_and_backspace_undoes(tmp_path):
    study = make_study(tmp_path / "s", [write_predictions(tmp_path / "coral_run.jsonl", "zebra")], 3, 0, "likert")
    session = Session(study, "ann1")

    async def keys(app, pilot):
        assert "coral_run" not in app.shown_text() and "Reply: zebra" in app.shown_text()
        await pilot.press("2", "1", "2", "0", "0", "backspace", "1", "1")  # the 2nd digit of item 2 retyped
        await pilot.press("2", "2", "2", "backspace")  # item 3 answered, then undone
        await pilot.pause()
        assert "item 3 of 3 (2 answered)" in app.shown_text()
        await pilot.press("q")

    drive(session, keys)
    answers = list(replay(session.path).values())
    assert [a["ratings"] for a in answers] == [{"engagement": 2, "relevance": 1, "fluency": 2},
                                               {"engagement": 0, "relevance": 1, "fluency": 1}]
