"""Length control (`coral evaluate` length check, `compare --length-matched`): a score that only
rewards length shows no difference once length is held apart, a real gain at equal lengths keeps
its difference, the bucket weighting and correlation match hand computations, and the length
alarm fires outside [0.5x, 1.5x] of the references."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from coral_cli.metrics.bootstrap import items_path, write_items
from coral_cli.metrics.length_control import length_matched, length_summary, length_warnings, pearson
from coral_cli.metrics.predictions import PredictionSet
from coral_cli.metrics.report import evaluate


def reply(n: int) -> str:
    return " ".join(["w"] * n)


def items(lengths, **scores) -> dict:
    return {"count": len(lengths), "responses": [reply(int(n)) for n in lengths],
            **{k.replace("_", "-"): [float(x) for x in v] for k, v in scores.items()}}


def length_only_rows(n: int = 200, seed: int = 0) -> tuple[dict, dict]:
    """Row B answers 3-7 words longer than A; both scores are 0.03 x length + noise, nothing else."""
    rng = np.random.default_rng(seed)
    la = rng.integers(4, 16, n)
    lb = la + rng.integers(3, 8, n)

    def score(lengths):
        return 0.03 * lengths + rng.normal(0, 0.02, n)

    return (items(la, R3=score(la), MAUDE_esim=score(la), METEOR=score(la)),
            items(lb, R3=score(lb), MAUDE_esim=score(lb), METEOR=score(lb)))


def covers_zero(est: dict) -> bool:
    return est["ci"][0] <= 0 <= est["ci"][1]


def test_a_score_of_length_alone_is_no_difference_once_length_is_controlled():
    a, b = length_only_rows()
    result = length_matched(a, b, resamples=500, seed=1)
    assert result["mean_words"][1] - result["mean_words"][0] == pytest.approx(5, abs=0.5)
    for name in ("R3", "MAUDE-esim"):
        m = result["metrics"][name]
        assert m["raw"]["diff"] > 0.12 and not covers_zero(m["raw"]) and m["raw"]["p"] < 0.05
        for view in ("matched", "adjusted"):
            assert abs(m[view]["diff"]) < 0.015, (name, view, m[view])
            assert covers_zero(m[view]) and m[view]["p"] > 0.05, (name, view, m[view])
    assert set(result["metrics"]["METEOR"]) == {"raw", "matched"}  # OLS only for the learned scores
    assert 0.5 < result["coverage"] < 1  # A's shortest replies have no B reply to match
    assert 0 < result["length_gap"] < 0.5  # within buckets B is still a little longer: what matching leaves


def test_a_real_gain_at_equal_lengths_keeps_its_difference():
    rng = np.random.default_rng(2)
    lengths = rng.integers(4, 16, 200)
    base = 0.03 * lengths + rng.normal(0, 0.02, 200)
    a = items(lengths, R3=base)
    b = items(lengths, R3=base + 0.1 + rng.normal(0, 0.02, 200))
    m = length_matched(a, b, resamples=300)["metrics"]["R3"]
    for view in ("raw", "matched", "adjusted"):
        assert m[view]["diff"] == pytest.approx(0.1, abs=0.01) and not covers_zero(m[view])


def test_bucket_weights_by_hand():
    # pooled lengths 1 x4, 5 x4: decile edges 1, 3, 5 -> buckets {1} and {5}
    a = items([1, 1, 1, 5], R3=[0, 1, 2, 10])
    b = items([1, 5, 5, 5], R3=[3, 11, 12, 16])
    result = length_matched(a, b)
    assert result["edges"] == [1, 3, 5] and result["coverage"] == 1 and result["length_gap"] == 0
    m = result["metrics"]["R3"]
    assert m["raw"]["diff"] == pytest.approx(42 / 4 - 13 / 4)
    assert m["matched"]["diff"] == pytest.approx(3 / 4 * (3 - 1) + 1 / 4 * (13 - 10))  # A's shares weigh
    assert m["raw"]["ci"] is None and m["matched"]["p"] is None  # no resamples: no interval
    # OLS by hand: score ~ 1 + system + length over the 8 items
    x = np.array([[1, s, n] for s, ls in ((0, [1, 1, 1, 5]), (1, [1, 5, 5, 5])) for n in ls], dtype=float)
    y = np.array([0, 1, 2, 10, 3, 11, 12, 16], dtype=float)
    assert m["adjusted"]["diff"] == pytest.approx(np.linalg.lstsq(x, y, rcond=None)[0][1])


def test_a_bucket_one_row_never_reaches_is_dropped_and_the_weights_renormalised():
    a = items([1, 1, 1, 5], R3=[0, 1, 2, 50])  # the 5-word reply: B has none that long
    b = items([1, 1, 1, 1], R3=[1, 2, 3, 4])
    result = length_matched(a, b)
    assert result["coverage"] == pytest.approx(3 / 4)
    assert result["metrics"]["R3"]["matched"]["diff"] == pytest.approx(10 / 4 - 1)  # bucket {1} alone


def test_pearson_by_hand():
    # dx = -1.5 -0.5 0.5 1.5, dy = -3 -1 0 4: r = 11 / sqrt(5 * 26)
    assert pearson([1, 2, 3, 4], [2, 4, 5, 9]) == pytest.approx(11 / math.sqrt(130))
    assert pearson([1, 2, 3], [7, 7, 7]) is None and pearson([1], [2]) is None
    summary = length_summary([reply(n) for n in (1, 2, 3, 4)], None, {"R3": [2, 4, 5, 9], "MAUDE-x": [1, 1, 1, 1]})
    assert summary["corr"] == {"R3": pytest.approx(11 / math.sqrt(130)), "MAUDE-x": None}
    assert summary["mean_words"] == 2.5 and summary["reference_mean_words"] is None and summary["ratio"] is None


@pytest.mark.parametrize("mean, alarm", [(16, "above the 1.5x alarm"), (4, "under the 0.5x alarm"),
                                         (12, None), (15, None), (5, None)])
def test_the_length_alarm_fires_outside_half_to_one_and_a_half_times_the_references(mean, alarm):
    summary = length_summary([reply(mean)] * 3, [reply(8), reply(12), reply(10)], {})
    assert summary["ratio"] == pytest.approx(mean / 10)
    warnings = length_warnings(summary)
    assert (warnings[0].count(alarm) == 1 and f"{mean / 10:.2f}x the references' 10.0" in warnings[0]) if alarm \
        else warnings == []
    assert length_warnings(length_summary([reply(mean)] * 3, None, {})) == []  # no references: nothing to compare


def test_the_report_carries_the_length_check_and_its_warning():
    ps = PredictionSet([reply(16), reply(16)], [reply(10), reply(10)])
    report = evaluate(ps, ("avg_len",), "sacrebleu", {}, None, 0.0, "cpu")
    assert report["length"] == {"mean_words": 16, "reference_mean_words": 10, "ratio": 1.6, "corr": {}}
    assert any("1.60x the references' 10.0, above the 1.5x alarm" in w for w in report["warnings"])


def write_report(tmp_path, name: str, row: dict) -> str:
    path = tmp_path / f"{name}.json"
    metrics = {"avg_len": float(np.mean([len(r.split()) for r in row["responses"]])), "BLEU": 0.1, "Dist-1": 0.5,
               **{k: float(np.mean(row[k])) for k in ("METEOR", "MAUDE-esim", "R3")}}
    path.write_text(json.dumps({"metrics": metrics, "counts": {"predictions": row["count"]}}))
    write_items(items_path(path), row)
    return str(path)


def test_compare_length_matched_prints_the_table_and_the_json(cli, tmp_path):
    a, b = length_only_rows()
    first, longer = write_report(tmp_path, "ce", a), write_report(tmp_path, "coral", b)
    table = cli("evaluate", "compare", first, longer, "--length-matched", "--bootstrap", "200")
    assert table.exit_code == 0, table.output
    assert "length-controlled" in table.stdout and "length-matched Δ" in table.stdout
    assert "coral  │ R3" in table.stdout and "adjusted" in table.stdout
    assert "not length-matched: BLEU, Dist-1" in " ".join(table.stdout.split())
    md = cli("evaluate", "compare", first, longer, "--length-matched", "--markdown")
    assert md.exit_code == 0 and "| report | metric | raw Δ | length-matched Δ | length-adjusted Δ |" in md.stdout
    r3 = next(line for line in md.stdout.splitlines() if line.startswith("| coral | R3 |"))
    assert r3.count("+0.1") == 1  # the raw difference; the controlled ones are near 0
    doc = json.loads(cli("evaluate", "compare", first, longer, "--length-matched", "--bootstrap", "200",
                         "--json").stdout)
    lm = doc["length_matched"]
    assert lm["resamples"] == 200 and lm["corpus_level"] == ["BLEU", "Dist-1"]
    vs = lm["vs_first"][0]
    assert vs["report"] == longer and vs["metrics"] == length_matched(a, b, 200, 0)["metrics"]
    assert covers_zero(vs["metrics"]["R3"]["adjusted"]) and not covers_zero(vs["metrics"]["R3"]["raw"])
    plain = json.loads(cli("evaluate", "compare", first, longer, "--json").stdout)
    assert "length_matched" not in plain


def test_compare_length_matched_needs_the_per_context_scores(cli, tmp_path):
    path = tmp_path / "bare.json"
    path.write_text(json.dumps({"metrics": {"avg_len": 3.0}}))
    result = cli("evaluate", "compare", str(path), str(path), "--length-matched")
    assert result.exit_code == 2 and "bare.items.json is missing" in result.stderr


def test_evaluate_shows_the_length_line_and_warns_on_stdout_and_stderr(cli, tmp_path):
    preds = tmp_path / "p.jsonl"
    preds.write_text("".join(json.dumps({"context": ["hi ?"], "reference": reply(10), "response": reply(n)}) + "\n"
                             for n in (16, 15, 17)))
    result = cli("evaluate", "-p", str(preds), "--metrics", "avg_len")
    assert result.exit_code == 0, result.output
    assert "length: 16.0 words, 1.60x the references' 10.0" in result.stdout
    assert "above the 1.5x alarm" in result.stderr and "above the 1.5x alarm" in result.stdout
