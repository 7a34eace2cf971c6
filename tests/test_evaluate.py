import json

import pytest
from nltk.translate.meteor_score import meteor_score
from sacrebleu.metrics import BLEU

from coral_cli.metrics.bleu import bleu_scores
from coral_cli.metrics.lexical import average_length, distinct_n
from coral_cli.metrics.meteor import load_wordnet, meteor
from coral_cli.metrics.report import REPORT_KEYS
from coral_cli.rewards import build_reward, save_reward
from tests.tiny import tiny_config

PREDS = ["i am fine , thanks .", "it is five o'clock .", "yes , let us go ."]
REFS = ["I am great , thanks .", "It's five o'clock now .", "No , I am tired ."]
CONTEXTS = [["how are you ?"], ["what time is it ?"], ["shall we go ?"]]


def write_predictions(tmp_path, preds=PREDS, refs=REFS, name="preds.jsonl", samples=None):
    path = tmp_path / name
    rows = [{"id": i, "context": c, "reference": r, "response": p, "responses": (samples[i] if samples else [p])}
            for i, (c, r, p) in enumerate(zip(CONTEXTS, refs, preds))]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_length_and_distinct_by_hand():
    responses = ["a b a", "a c"]
    assert average_length(responses) == 2.5
    assert distinct_n(responses, 1) == pytest.approx(3 / 5)  # a, b, c over 5 tokens
    assert distinct_n(responses, 2) == pytest.approx(3 / 3)  # (a b) (b a) (a c)
    assert distinct_n(["a a a a"], 2) == pytest.approx(1 / 3)
    assert distinct_n(["x"], 2) == 0.0


def test_bleu_variants_match_the_libraries():
    scores, settings = bleu_scores(PREDS, REFS, "sacrebleu")
    metric = BLEU(lowercase=True, force=True)
    direct = metric.corpus_score(PREDS, [REFS])
    assert scores["BLEU"] == pytest.approx(direct.score / 100)
    assert settings["signature"] == str(metric.get_signature()) and "case:lc" in settings["signature"]
    assert scores["BLEU-1"] == pytest.approx(BLEU(max_ngram_order=1, lowercase=True, force=True).corpus_score(PREDS, [REFS]).score / 100)
    from nltk.translate.bleu_score import SmoothingFunction, corpus_bleu

    nltk_direct = corpus_bleu([[r.lower().split()] for r in REFS], [p.lower().split() for p in PREDS],
                              smoothing_function=SmoothingFunction().method1)
    assert bleu_scores(PREDS, REFS, "nltk-corpus")[0]["BLEU"] == pytest.approx(nltk_direct)
    for variant in ("sacrebleu", "nltk-corpus", "nltk-sentence"):
        assert bleu_scores(REFS, REFS, variant)[0]["BLEU"] == pytest.approx(1.0)


@pytest.mark.slow
def test_meteor_matches_nltk_with_real_wordnet():
    wn = load_wordnet()
    assert wn.get_version() == "3.0" and wn.synsets("dog")
    value, settings = meteor(PREDS[:1], REFS[:1])
    assert value == pytest.approx(meteor_score([REFS[0].lower().split()], PREDS[0].lower().split(), wordnet=wn))
    assert 0 < value < 1 and settings["wordnet_version"] == "3.0"
    # synonyms count through WordNet: 'great' ~ 'fine' is not exact, but a stem/synonym match helps
    assert meteor(["the dog runs"], ["the dog runs"])[0] > 0.9


def test_json_report_has_exactly_the_documented_keys(cli, tmp_path):
    path = write_predictions(tmp_path, samples=[[p, p + " ok"] for p in PREDS])
    result = cli("evaluate", "-p", str(path), "--json", "--metrics", "avg_len,bleu,meteor,distinct,self-bleu")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)  # stdout is the JSON document and nothing else
    assert tuple(report) == REPORT_KEYS
    assert set(report["metrics"]) == {"avg_len", "Dist-1", "Dist-2", "BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "BLEU",
                                      "METEOR", "self-BLEU"}
    assert report["settings"]["bleu"]["variant"] == "sacrebleu" and "tok:13a" in report["settings"]["bleu"]["signature"]
    assert report["counts"] == {"predictions": 3, "with_reference": 3, "with_context": 3, "samples_per_context": 2}
    assert report["versions"]["sacrebleu"] and report["versions"]["nltk"]


