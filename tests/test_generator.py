import json
import math

import numpy as np
import pytest
import torch

from coral_cli.config import resolve
from coral_cli.config.schema import GenerateConfig
from coral_cli.data.encode import encode_pairs
from coral_cli.data.sources import load_pairs
from coral_cli.errors import AssetError
from coral_cli.generation.responses import generate_for_contexts
from coral_cli.generator.bart.model import build_generator, load_generator
from coral_cli.generator.core.batch import TrainBatch
from coral_cli.generator.core.policy import Seq2SeqPolicy
from coral_cli.objectives.cross_entropy import CrossEntropy
from coral_cli.tokenizer import load_tokenizer, wordpiece_text
from tests.tiny_generator import full_and_resumed, write_recipe

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer("bundled")


@pytest.fixture(scope="module")
def trained(overfit_generator):
    return overfit_generator


def test_ce_loss_equals_hand_computed_nll(tok):
    torch.manual_seed(0)
    cfg = resolve(None, {"generator.encoder_layers": 1, "generator.decoder_layers": 1, "generator.d_model": 16,
                         "generator.heads": 2, "generator.ffn_dim": 32, "generator.dropout": 0.0})
    model = build_generator(cfg.generator, tok).eval()
    policy = Seq2SeqPolicy(model, tok)
    batch, ids, mask = policy.ground_truth([[2000, 2001], [2002]], [[2003, 2004, 2005], [2006]], CPU)
    loss, stats = CrossEntropy(policy)(model, TrainBatch(batch, ids, mask, [], [], np.zeros(0), np.random.default_rng(0)))
    logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                   decoder_input_ids=batch.decoder_input_ids).logits
    targets = [[2003, 2004, 2005, 102], [2006, 102]]  # responses then [SEP]
    nll = []
    for b, row in enumerate(targets):
        for t, token in enumerate(row):
            z = logits[b, t]
            nll.append(-(z[token] - torch.logsumexp(z, 0)).item())
    assert loss.item() == pytest.approx(sum(nll) / len(nll), rel=1e-5)
    assert stats["target_tokens"].item() == 6
    assert batch.decoder_input_ids.tolist() == [[101, 2003, 2004, 2005], [101, 2006, 0, 0]]


@pytest.mark.slow
def test_tiny_model_overfits_32_pairs_and_greedy_reproduces_a_response(trained, tok):
    cfg, run, state, losses = trained
    assert state.step == 240
    assert losses[-1] < losses[0] / 10, losses
    model, tok2, meta = load_generator(run.checkpoint("last"))
    assert meta["format"] == "coral-generator" and meta["data"]["max_context_tokens"] == 48
    enc = encode_pairs(load_pairs(cfg.data, "train"), tok, cfg.data)
    out = generate_for_contexts(Seq2SeqPolicy(model, tok2), enc["context_ids"][:8], GenerateConfig(strategy="greedy", max_new_tokens=30))
    refs = [wordpiece_text(tok, r) for r in enc["response_ids"][:8]]
    exact = [o["responses"][0] for o, r in zip(out, refs) if o["responses"][0] == r]
    assert len(exact) >= 4, list(zip([o["responses"][0] for o in out], refs))


@pytest.mark.slow
def test_checkpoint_is_plain_hugging_face_format(trained):
    from transformers import BartForConditionalGeneration

    _, run, _, _ = trained
    model = BartForConditionalGeneration.from_pretrained(str(run.checkpoint("best")))
    assert model.config.d_model == 64 and model.config.eos_token_id == 102


