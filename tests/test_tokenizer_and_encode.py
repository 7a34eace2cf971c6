import hashlib

import pytest

from coral_cli.config import DataConfig
from coral_cli.data import encode as encode_mod
from coral_cli.data.encode import encode_pairs, join_context
from coral_cli.data.sources import load_pairs
from coral_cli.errors import AssetError
from coral_cli.tokenizer import bundled_model_path, load_tokenizer, wordpiece_text


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer("bundled")


def test_bundled_vocabulary_is_bert_base_uncased(tok):
    vocab = (bundled_model_path() / "vocab.txt").read_bytes()
    assert hashlib.md5(vocab).hexdigest() == "64800d5d8528ce344256daf115d4965e"
    assert len(tok) == 30_522
    assert (tok.cls_token, tok.sep_token, tok.pad_token) == ("[CLS]", "[SEP]", "[PAD]")


def test_round_trip_of_a_dailydialog_line(tok):
    line = "Say , Jim , how about going for a few beers after dinner ?"
    ids = tok(line, add_special_tokens=False)["input_ids"]
    assert wordpiece_text(tok, ids) == line.lower()  # DailyDialog's pre-tokenised form
    assert tok.decode(ids) == "say, jim, how about going for a few beers after dinner?"
    assert tok.convert_ids_to_tokens(ids)[:3] == ["say", ",", "jim"]
    pieces = tok("unbelievably", add_special_tokens=False)["input_ids"]
    contraction = tok("I don't think it's Tom's", add_special_tokens=False)["input_ids"]
    assert wordpiece_text(tok, contraction) == "i don't think it's tom's"
    assert len(pieces) > 1 and wordpiece_text(tok, [tok.cls_token_id, *pieces, tok.sep_token_id]) == "unbelievably"


def test_unknown_tokenizer_is_an_asset_error():
    with pytest.raises(AssetError, match="cannot load tokenizer"):
        load_tokenizer("/nonexistent/tokenizer/folder")


def test_join_context_keeps_the_most_recent_tokens():
    utts = [[1, 2, 3], [4, 5], [6, 7, 8, 9]]
    assert join_context(utts, 0, 100) == [1, 2, 3, 0, 4, 5, 0, 6, 7, 8, 9]
    assert join_context(utts, 0, 5) == [5, 0, 6, 7, 8, 9][-5:]
    assert join_context(utts, 0, 4) == [6, 7, 8, 9]


def test_encoded_pairs_truncate_left_and_right(tok):
    cfg = DataConfig(max_context_tokens=16, max_response_tokens=5, max_pairs=200)
    enc = encode_pairs(load_pairs(cfg, "test"), tok, cfg)
    for row in enc:
        full_ctx = tok(f" {tok.sep_token} ".join(row["context"]), add_special_tokens=False)["input_ids"]
        full_resp = tok(row["response"], add_special_tokens=False)["input_ids"]
        assert row["context_ids"] == full_ctx[-16:]  # most recent tokens kept
        assert row["response_ids"] == full_resp[:5]
        assert row["context_tokens_total"] == len(full_ctx)
        assert row["response_tokens_total"] == len(full_resp)
    assert any(row["context_tokens_total"] > 16 for row in enc)


def test_second_encoding_is_read_from_the_cache(tok, monkeypatch):
    cfg = DataConfig(max_pairs=300, max_context_tokens=33)
    pairs = load_pairs(cfg, "validation")
    first = encode_pairs(pairs, tok, cfg)

    def boom(*args, **kwargs):
        raise AssertionError("tokenized again although the cache holds this encoding")

    monkeypatch.setattr(encode_mod, "encode_batch", boom)
    second = encode_pairs(load_pairs(cfg, "validation"), tok, cfg)
    assert second["context_ids"] == first["context_ids"]
    assert second.cache_files[0]["filename"] == first.cache_files[0]["filename"]
    other = DataConfig(max_pairs=300, max_context_tokens=34)  # another budget: another cache file
    with pytest.raises(AssertionError, match="tokenized again"):
        encode_pairs(pairs, tok, other)


def test_a_fingerprint_is_hashed_once_per_tokenizer_and_again_when_it_grows(monkeypatch):
    """A CORAL step asks twice whether the reward reads the generator's ids (~80 ms a hash of
    BERT's tokenizer): the answer is kept per tokenizer until tokens are added."""
    import copy

    import coral_cli.tokenizer as tokenizer

    shared = load_tokenizer("bundled")
    tok = copy.deepcopy(shared)  # the loader's tokenizer is shared: grow a copy
    hashed = []
    real = tokenizer._fingerprint
    monkeypatch.setattr(tokenizer, "_fingerprint", lambda t: hashed.append(1) or real(t))
    first = tokenizer.tokenizer_fingerprint(tok)
    assert tokenizer.tokenizer_fingerprint(tok) == first and len(hashed) == 1
    assert tokenizer.tokenizer_fingerprint(shared) == first  # equal tokenizers, equal keys
    tok.add_tokens(["zzqq-new-token"])
    assert tokenizer.tokenizer_fingerprint(tok) != first  # another vocabulary, another key
