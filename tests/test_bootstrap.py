"""Paired tests (`coral evaluate compare --bootstrap`): resampled corpus metrics equal the
metrics computed directly on the resampled corpus, a known difference is significant, identical
reports are not, p-values are never 0, and 95 % intervals cover the true difference 90-99 % of the
time on rows drawn from a known distribution, also when training seeds are pooled."""

from __future__ import annotations

import json

import numpy as np
import pytest

from coral_cli.metrics.bleu import VARIANTS, bleu_item_stats, bleu_scores
from coral_cli.metrics.bootstrap import (items_path, metric_values, paired_bootstrap, pool_items,
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
    assert t["p"] == pytest.approx(2 / 1001)  # no resample on the far side of 0: (1 + 0) / (1 + R), twice
    assert t["significant"] and t["ci"][0] <= t["diff"] <= t["ci"][1] and t["ci"][0] > 0
    same = paired_bootstrap(a, a)["MAUDE-X"]
    assert same["diff"] == 0 and same["ci"] == [0.0, 0.0] and same["p"] == 1.0 and not same["significant"]


def test_intervals_contain_the_observed_difference_on_every_metric_with_one():
    other = ["i am fine .", "it is five .", "let us go now .", "fine , thanks .", "no idea at all"]
    tests = paired_bootstrap(items_of(HYPS, GOLD), items_of(other, GOLD), resamples=500)
    assert set(tests) == {"avg_len", "BLEU", "Dist-1", "Dist-2"}
    for name in ("avg_len", "BLEU"):
        assert tests[name]["ci"][0] <= tests[name]["diff"] <= tests[name]["ci"][1], name
    assert [tests[m]["p_from"] for m in tests] == ["bootstrap", "randomisation", "randomisation", "randomisation"]
    assert all(0 < t["p"] <= 1 for t in tests.values())


def test_dist_has_no_interval_and_a_randomisation_p_value_when_every_word_is_new():
    """A's replies never share a word (Dist-1 1.0 on any set of replies), B's say one word twice
    (0.5): d = -0.5. A round that gives j of A's replies to A* has d* = (n - 2j) / 2n, as far from 0
    as d only when j = 0 or n (chance 2 / 2^60): p = (1 + 0) / (1 + R), the smallest possible."""
    n = 60
    a = items_of([f"a{i} b{i}" for i in range(n)], [f"r{i}" for i in range(n)])
    b = items_of([f"x{i} x{i}" for i in range(n)], [f"r{i}" for i in range(n)])
    t = paired_bootstrap(a, b, resamples=300, metrics=["Dist-1"])["Dist-1"]
    assert t["diff"] == pytest.approx(-0.5) and t["ci"] is None and t["p_from"] == "randomisation"
    assert t["p"] == pytest.approx(1 / 301) and t["significant"]
    same = paired_bootstrap(a, a, resamples=100)
    assert all(same[m]["p"] == 1.0 and not same[m]["significant"] for m in ("BLEU", "Dist-1", "Dist-2"))
    assert same["BLEU"]["p_from"] == "randomisation" and same["BLEU"]["ci"] == [0.0, 0.0]


def test_fewer_than_100_resamples_are_refused():
    from coral_cli.errors import ConfigError

    with pytest.raises(ConfigError, match="1 resamples are too few"):
        paired_bootstrap(items_of(HYPS, GOLD), items_of(HYPS, GOLD), resamples=1)


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
    bleu = next(x for x in md.stdout.splitlines() if x.startswith("| BLEU |"))
    assert "(AR)" in bleu and "p=0.000" not in bleu and "approximate randomisation" in md.stdout
    one = cli("evaluate", "compare", *reports, "--bootstrap", "1")
    assert one.exit_code == 2 and "--bootstrap 1 is too few resamples" in one.stderr and "fix:" in one.stderr
    assert "95 %" not in one.stdout
    items_path(reports[1]).unlink()
    missing = cli("evaluate", "compare", *reports, "--bootstrap", "200")
    assert missing.exit_code == 2 and "b-eval.items.json is missing" in missing.output and "Traceback" not in missing.output


def _bleu_stats(rng: np.random.Generator, shape: tuple[int, ...], match: float) -> np.ndarray:
    """nltk-corpus BLEU statistics [hyp_len, ref_len, 4 matches, 4 totals] of replies of 4-9
    words whose k-grams each match the reference with chance match ** k."""
    hyp, ref = rng.integers(4, 10, shape), rng.integers(4, 10, shape)
    totals = np.maximum(hyp[..., None] - np.arange(4), 0)
    matches = rng.binomial(totals, match ** np.arange(1, 5))
    return np.concatenate([hyp[..., None], ref[..., None], matches, totals], axis=-1).astype(float)


def _corpus_bleu(stats: np.ndarray) -> np.ndarray:
    from coral_cli.metrics.bleu import bleu_from_stats

    sums = stats.sum(-2)
    return np.array([bleu_from_stats(s, "nltk-corpus", stats.shape[-2]) for s in sums.reshape(-1, 10)])


def test_intervals_cover_the_true_difference_of_a_mean_and_of_bleu():
    """200 datasets of 30 contexts from a known distribution: MAUDE-X = a context effect shared by
    both rows + noise, B 0.05 higher; BLEU statistics with k-gram match chances 0.5^k and 0.55^k.
    The true BLEU difference on 30 contexts is a Monte-Carlo mean over 20 000 corpora."""
    rng = np.random.default_rng(7)
    n, datasets = 30, 200
    true_bleu = float(np.mean(_corpus_bleu(_bleu_stats(rng, (20000, n), 0.55)))
                      - np.mean(_corpus_bleu(_bleu_stats(rng, (20000, n), 0.5))))
    covered = {"MAUDE-X": 0, "BLEU": 0}
    for k in range(datasets):
        shared = rng.normal(0.5, 0.2, n)
        a = {"count": n, "MAUDE-X": (shared + rng.normal(0, 0.1, n)).tolist(),
             "bleu": {"variant": "nltk-corpus", "stats": _bleu_stats(rng, (n,), 0.5).tolist()}}
        b = {"count": n, "MAUDE-X": (shared + 0.05 + rng.normal(0, 0.1, n)).tolist(),
             "bleu": {"variant": "nltk-corpus", "stats": _bleu_stats(rng, (n,), 0.55).tolist()}}
        tests = paired_bootstrap(a, b, resamples=200, seed=k)
        for name, truth in (("MAUDE-X", 0.05), ("BLEU", true_bleu)):
            covered[name] += tests[name]["ci"][0] <= truth <= tests[name]["ci"][1]
    for name, hits in covered.items():
        assert 0.90 <= hits / datasets <= 0.99, (name, hits / datasets)


def test_pooled_seeds_intervals_cover_the_true_difference():
    """Each row trained with 10 seeds: MAUDE-X = row mean + a seed effect (sd 0.05) + a context
    effect shared by both rows + noise (sd 0.15). The seed effects are most of the variance of
    the difference, so resampling contexts alone covers about 60 % of the time; resampling seeds
    as well must cover 90-99 %."""
    rng = np.random.default_rng(11)
    n, k, datasets = 40, 10, 200
    covered = 0
    for d in range(datasets):
        shared = rng.normal(0.5, 0.3, n)

        def row(mean: float) -> dict:
            seeds = rng.normal(0, 0.05, k)
            return pool_items([{"count": n, "MAUDE-X": (mean + s + shared + rng.normal(0, 0.15, n)).tolist()}
                               for s in seeds])

        t = paired_bootstrap(row(0.0), row(0.1), resamples=200, seed=d)["MAUDE-X"]
        covered += t["ci"][0] <= 0.1 <= t["ci"][1]
        assert t["seeds"] == [k, k]
    assert 0.90 <= covered / datasets <= 0.99, covered / datasets


def test_randomisation_p_values_reject_a_true_null_about_5_percent_of_the_time():
    """Both rows' replies drawn from one Zipf-like vocabulary: Dist-1 and BLEU differ only by
    chance, so p < 0.05 should happen in about 5 % of 200 datasets (1-10 % allowed)."""
    rng = np.random.default_rng(5)
    vocab = 1 / np.arange(1, 41) ** 1.1
    vocab /= vocab.sum()
    n, datasets = 20, 200

    def replies() -> list[str]:
        return [" ".join(f"w{w}" for w in rng.choice(40, size=rng.integers(2, 7), p=vocab)) for _ in range(n)]

    rejected = {"Dist-1": 0, "BLEU": 0}
    for d in range(datasets):
        a = {"count": n, "responses": replies(), "bleu": {"variant": "nltk-corpus", "stats": _bleu_stats(rng, (n,), 0.5).tolist()}}
        b = {"count": n, "responses": replies(), "bleu": {"variant": "nltk-corpus", "stats": _bleu_stats(rng, (n,), 0.5).tolist()}}
        tests = paired_bootstrap(a, b, resamples=100, seed=d, metrics=["Dist-1", "BLEU"])
        for name in rejected:
            rejected[name] += tests[name]["p"] < 0.05
    for name, hits in rejected.items():
        assert 0.01 <= hits / datasets <= 0.10, (name, hits / datasets)