def test_gates_and_exit_codes(cli, tmp_path):
    path = write_predictions(tmp_path)
    base = ["evaluate", "-p", str(path), "--metrics", "avg_len,distinct", "--json"]
    assert cli(*base, "--fail-under", "avg_len=3,Dist-1=0.5").exit_code == 0
    failed = cli(*base, "--fail-under", "avg_len=10", "--fail-over", "Dist-2=0.5")
    assert failed.exit_code == 1
    assert "gate failed: avg_len" in failed.stderr and "gate failed: Dist-2" in failed.stderr
    gates = json.loads(failed.stdout)["gates"]
    assert [(g["metric"], g["passed"]) for g in gates] == [("avg_len", False), ("Dist-2", False)]
    unknown = cli(*base, "--fail-under", "BLUE=0.1")
    assert unknown.exit_code == 2 and "gate on unknown metric 'BLUE'" in unknown.stderr


def test_bad_input_is_exit_2_naming_the_line(cli, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"response": "ok", "reference": "ok"}\n{"reference": "x"}\n')
    result = cli("evaluate", "-p", str(bad))
    assert result.exit_code == 2 and "bad.jsonl:2: no 'response'" in result.stderr
    preds, refs = tmp_path / "p.txt", tmp_path / "r.txt"
    preds.write_text("a\nb\nc\n")
    refs.write_text("a\nb\n")
    result = cli("evaluate", "-p", str(preds), "--references", str(refs))
    assert result.exit_code == 2 and "r.txt has 2 references but there are 3 predictions" in result.stderr
    assert cli("evaluate", "-p", str(preds), "--metrics", "bleu").exit_code == 2  # BLEU needs references
    alone = cli("evaluate", "-p", str(preds), "--json")  # by default: what the inputs allow
    assert alone.exit_code == 0 and set(json.loads(alone.stdout)["metrics"]) == {"avg_len", "Dist-1", "Dist-2"}


def test_text_files_ground_truth_row_maude_and_compare(cli, tmp_path):
    preds, refs, ctxs = tmp_path / "p.txt", tmp_path / "r.txt", tmp_path / "c.txt"
    preds.write_text("\n".join(PREDS) + "\n")
    refs.write_text("\n".join(REFS) + "\n")
    ctxs.write_text("\n".join(" [SEP] ".join(c) for c in CONTEXTS) + "\n")
    ckpt = tmp_path / "esim"
    save_reward(build_reward(tiny_config("esim").retriever, "bundled").eval(), ckpt)
    args = ["evaluate", "-p", str(preds), "--references", str(refs), "--contexts", str(ctxs), "--evaluator",
            f"esim={ckpt}", "--reward-checkpoint", str(ckpt), "--margin", "0.2", "--json", "--metrics",
            "avg_len,bleu,distinct,maude,r3"]
    model = cli(*args)
    assert model.exit_code == 0, model.output
    report = json.loads(model.stdout)
    assert 0 < report["metrics"]["MAUDE-esim"] < 1
    assert report["metrics"]["R3"] == pytest.approx(report["metrics"]["MAUDE-esim"] - 0.2)
    assert report["settings"]["evaluators"]["esim"]["model"] == "esim"
    assert any("training reward" in w for w in report["warnings"]) and "warning:" in model.stderr
    truth = cli(*args, "--references-as-predictions")
    truth_report = json.loads(truth.stdout)
    assert truth_report["metrics"]["BLEU"] == pytest.approx(1.0)
    assert truth_report["metrics"]["avg_len"] == pytest.approx(average_length(REFS))
    (tmp_path / "model.json").write_text(model.stdout)
    assert cli(*args, "--references-as-predictions", "--out", str(tmp_path / "truth.json")).exit_code == 0
    assert json.loads((tmp_path / "truth.json").read_text())["metrics"] == truth_report["metrics"]
    md = cli("evaluate", "compare", str(tmp_path / "model.json"), str(tmp_path / "truth.json"), "--markdown")
    assert md.exit_code == 0, md.output
    line = next(x for x in md.stdout.splitlines() if x.startswith("| BLEU |"))
    assert "(+" in line and md.stdout.startswith("| metric | model | truth |")
    assert cli("evaluate", "compare", str(tmp_path / "model.json")).exit_code == 0
    assert cli("evaluate", "compare", str(preds)).exit_code == 2


