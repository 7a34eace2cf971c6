"""The hf-classifier reward (a Hugging Face sequence classifier as f_R, e.g. DialogRPT) and
`coral generate --rerank-with` (the paper's DialogRPT row: candidates reranked by f_R)."""

from __future__ import annotations

import json

import pytest
import torch

from coral_cli.errors import AssetError
from coral_cli.registry import REWARDS
from coral_plugins.rewards.hf_classifier import HFClassifierReward

CONTEXTS = [["hello there", "how are you ?"], ["what time is it ?"], ["bye"]]
RESPONSES = ["fine , thanks", "noon", "see you later , friend"]


@pytest.fixture(scope="module", autouse=True)
def _plugin():
    """Register the plugin when the installed entry points predate it (an old editable install)."""
    if "hf-classifier" not in REWARDS.names():
        REWARDS.register("hf-classifier", HFClassifierReward)


def _classifier_folder(folder, num_labels: int):
    """A tiny GPT2ForSequenceClassification + the bundled BERT tokenizer ([SEP] joins turns)."""
    from transformers import GPT2Config, GPT2ForSequenceClassification

    from coral_cli.tokenizer import load_tokenizer

    tok = load_tokenizer("bundled")
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(tok), n_embd=16, n_layer=1, n_head=2, n_positions=64,
                        num_labels=num_labels, pad_token_id=tok.pad_token_id)
    model = GPT2ForSequenceClassification(config).eval()
    model.save_pretrained(str(folder))
    tok.save_pretrained(str(folder))
    return model, tok


@pytest.fixture(scope="module")
def clf(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clf") / "dialogrpt-tiny"
    model, tok = _classifier_folder(folder, 1)
    return folder, model, tok


def _by_hand(model, tok, context, response, num_labels=1):
    ids = tok(" [SEP] ".join(context + [response]), return_tensors="pt").input_ids  # [CLS] c1 [SEP] c2 [SEP] r [SEP]
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0]
    return torch.sigmoid(logits[0]).item() if num_labels == 1 else torch.softmax(logits, -1)[1].item()


def test_plain_hf_folder_loads_and_scores_like_the_model_itself(clf):
    from coral_cli.rewards.checkpoint import load_reward

    folder, model, tok = clf
    reward = load_reward(folder)
    assert isinstance(reward, HFClassifierReward)
    scores = reward.score(CONTEXTS, RESPONSES)  # one padded batch
    assert scores.shape == (3,) and ((scores > 0) & (scores < 1)).all()
    expected = [_by_hand(model, tok, c, r) for c, r in zip(CONTEXTS, RESPONSES)]
    assert scores.tolist() == pytest.approx(expected, abs=1e-5)


def test_two_label_classifier_scores_softmax_of_label_one(tmp_path):
    from coral_cli.rewards.checkpoint import load_reward

    model, tok = _classifier_folder(tmp_path / "two", 2)
    scores = load_reward(tmp_path / "two").score(CONTEXTS, RESPONSES)
    expected = [_by_hand(model, tok, c, r, 2) for c, r in zip(CONTEXTS, RESPONSES)]
    assert scores.tolist() == pytest.approx(expected, abs=1e-5)


def test_context_is_cut_from_the_left(clf):
    from coral_cli.rewards.checkpoint import load_reward

    folder, model, tok = clf
    reward = load_reward(folder)
    reward.cfg.max_context_tokens = 4  # "how are you ?" only
    assert reward.score([CONTEXTS[0]], [RESPONSES[0]]).item() == pytest.approx(
        _by_hand(model, tok, ["how are you ?"], RESPONSES[0]), abs=1e-5)


def test_coral_checkpoint_round_trip_and_build_from_config(clf, tmp_path):
    from coral_cli.config import resolve
    from coral_cli.rewards.checkpoint import build_reward, load_reward, save_reward

    folder, _, _ = clf
    cfg = resolve(None, {"retriever.model": "hf-classifier", "retriever.backbone": str(folder)}).retriever
    built = build_reward(cfg, "bundled").eval()
    before = built.score(CONTEXTS, RESPONSES)
    save_reward(built, tmp_path / "ckpt")
    after = load_reward(tmp_path / "ckpt").score(CONTEXTS, RESPONSES)
    assert after.tolist() == pytest.approx(before.tolist(), abs=1e-6)


