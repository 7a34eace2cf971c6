"""Paired bootstrap (`coral evaluate compare --bootstrap`): resampled corpus metrics equal the
metrics computed directly on the resampled corpus, a known difference is significant, identical
reports are not, and intervals contain the observed difference."""

from __future__ import annotations

import json

import numpy as np
import pytest

from coral_cli.metrics.bleu import VARIANTS, bleu_item_stats, bleu_scores
from coral_cli.metrics.bootstrap import (half_samples, items_path, metric_values, paired_bootstrap,
                                         with_replacement)
from coral_cli.metrics.lexical import distinct_n
from coral_cli.metrics.predictions import PredictionSet
from coral_cli.metrics.report import evaluate
from tests.test_evaluate import CONTEXTS, PREDS, REFS, write_predictions

HYPS = ["i am fine , thanks .", "it is five o'clock .", "yes , let us go .", "i am fine , thanks .", "no idea"]
GOLD = ["i am great , thanks .", "it's five o'clock now .", "no , i am tired .", "fine , and you ?", "no idea at all"]


def items_of(responses: list[str], references: list[str], variant: str = "sacrebleu") -> dict:
    report = evaluate(PredictionSet(list(responses), list(references)), ("avg_len", "bleu", "distinct"), variant,
                      {}, None, 0.0, "cpu")
    return report["items"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_a_resample_rebuilds_bleu_and_dist_of_the_resampled_corpus(variant):
    items = items_of(HYPS, GOLD, variant)
    draw = [0, 0, 3, 4, 4]  # context 0 and 4 twice, 1 and 2 not at all
    counts = np.bincount(draw, minlength=len(HYPS))[None, :].astype(float)
    corpus = [HYPS[i] for i in draw], [GOLD[i] for i in draw]
    assert metric_values(items, "BLEU", counts)[0] == pytest.approx(bleu_scores(*corpus, variant)[0]["BLEU"], abs=1e-12)
    for n in (1, 2):
        assert metric_values(items, f"Dist-{n}", counts)[0] == pytest.approx(distinct_n(corpus[0], n))
    assert metric_values(items, "avg_len", counts)[0] == pytest.approx(np.mean([len(h.split()) for h in corpus[0]]))
    assert len(bleu_item_stats(HYPS, GOLD, variant)) == len(HYPS)


def test_two_contexts_by_hand():
    """Per-context differences 0 and 1: a resample's mean difference is 0, 0.5 or 1 with
    probabilities 1/4, 1/2, 1/4, so P(d <= 0) = 1/4 and the two-sided p is 1/2."""
    a = {"count": 2, "MAUDE-X": [0.5, 0.5]}
    b = {"count": 2, "MAUDE-X": [0.5, 1.5]}
    t = paired_bootstrap(a, b, resamples=20000, seed=1)["MAUDE-X"]
    assert t["diff"] == pytest.approx(0.5) and t["ci"] == [0.0, 1.0]
    assert t["p"] == pytest.approx(0.5, abs=0.02) and not t["significant"]


def test_a_real_difference_is_significant_and_identical_reports_are_not():
    rng = np.random.default_rng(0)
    a = {"count": 200, "MAUDE-X": rng.uniform(0.2, 0.6, 200).tolist()}
    b = {"count": 200, "MAUDE-X": (np.array(a["MAUDE-X"]) + rng.normal(0.1, 0.05, 200)).tolist()}
    t = paired_bootstrap(a, b)["MAUDE-X"]
    assert t["significant"] and t["p"] < 0.001 and t["ci"][0] <= t["diff"] <= t["ci"][1] and t["ci"][0] > 0
    same = paired_bootstrap(a, a)["MAUDE-X"]
    assert same["diff"] == 0 and same["ci"] == [0.0, 0.0] and same["p"] == 1.0 and not same["significant"]


def test_intervals_contain_the_observed_difference_on_every_metric():
    other = ["i am fine .", "it is five .", "let us go now .", "fine , thanks .", "no idea at all"]
    tests = paired_bootstrap(items_of(HYPS, GOLD), items_of(other, GOLD), resamples=500)
    assert set(tests) == {"avg_len", "BLEU", "Dist-1", "Dist-2"}
    for name, t in tests.items():
        assert t["ci"][0] <= t["diff"] <= t["ci"][1], name


def test_dist_intervals_contain_the_observed_difference_when_every_word_is_new():
    """A's replies never share a word (Dist-1 1.0 on any set of contexts), B's say one word twice
    (0.5 on any set): the difference is -0.5 on every subset. Resampling with replacement would
    draw contexts twice, count their words twice in the totals and once in the distinct counts,
    and put the whole interval near -0.36, away from the observed difference."""
    n = 60
    a = items_of([f"a{i} b{i}" for i in range(n)], [f"r{i}" for i in range(n)])
    b = items_of([f"x{i} x{i}" for i in range(n)], [f"r{i}" for i in range(n)])
    t = paired_bootstrap(a, b, resamples=300, metrics=["Dist-1"])["Dist-1"]
    assert t["diff"] == pytest.approx(-0.5)
    assert t["ci"][0] == pytest.approx(-0.5) and t["ci"][1] == pytest.approx(-0.5) and t["significant"]


def test_half_samples_have_the_spread_of_the_bootstrap_on_a_mean():
    """For a mean, half-sampling (scaled) and resampling with replacement estimate the same
    standard error, sd / sqrt(n); only Dist-n uses the half-samples."""
    rng = np.random.default_rng(3)
    for n in (101, 400):
        x = rng.exponential(size=n)
        halves, scale = half_samples(n, 4000, rng)
        assert (halves.sum(1) == n // 2).all() and set(np.unique(halves)) == {0.0, 1.0}
        half_sd = scale * np.std(halves @ x / (n // 2))
        boot_sd = np.std(with_replacement(n, 4000, rng) @ x / n)
        assert half_sd == pytest.approx(boot_sd, rel=0.06)
        assert half_sd == pytest.approx(np.std(x) / np.sqrt(n), rel=0.06)


def test_reports_of_different_contexts_are_refused():
    from coral_cli.errors import CoralError

    with pytest.raises(CoralError, match="do not score the same contexts"):
        paired_bootstrap(items_of(HYPS, GOLD), items_of(HYPS[:4], GOLD[:4]))


def test_compare_bootstrap_on_evaluate_reports(cli, tmp_path):
    reports = []
    for name, preds in (("a", PREDS), ("b", ["i am fine , thanks .", "five .", "no , i am tired ."])):
        path = write_predictions(tmp_path, preds, REFS, name=f"{name}.jsonl")
        out = tmp_path / f"{name}-eval.json"
        result = cli("evaluate", "-p", str(path), "--metrics", "avg_len,bleu,distinct", "--out", str(out), "--json")
        assert result.exit_code == 0, result.output
        assert "items" not in json.loads(out.read_text())  # the summary stays small
        assert json.loads(items_path(out).read_text())["count"] == len(CONTEXTS)
        reports.append(str(out))
    result = cli("evaluate", "compare", *reports, "--bootstrap", "200", "--json")
    assert result.exit_code == 0, result.output
    tests = json.loads(result.stdout)["bootstrap"]["vs_first"][0]["tests"]
    assert set(tests) == {"avg_len", "BLEU", "Dist-1", "Dist-2"}
    assert tests["avg_len"]["diff"] == pytest.approx((6 + 2 + 6) / 3 - (6 + 5 + 6) / 3)  # words per reply
    md = cli("evaluate", "compare", *reports, "--bootstrap", "200", "--markdown")
    assert md.exit_code == 0 and "paired-bootstrap interval" in md.stdout and " p" in md.stdout
    items_path(reports[1]).unlink()
    missing = cli("evaluate", "compare", *reports, "--bootstrap", "200")
    assert missing.exit_code == 2 and "b-eval.items.json is missing" in missing.output and "Traceback" not in missing.output
