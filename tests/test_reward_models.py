import json

import numpy as np
import pytest
import torch

from coral_cli.errors import AssetError, ConfigError
from coral_cli.rewards import build_reward, load_reward, save_reward
from coral_cli.data import encode
from coral_cli.rewards.packing import pack_cross_pair, pad_ids, wrap_single
from tests.tiny import tiny_config

CONTEXTS = [["hello , how are you ?", "fine , and you ?"], ["what time is it ?"], ["shall we go ?"]]
RESPONSES = ["i am great , thanks .", "it is five o'clock .", "yes , let us go now before it rains ."]


def test_pad_and_wrap():
    ids, mask = pad_ids([[5, 6, 7], [8]], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0]] and mask.sum(1).tolist() == [3, 1]
    wrapped, wmask = wrap_single(ids, mask, cls_id=101, sep_id=102, pad_id=0)
    assert wrapped.tolist() == [[101, 5, 6, 7, 102], [101, 8, 102, 0, 0]]
    assert wmask.sum(1).tolist() == [5, 3]


def test_pack_cross_pair_truncates_the_oldest_context_tokens():
    c, cm = pad_ids([[5, 6, 7], [8]], 0)
    r, rm = pad_ids([[9], [10, 11]], 0)
    ids, types, mask = pack_cross_pair(c, cm, r, rm, 101, 102, 0, max_length=6)
    assert ids.tolist() == [[101, 6, 7, 102, 9, 102], [101, 8, 102, 10, 11, 102]]
    assert types.tolist() == [[0, 0, 0, 0, 1, 1], [0, 0, 0, 1, 1, 1]]
    ids, types, mask = pack_cross_pair(c, cm, r, rm, 101, 102, 0, max_length=20)
    # on a CPU the width is the longest pair's (7), not Tc + Tr + 3 = 8: padding is pure work there
    assert ids.tolist() == [[101, 5, 6, 7, 102, 9, 102], [101, 8, 102, 10, 11, 102, 0]]
    assert mask.sum(1).tolist() == [7, 6]
    # on an accelerator it stays Tc + Tr + 3 whatever the lengths, read back from nothing (the meta
    # device has shapes and no data, so a read back would fail)
    meta = [t.to("meta") for t in (c, cm, r, rm)]
    assert pack_cross_pair(*meta, 101, 102, 0, max_length=20)[0].shape == (2, 8)