@pytest.mark.slow
def test_generation_is_seeded_in_order_and_bounded(trained, tok):
    _, run, _, _ = trained
    model, tok, _ = load_generator(run.checkpoint("last"))
    contexts = [[2129, 2024, 2017, 1029], [7592], [2054, 2003, 2115, 2171, 1029, 102, 2026, 2171, 2003], [2748]]
    g = GenerateConfig(strategy="nucleus", top_p=0.9, max_new_tokens=5, num_return_sequences=3, seed=7)
    first = generate_for_contexts(Seq2SeqPolicy(model, tok), contexts, g)
    second = generate_for_contexts(Seq2SeqPolicy(model, tok), contexts, g)
    assert first == second
    assert all(len(r["responses"]) == 3 and len(r["logprobs"]) == 3 for r in first)
    for row in first:
        for text in row["responses"]:
            assert len(tok(text, add_special_tokens=False)["input_ids"]) <= 5
        assert all(lp <= 0 and math.isfinite(lp) for lp in row["logprobs"])
    # input order: each context alone gives the same greedy output as inside the batch
    greedy = GenerateConfig(strategy="greedy", max_new_tokens=8)
    batched = generate_for_contexts(Seq2SeqPolicy(model, tok), contexts, greedy)
    alone = [generate_for_contexts(Seq2SeqPolicy(model, tok), [c], greedy)[0] for c in contexts]
    assert [b["responses"] for b in batched] == [a["responses"] for a in alone]
    assert generate_for_contexts(Seq2SeqPolicy(model, tok), contexts, GenerateConfig(strategy="nucleus", seed=8, max_new_tokens=5)) != \
        generate_for_contexts(Seq2SeqPolicy(model, tok), contexts, GenerateConfig(strategy="nucleus", seed=9, max_new_tokens=5))


@pytest.mark.slow
def test_resume_after_a_kill_matches_an_uninterrupted_run(tmp_path):
    extra = "\n[runtime]\nseed = 3\n"
    cfg = resolve(write_recipe(tmp_path, extra), {"train.max_steps": 10, "train.save_every": 4, "generator.dropout": 0.1,
                                                  "train.log_every": 1})
    full, killed, state = full_and_resumed(cfg, tmp_path, kill_at=6)  # 2 steps past the save at 4
    assert state.step == 10
    a = load_generator(full.checkpoint("last"))[0].state_dict()
    b = load_generator(killed.checkpoint("last"))[0].state_dict()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)


def test_missing_or_foreign_checkpoint_is_a_clear_error(tmp_path, cli):
    with pytest.raises(AssetError, match="no config.json"):
        load_generator(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"format": "coral-reward", "model": "bert"}))
    with pytest.raises(AssetError, match="reward-model checkpoint, not a generator"):
        load_generator(tmp_path)
    result = cli("generate", "-c", str(tmp_path / "nope"), "--max-pairs", "2")
    assert result.exit_code == 2 and "not a checkpoint folder" in result.stderr


@pytest.mark.slow
def test_cli_train_generate_and_runs_show(cli, tmp_path):
    recipe = write_recipe(tmp_path, f'\n[runtime]\nruns_dir = "{tmp_path}"\n')
    result = cli("coral", "train", "--loss", "ce", "--recipe", recipe, "--max-steps", "16", "--name", "ce")
    assert result.exit_code == 0, result.output
    # not a terminal (as in CI): one plain line per log interval, with its ETA, not a cut progress bar
    assert "generator ce step 8/16: loss" in result.stderr and "ETA 0:" in result.stderr
    ckpt = tmp_path / "ce" / "checkpoints" / "best"
    lines = '{"id": "a", "context": ["hello , how are you ?"]}\n{"context": "what is your name ?", "reference": "tom ."}\n'
    result = cli("generate", "-c", str(ckpt), "--input", "-", "--max-new-tokens", "6", "--strategy", "greedy", input=lines)
    assert result.exit_code == 0, result.output
    rows = [json.loads(x) for x in result.stdout.splitlines()]
    assert [r["id"] for r in rows] == ["a", 2] and rows[1]["reference"] == "tom ."
    assert all(set(r) >= {"context", "response", "responses", "logprobs"} for r in rows)

    out = tmp_path / "preds.jsonl"
    result = cli("generate", "-c", str(ckpt), "--split", "test", "--max-pairs", "5", "--out", str(out))
    assert result.exit_code == 0, result.output
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == ["test-0:2", "test-0:3", "test-0:4", "test-0:5", "test-0:6"]
    sidecar = json.loads((tmp_path / "preds.jsonl.config.json").read_text())
    assert sidecar["generate"]["strategy"] == "nucleus" and sidecar["count"] == 5

    bad = cli("generate", "-c", str(ckpt), "--input", "-", input='{"context": []}\n')
    assert bad.exit_code == 2 and "stdin:1: empty context" in bad.stderr

    shown = cli("runs", "show", str(tmp_path / "ce"), "--json")
    summary = json.loads(shown.stdout)
    assert summary["steps"] == 16 and summary["ended"] == "max_steps" and "best" in summary["checkpoints"]
    assert cli("runs", "show", str(tmp_path / "ce")).exit_code == 0