def test_offline_hub_name_is_a_clear_error(monkeypatch):
    from coral_cli.config import resolve
    from coral_cli.rewards.checkpoint import build_reward

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg = resolve(None, {"retriever.model": "hf-classifier", "retriever.backbone": "nobody-xyz/no-such-dialogrpt"}).retriever
    with pytest.raises(AssetError, match="no internet") as info:
        build_reward(cfg, "bundled")
    assert "local folder" in info.value.hint


def test_a_ranker_given_by_hub_name_offline_is_a_clear_error(monkeypatch, tmp_path):
    """`--rerank-with microsoft/DialogRPT-updown` (and a table's rerank_with) download the hub
    classifier for users with internet; offline it is one message, while a local folder of that
    shape is still read as a folder."""
    from coral_cli.rewards.checkpoint import hub_folder, load_reward

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(AssetError, match="cannot download nobody-xyz/no-such-dialogrpt: no internet") as info:
        load_reward("nobody-xyz/no-such-dialogrpt")
    assert "local folder" in info.value.hint
    monkeypatch.chdir(tmp_path)
    (tmp_path / "org" / "name").mkdir(parents=True)
    assert hub_folder("org/name") == tmp_path.joinpath("org", "name").relative_to(tmp_path)
    assert str(hub_folder("runs/x")) == "runs/x"  # our own paths are never downloaded (offline: no error)


def test_rerank_keeps_the_argmax():
    from coral_cli.generation.responses import rerank
    from coral_cli.tokenizer import load_tokenizer
    from tests.fixed_rewards import ResponseTokenReward, make

    reward = make(ResponseTokenReward, "test-question-reward", load_tokenizer("bundled"))  # '?' -> 0.9, else 0.1
    results = [{"responses": ["ok", "why ?", "no"], "logprobs": [-1.0, -2.0, -3.0]},
               {"responses": ["what ?", "fine"], "logprobs": [-1.0, -1.5]},
               {"responses": ["a", "b"], "logprobs": [-1.0, -1.5]}]
    out = rerank(results, [["hi"], ["hey"], ["yo"]], reward, "fixed")
    assert [r["best"] for r in out] == [1, 0, 0]  # ties keep the first
    assert out[0]["scores"] == pytest.approx([0.1, 0.9, 0.1])
    assert out[0]["responses"] == results[0]["responses"] and out[0]["reranked_by"] == "fixed"


def test_generate_rerank_with_writes_scores_and_keeps_the_best(cli, tmp_path, generator_ckpt, clf):
    folder, _, _ = clf
    contexts = tmp_path / "c.jsonl"
    contexts.write_text('{"context": ["hi there"]}\n{"context": ["how are you ?", "fine"]}\n', encoding="utf-8")
    out = tmp_path / "gen.jsonl"
    result = cli("generate", "-c", str(generator_ckpt), "--input", str(contexts), "--out", str(out), "-n", "3",
                 "--strategy", "nucleus", "--max-new-tokens", "4", "--rerank-with", str(folder))
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 2
    for row in rows:
        assert len(row["responses"]) == len(row["scores"]) == 3 and row["reranked_by"] == str(folder)
        assert row["response"] == row["responses"][max(range(3), key=row["scores"].__getitem__)]
    assert json.loads((tmp_path / "gen.jsonl.config.json").read_text())["reranked_by"] == str(folder)


def test_rerank_with_one_candidate_is_a_clear_error(cli, tmp_path, generator_ckpt, clf):
    result = cli("generate", "-c", str(generator_ckpt), "--input", "-", "-n", "1", "--rerank-with", str(clf[0]),
                 input='{"context": ["hi"]}\n')
    assert result.exit_code == 2, result.output
    assert "--rerank-with needs several candidates" in result.output and "fix:" in result.output
    assert "Traceback" not in result.output