@pytest.mark.parametrize("name", ["bert", "esim", "dmi"])
def test_device_side_candidates_score_the_same_however_wide_their_padding(name):
    """On-policy samples arrive padded to the decoding budget: the padding beyond the longest
    reply changes no score, and on a CPU the retriever never sees it."""
    torch.manual_seed(0)
    model = build_reward(tiny_config(name).retriever, "bundled").eval()
    tok = model.tokenizer
    ctx = encode.context_ids(tok, [list(c) for c in CONTEXTS], 64)
    resp = [tok.convert_tokens_to_ids(tok.tokenize(r)) for r in RESPONSES]
    tight, tight_mask = pad_ids(resp, tok.pad_token_id)
    wide, wide_mask = pad_ids(resp, tok.pad_token_id, multiple=32)
    widths = []
    hook = model.register_forward_pre_hook(lambda m, args: widths.append(args[2].shape[1]))
    scores = model.score_samples(ctx, wide, wide_mask)
    hook.remove()
    assert wide.shape[1] == 32 and widths == [tight.shape[1]]
    torch.testing.assert_close(scores, model.score_samples(ctx, tight, tight_mask))
    torch.testing.assert_close(scores, model.score_ids(ctx, resp), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", ["bert", "esim", "dmi"])
def test_scores_are_probabilities_with_the_right_shape(name):
    torch.manual_seed(0)
    model = build_reward(tiny_config(name).retriever, "bundled").eval()
    scores = model.score(CONTEXTS, RESPONSES)
    assert scores.shape == (3,) and scores.dtype == torch.float32
    assert ((scores > 0) & (scores < 1)).all()
    # batched scoring equals one-by-one scoring (padding never leaks)
    single = torch.cat([model.score([c], [r]) for c, r in zip(CONTEXTS, RESPONSES)])
    torch.testing.assert_close(scores, single, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", ["bert", "esim", "dmi"])
def test_checkpoint_round_trip_gives_identical_scores(name, tmp_path):
    torch.manual_seed(0)
    model = build_reward(tiny_config(name).retriever, "bundled").eval()
    save_reward(model, tmp_path / "ckpt")
    assert {"config.json", "model.safetensors", "tokenizer_config.json"} <= {p.name for p in (tmp_path / "ckpt").iterdir()}
    loaded = load_reward(tmp_path / "ckpt")
    assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())
    torch.testing.assert_close(loaded.score(CONTEXTS, RESPONSES), model.score(CONTEXTS, RESPONSES))


def test_wrong_kind_and_damaged_checkpoints_are_clear_errors(tmp_path):
    with pytest.raises(AssetError, match="no config.json"):
        load_reward(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bart"}))
    with pytest.raises(AssetError, match="not a reward-model checkpoint"):
        load_reward(tmp_path)
    model = build_reward(tiny_config("esim").retriever, "bundled")
    save_reward(model, tmp_path / "ok")
    (tmp_path / "ok" / "model.safetensors").write_bytes(b"\x00garbage")
    with pytest.raises(AssetError, match="missing or damaged"):
        load_reward(tmp_path / "ok")


def test_plugin_args_are_validated():
    cfg = tiny_config("esim", **{"retriever.args": {"hiden": 8}}).retriever
    with pytest.raises(ConfigError, match="did you mean 'hidden'"):
        build_reward(cfg, "bundled")


def test_bundled_backbone_loads_offline():
    cfg = tiny_config("bert", **{"retriever.backbone": "bundled"}).retriever
    model = build_reward(cfg, "bundled")
    assert model.encoder.config.hidden_size == 384 and model.encoder.config.num_hidden_layers == 6
    assert np.isfinite(model.eval().score(CONTEXTS[:1], RESPONSES[:1]).numpy()).all()


def test_backbone_layers_keeps_the_first_pretrained_layers(tmp_path):
    full = build_reward(tiny_config("bert", **{"retriever.backbone": "bundled"}).retriever, "bundled")
    cut = build_reward(tiny_config("bert", **{"retriever.backbone": "bundled", "retriever.backbone_layers": 2}).retriever, "bundled")
    assert len(cut.encoder.encoder.layer) == 2
    assert cut.args.pooling == "mean"  # 'auto' resolves to mean for the bundled sentence embedder
    assert build_reward(tiny_config("bert").retriever, "bundled").args.pooling == "cls"  # the paper's [CLS]
    torch.testing.assert_close(cut.encoder.encoder.layer[1].output.dense.weight, full.encoder.encoder.layer[1].output.dense.weight)
    save_reward(cut.eval(), tmp_path / "c")
    loaded = load_reward(tmp_path / "c")
    assert len(loaded.encoder.encoder.layer) == 2
    assert json.loads((tmp_path / "c" / "config.json").read_text())["args"] == {"pooling": "mean"}
    torch.testing.assert_close(loaded.score(CONTEXTS, RESPONSES), cut.score(CONTEXTS, RESPONSES))


def test_dmi_cosine_score_is_the_calibrated_cosine_and_round_trips(tmp_path):
    """score = "cosine": f_R = sigmoid(a cos(c, r) + b), a = 10 and b = -2 before training."""
    torch.manual_seed(0)
    cfg = tiny_config("dmi", **{"retriever.args": {"score": "cosine"}}).retriever
    model = build_reward(cfg, "bundled").eval()
    assert sorted(n for n, _ in model.named_parameters() if n.startswith("head.")) == ["head.bias", "head.scale"]
    tok, cmax = model.tokenizer, cfg.max_context_tokens
    c_ids, c_mask = pad_ids(encode.context_ids(tok, CONTEXTS, cmax), model.special.pad)
    r_ids, r_mask = pad_ids(list(encode.token_ids(tok, RESPONSES).values()), model.special.pad)
    with torch.no_grad():
        c = model.embed(model.ctx_encoder, c_ids, c_mask)
        r = model.embed(model.resp_encoder, r_ids, r_mask)
    cos = (c * r).sum(-1) / (c.norm(dim=-1) * r.norm(dim=-1))
    torch.testing.assert_close(model.score(CONTEXTS, RESPONSES), torch.sigmoid(10 * cos - 2), atol=1e-5, rtol=1e-4)
    save_reward(model, tmp_path / "ckpt")
    torch.testing.assert_close(load_reward(tmp_path / "ckpt").score(CONTEXTS, RESPONSES), model.score(CONTEXTS, RESPONSES))


def test_dmi_cosine_on_the_bundled_sentence_encoder_ranks_true_replies_first_untrained():
    """Why the quickstart's reward trains in seconds: all-MiniLM-L6-v2's cosine already prefers each
    context's own reply to the others' (here for every one of the three pairs)."""
    cfg = tiny_config("dmi", **{"retriever.backbone": "bundled", "retriever.args": {"score": "cosine"}}).retriever
    model = build_reward(cfg, "bundled").eval()
    grid = model.score([c for c in CONTEXTS for _ in RESPONSES], RESPONSES * len(CONTEXTS)).reshape(3, 3)
    assert grid.argmax(1).tolist() == [0, 1, 2], grid
