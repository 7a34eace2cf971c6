"""`coral annotate`: study folders, blind screens, the answer log, resume and undo, the report
(by hand), and Krippendorff's alpha against Krippendorff's own worked example."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from coral_cli.annotate.agreement import krippendorff_alpha
from coral_cli.annotate.answers import Session, replay
from coral_cli.annotate.study import annotator_order, load_study, make_study
from coral_cli.annotate.study_report import build_report, lc_win_rate, sign_test

CONTEXTS = [["hi there", "hello , how are you ?"], ["what time is it ?"], ["do you like tea ?", "yes", "and coffee ?"],
            ["bye"], ["where is the station ?"], ["is it raining ?"]]


def write_predictions(path: Path, reply: str, contexts=CONTEXTS) -> Path:
    path.write_text("".join(json.dumps({"id": f"test:{i}", "context": c, "reference": f"gold answer {i}",
                                        "response": f"{reply} {i}"}) + "\n" for i, c in enumerate(contexts)))
    return path


@pytest.fixture
def files(tmp_path):
    return write_predictions(tmp_path / "coral_run.jsonl", "zebra"), write_predictions(tmp_path / "mle_run.jsonl", "okapi")


# ---- Krippendorff's alpha ------------------------------------------------------------------
N = None
# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", §C: 4 observers, 12 units, missing data
K2011 = list(zip([1, 2, 3, 3, 2, 1, 4, 1, 2, N, N, N],
                 [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, N, 3],
                 [N, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, N],
                 [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, N]))


def test_alpha_reproduces_krippendorffs_worked_example():
    assert krippendorff_alpha(K2011, "nominal") == pytest.approx(0.743, abs=5e-4)
    assert krippendorff_alpha(K2011, "interval") == pytest.approx(0.849, abs=5e-4)
    assert krippendorff_alpha(K2011, "ordinal") == pytest.approx(0.815, abs=5e-4)


def test_alpha_is_one_for_identical_annotators_and_undefined_without_variation():
    units = [(0, 0, 0), (2, 2, None), (1, 1, 1), (2, 2, 2)]
    assert krippendorff_alpha(units, "ordinal") == 1.0 and krippendorff_alpha(units, "nominal") == 1.0
    assert krippendorff_alpha([(1, 1), (1, 1)], "nominal") is None  # one value only: nothing to expect
    assert krippendorff_alpha([(1, None), (2,)], "nominal") is None  # nothing pairable


# ---- making a study ------------------------------------------------------------------------
def test_new_draws_seeded_common_contexts_and_writes_only_the_study(cli, files, tmp_path):
    before = set(tmp_path.iterdir())
    r = cli("annotate", "new", str(tmp_path / "s"), "-p", str(files[0]), "-p", str(files[1]), "-n", "4", "--seed", "7",
            "--mode", "pairwise", "--include-references")
    assert r.exit_code == 0, r.output
    assert set(tmp_path.iterdir()) - before == {tmp_path / "s"}
    m = json.loads((tmp_path / "s" / "manifest.json").read_text())
    assert (m["mode"], m["n"], m["seed"], len(m["context_ids"])) == ("pairwise", 4, 7, 4)
    assert [s["name"] for s in m["systems"]] == ["coral_run", "mle_run", "reference"]
    import hashlib
    assert m["systems"][0]["sha256"] == hashlib.sha256(files[0].read_bytes()).hexdigest()
    assert "all 3 pairs" in m["pairs"]
    items = load_study(tmp_path / "s").items
    assert len(items) == 4 * 3 and {tuple(i["systems"]) for i in items} == {("system 1", "system 2"),
                                                                             ("system 1", "system 3"), ("system 2", "system 3")}
    again = make_study(tmp_path / "t", list(files), 4, 7, "pairwise", True)
    assert again.manifest["context_ids"] == m["context_ids"]  # the draw is seeded


def test_new_rejects_mismatched_contexts_missing_files_and_existing_studies(cli, files, tmp_path):
    other = [list(c) for c in CONTEXTS]
    other[2][1] = "no"
    odd = write_predictions(tmp_path / "odd.jsonl", "x", other)
    r = cli("annotate", "new", str(tmp_path / "s"), "-p", str(files[0]), "-p", str(odd))
    assert r.exit_code == 2 and "odd.jsonl" in r.stderr and "'test:2'" in r.stderr and "Traceback" not in r.output
    r = cli("annotate", "new", str(tmp_path / "s"), "-p", str(files[0]), "-p", str(tmp_path / "missing.jsonl"), "-n", "2")
    assert r.exit_code == 2 and "not found" in r.stderr and "missing.jsonl" in r.stderr
    assert not (tmp_path / "s").exists()
    assert cli("annotate", "new", str(tmp_path / "s"), "-p", str(files[0]), "-n", "2").exit_code == 0
    r = cli("annotate", "new", str(tmp_path / "s"), "-p", str(files[0]), "-n", "3")
    assert r.exit_code == 2 and "not empty" in r.stderr and "--force" in r.stderr
    assert cli("annotate", "new", str(tmp_path / "s"), "-p", str(files[0]), "-n", "3", "--force").exit_code == 0
    assert json.loads((tmp_path / "s" / "manifest.json").read_text())["n"] == 3
    r = cli("annotate", "new", str(tmp_path / "u"), "-p", str(files[0]), "-n", "99")
    assert r.exit_code == 2 and "share only 6" in r.stderr
    r = cli("annotate", "new", str(tmp_path / "u"), "-p", str(files[0]), "--mode", "best-of")
    assert r.exit_code == 2 and "unknown mode" in r.stderr


def test_annotator_names_are_one_safe_path_component(cli, files, tmp_path):
    make_study(tmp_path / "s", [files[0]], 2, 0, "likert")
    for bad in ("../x", ".hidden", "a/b", ""):
        r = cli("annotate", "run", str(tmp_path / "s"), "--annotator", bad, "--plain", input="")
        assert r.exit_code == 2 and "annotator name" in r.stderr, bad
    assert not list((tmp_path / "s" / "annotations").iterdir())


# ---- blind screens, orders, resume, undo ---------------------------------------------------
def test_plain_screens_are_blind_and_orders_differ_across_annotators(cli, files, tmp_path):
    study = make_study(tmp_path / "s", list(files), 6, 0, "pairwise", include_references=True)
    r = cli("annotate", "show", str(tmp_path / "s"), "--annotator", "ann1", "--next", "18")
    assert r.exit_code == 0 and r.stdout.count("Which would you rather get as the next turn?") == 18
    r2 = cli("annotate", "run", str(tmp_path / "s"), "--annotator", "ann1", "--plain", input="a\n" * 18)
    for text in (r.stdout, r2.stdout):
        for secret in ("coral_run", "mle_run", "reference", "system 1", "system 2", "system 3", ".jsonl", str(tmp_path)):
            assert secret not in text
        assert "Reply A: " in text and "Reply B: " in text and "  A: hi there" in text
    one, two = annotator_order(study, "ann1"), annotator_order(study, "ann2")
    assert one == annotator_order(load_study(tmp_path / "s"), "ann1")  # reproducible
    assert [i for i, _ in one] != [i for i, _ in two]  # items in another order
    assert {i: p for i, p in one} != {i: p for i, p in two}  # replies in other positions
    firsts = {tuple(a["shown"]) for a in replay(study.annotations("ann1")).values()}
    assert len(firsts) == 6  # each pair shown both ways round over 18 items


def test_plain_mode_resumes_where_it_stopped_and_reasks_on_bad_input(cli, files, tmp_path):
    make_study(tmp_path / "s", [files[0]], 3, 0, "likert")
    run = ("annotate", "run", str(tmp_path / "s"), "--annotator", "ann1", "--plain")
    r = cli(*run, input="2 1 2\n9 9 9\n012\n")  # EOF after two answers
    assert r.exit_code == 0 and "invalid answer" in r.stdout and "run again to resume" in r.stderr
    session = Session(load_study(tmp_path / "s"), "ann1")
    assert session.done == 2
    r = cli(*run, input="1 1 1\n")
    assert r.exit_code == 0 and "item 3 of 3 (2 answered)" in r.stdout and "item 1 of" not in r.stdout
    assert "all 3 items answered" in r.stdout
    make_study(tmp_path / "t", [files[0]], 2, 0, "likert")
    (tmp_path / "answers.txt").write_text("2 2 2\n1 0 1\n")
    r = cli("annotate", "run", str(tmp_path / "t"), "--annotator", "bot", "--plain", "--answers", str(tmp_path / "answers.txt"))
    assert r.exit_code == 0 and Session(load_study(tmp_path / "t"), "bot").done == 2
    answers = list(replay(session.path).values())
    assert [a["ratings"] for a in answers] == [{"engagement": 2, "relevance": 1, "fluency": 2},
                                               {"engagement": 0, "relevance": 1, "fluency": 2},
                                               {"engagement": 1, "relevance": 1, "fluency": 1}]
    assert [a["item"] for a in answers] == [load_study(tmp_path / "s").items[t.index]["item"] for t in session.order]


def test_undo_appends_a_record_and_the_item_comes_back(cli, files, tmp_path):
    make_study(tmp_path / "s", list(files), 2, 0, "pairwise")
    r = cli("annotate", "run", str(tmp_path / "s"), "--annotator", "x", "--plain", input="a\nu\nb because\n")
    assert r.exit_code == 0 and "undone the last answer" in r.stdout
    path = tmp_path / "s" / "annotations" / "x.jsonl"
    records = [json.loads(x) for x in path.read_text().splitlines()]
    assert [("undo" in x) for x in records] == [False, True, False]
    assert records[1]["undo"] == records[0]["item"] and records[2]["item"] == records[0]["item"]
    now = replay(path)
    assert now[records[0]["item"]]["key"] == "b" and now[records[0]["item"]]["reason"] == "because"
    r = cli("annotate", "run", str(tmp_path / "s"), "--annotator", "x", "--plain", input="u\n")
    assert r.exit_code == 0 and replay(path) == {}  # undone, then EOF: nothing answered


def test_a_torn_last_line_is_ignored(files, tmp_path):
    study = make_study(tmp_path / "s", [files[0]], 2, 0, "likert")
    s = Session(study, "ann")
    s.answer(s.current(), {"ratings": {"engagement": 1, "relevance": 1, "fluency": 1}})
    with open(s.path, "a") as fh:
        fh.write('{"item": "i0000')  # killed inside the write
    assert len(replay(s.path)) == 1 and Session(study, "ann").done == 1


# ---- the report, by hand -------------------------------------------------------------------
def _answer(study, who: str, choices: dict[str, str]) -> None:
    """Answer each item with the system named in `choices[context id]` ('tie' for a tie)."""
    s = Session(study, who)
    while (task := s.current()) is not None:
        want = choices[task.item["id"]]
        key = "t" if want == "tie" else "ab"[task.shown_systems.index(want)]
        s.answer(task, {"key": key, "reason": ""})


def test_pairwise_report_by_hand(cli, files, tmp_path):
    study = make_study(tmp_path / "s", list(files), 4, 0, "pairwise")
    ids = study.manifest["context_ids"]
    _answer(study, "ann1", dict(zip(ids, ["system 1", "system 1", "system 1", "tie"])))
    _answer(study, "ann2", dict(zip(ids, ["system 1", "system 2", "system 1", "tie"])))
    r = build_report(study, resamples=200)
    pair = r["pairwise"][0]
    assert (pair["a"], pair["b"], pair["wins"], pair["ties"], pair["losses"]) == ("coral_run", "mle_run", 5, 2, 1)
    assert pair["win_rate"] == pytest.approx((5 + 0.5 * 2) / 8)
    # the sign test counts contexts (two annotators of one context are not two trials): per-context
    # means 1, 1/2, 1, 1/2 -> 2 won, 0 lost, 2 tied: p = 2 P(X <= 0 | n = 2) = 1/2
    assert (pair["contexts_won"], pair["contexts_lost"]) == (2, 0)
    assert pair["sign_test_p"] == pytest.approx(0.5)
    assert sign_test(5, 1) == pytest.approx(2 * (1 + 6) / 2 ** 6)  # 5 of 6: 2 P(X <= 1)
    assert pair["lc_win_rate"] == pytest.approx(0.75, abs=1e-6)  # equal lengths: nothing to control
    assert pair["win_rate_ci"][0] <= 0.75 <= pair["win_rate_ci"][1]
    # units (1,1) (1,2) (1,1) (t,t): o11 = 4, o12 = o21 = 1, ott = 2; n = (5, 1, 2); D_o = 2/8, D_e = 34/56
    assert r["alpha"]["choice"]["alpha"] == pytest.approx(10 / 17) and r["alpha"]["choice"]["items"] == 4
    assert r["per_annotator"]["ann2"][0]["wins"] == 2 and r["per_annotator"]["ann1"][0]["win_rate"] == pytest.approx(7 / 8)
    assert [s["mean_words"] for s in r["systems"]] == [2.0, 2.0]
    assert r["metrics"]["win_rate"] == pytest.approx(0.75) and "win_rate/coral_run_vs_mle_run" in r["metrics"]
    base = ("annotate", "report", str(tmp_path / "s"), "--resamples", "50")
    out = cli(*base, "--json")
    assert out.exit_code == 0 and json.loads(out.stdout)["pairwise"][0]["wins"] == 5
    assert cli(*base, "--fail-under", "win_rate=0.7").exit_code == 0
    failed = cli(*base, "--fail-under", "win_rate=0.8")
    assert failed.exit_code == 1 and "gate failed" in failed.stderr
    bad = cli(*base, "--fail-under", "win_rat=0.8")
    assert bad.exit_code == 2 and "unknown metric" in bad.stderr
    shown = cli(*base)
    assert shown.exit_code == 0 and "coral_run" in shown.stdout and "0.750" in shown.stdout


def test_likert_report_by_hand(files, tmp_path):
    study = make_study(tmp_path / "s", list(files), 2, 0, "likert")
    ratings = {"system 1": [2, 1, 2], "system 2": [0, 1, 1]}
    for who in ("a1", "a2"):
        s = Session(study, who)
        while (task := s.current()) is not None:
            e, r_, f = ratings[task.shown_systems[0]]
            if task.item["id"] == study.manifest["context_ids"][0] and task.shown_systems[0] == "system 1":
                e = 1  # one lower engagement per annotator on one context
            s.answer(task, {"ratings": {"engagement": e, "relevance": r_, "fluency": f}})
    r = build_report(study, resamples=100)
    coral, mle = r["likert"]["coral_run"], r["likert"]["mle_run"]
    assert coral["engagement"]["mean"] == pytest.approx(1.5) and coral["relevance"]["mean"] == 1.0
    assert mle["fluency"]["mean"] == 1.0 and coral["answers"] == 4
    assert coral["engagement"]["ci"] == [pytest.approx(1.0), pytest.approx(2.0)]
    assert r["alpha"]["engagement"]["alpha"] == 1.0 and r["alpha"]["engagement"]["metric"] == "ordinal"
    assert r["alpha"]["relevance"]["alpha"] is None  # every rating 1: no variation to agree on
    assert r["metrics"]["engagement/coral_run"] == pytest.approx(1.5)


def test_sign_test_and_length_controlled_win_rate():
    assert sign_test(0, 0) == 1.0 and sign_test(3, 3) == 1.0 and sign_test(10, 0) == pytest.approx(2 / 1024)
    diff = [4.0, 4.0, 4.0, -4.0]  # the longer reply wins 3 in 4; at equal length, a coin flip
    target = [0.75, 0.75, 0.75, 0.25]
    assert sum(target) / 4 == 0.625
    assert lc_win_rate(diff, target) == pytest.approx(0.5, abs=0.01)
    assert lc_win_rate([1.0, -1.0], [1.0, 1.0]) == 1.0


def test_report_without_answers_is_a_clear_error(cli, files, tmp_path):
    make_study(tmp_path / "s", [files[0]], 2, 0, "likert")
    r = cli("annotate", "report", str(tmp_path / "s"))
    assert r.exit_code == 2 and "no answers" in r.stderr
    r = cli("annotate", "report", str(tmp_path / "nothing"))
    assert r.exit_code == 2 and "not a study folder" in r.stderr