def test_self_bleu_on_one_sample_per_context_is_an_error_not_silence(cli, tmp_path):
    path = write_predictions(tmp_path)  # one reply per context
    asked = cli("evaluate", "-p", str(path), "--metrics", "avg_len,self-bleu", "--json")
    assert asked.exit_code == 2 and "self-BLEU needs several samples per context" in asked.stderr
    assert "fix:" in asked.stderr and "Traceback" not in asked.output
    default = cli("evaluate", "-p", str(path), "--json")  # by default: only what the inputs allow
    assert default.exit_code == 0 and "self-BLEU" not in json.loads(default.stdout)["metrics"]
    several = write_predictions(tmp_path, name="n.jsonl", samples=[[p, p + " ok"] for p in PREDS])
    assert "self-BLEU" in json.loads(cli("evaluate", "-p", str(several), "--json").stdout)["metrics"]


def test_compare_warns_when_reports_score_different_contexts(cli, tmp_path):
    def report(name, refs, preds=PREDS):
        out = tmp_path / f"{name}.json"
        path = write_predictions(tmp_path, preds, refs, name=f"{name}.jsonl")
        assert cli("evaluate", "-p", str(path), "--metrics", "avg_len,bleu", "--out", str(out), "--json").exit_code == 0
        return str(out)

    a, same = report("a", REFS), report("same", REFS, ["i am fine .", "five .", "let us go ."])
    other = report("other", ["No idea .", "Ten .", "Maybe later ."])
    assert json.loads(open(a).read())["source"]["test_set_sha1"] == json.loads(open(same).read())["source"]["test_set_sha1"]
    quiet = cli("evaluate", "compare", a, same)
    assert quiet.exit_code == 0 and "warning" not in quiet.stderr
    loud = cli("evaluate", "compare", a, other, same, "--markdown")
    assert loud.exit_code == 0 and loud.stderr.count("warning:") == 1
    assert "other.json and" in loud.stderr and "score different test contexts" in loud.stderr
    small = json.loads(open(a).read())
    small["counts"]["predictions"] = 2
    (tmp_path / "small.json").write_text(json.dumps(small))
    assert "3 vs 2 predictions" in cli("evaluate", "compare", a, str(tmp_path / "small.json")).stderr


def test_report_correlates_reply_length_with_each_learned_score(cli, tmp_path):
    """report["length"]: r(length, score) over the contexts for R3 and each MAUDE evaluator, by hand
    from the per-context scores of the .items.json; the ratio to the references' mean length."""
    preds = ["yes .", "it is five o'clock now , i think , or later .", "no , i am tired of walking today ."]
    path = write_predictions(tmp_path, preds)
    ckpt = tmp_path / "esim"
    save_reward(build_reward(tiny_config("esim").retriever, "bundled").eval(), ckpt)
    out = tmp_path / "report.json"
    result = cli("evaluate", "-p", str(path), "--evaluator", f"esim={ckpt}", "--reward-checkpoint", str(ckpt),
                 "--metrics", "avg_len,maude,r3", "--out", str(out))
    assert result.exit_code == 0, result.output
    length = json.loads(out.read_text())["length"]
    items = json.loads((tmp_path / "report.items.json").read_text())
    lengths = [len(p.split()) for p in preds]
    for name in ("MAUDE-esim", "R3"):
        scores = items[name]
        mx, my = sum(lengths) / 3, sum(scores) / 3
        cov = sum((x - mx) * (y - my) for x, y in zip(lengths, scores))
        var = sum((x - mx) ** 2 for x in lengths) * sum((y - my) ** 2 for y in scores)
        assert length["corr"][name] == pytest.approx(cov / var ** 0.5)
    assert length["mean_words"] == pytest.approx(23 / 3) and length["reference_mean_words"] == pytest.approx(17 / 3)
    assert length["ratio"] == pytest.approx(23 / 17)  # 2 + 12 + 9 words vs 6 + 5 + 6
    assert "r(length, score): MAUDE-esim" in " ".join(result.stdout.split())
