"""LoRA adapters (coral_cli.generator.lora) and the KL penalty (coral_cli.objectives.kl) on tiny
models built in code: Llama (tied embeddings), GPT-2 (Conv1D layers), BART (encoder-decoder)."""

from __future__ import annotations

import copy

import pytest
import torch
from safetensors.torch import load_file
from transformers import (AutoModelForCausalLM, AutoModelForSeq2SeqLM, BartConfig, BartForConditionalGeneration,
                          GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM)

from coral_cli.config.schema import LoraConfig
from coral_cli.errors import AssetError, ConfigError
from coral_cli.generator.core.reference import frozen_copy, reference_model
from coral_cli.generator.pretrained.lora import (add_lora, is_adapter, load_adapter, merge_and_export,
                                                 read_adapter_meta, save_adapter)
from coral_cli.objectives.kl import kl_penalty

V = 100
IDENTITY = {"name": "tiny-base", "fingerprint": "f00d"}


def _base(kind: str) -> torch.nn.Module:
    torch.manual_seed(0)
    if kind == "llama":
        return LlamaForCausalLM(LlamaConfig(vocab_size=V, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                            num_attention_heads=4, num_key_value_heads=2,
                                            max_position_embeddings=64, tie_word_embeddings=True)).eval()
    if kind == "gpt2":
        return GPT2LMHeadModel(GPT2Config(vocab_size=V, n_embd=32, n_layer=2, n_head=2, n_positions=64,
                                          resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)).eval()
    return BartForConditionalGeneration(BartConfig(
        vocab_size=V, d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=64,
        dropout=0.0, attention_dropout=0.0)).eval()


IDS = torch.tensor([[5, 17, 42, 8, 99, 3], [7, 7, 21, 60, 2, 11]])


def _out(model: torch.nn.Module, labels: bool = False):
    kw = {"labels": IDS} if labels else {}
    if model.config.is_encoder_decoder:
        return model(input_ids=IDS, decoder_input_ids=IDS, **kw)
    return model(input_ids=IDS, **kw)


def _lora(kind: str, **kw) -> tuple[torch.nn.Module, torch.nn.Module]:
    """(pristine base, adapted copy with nonzero lora_B so the adapters change the outputs)."""
    base = _base(kind)
    model = add_lora(copy.deepcopy(base), LoraConfig(enabled=True, r=4, alpha=8, dropout=0.0, **kw))
    torch.manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(std=0.2)
    return base, model.eval()


KINDS = ["llama", "gpt2", "bart"]


@pytest.mark.parametrize("kind", KINDS)
def test_training_changes_only_adapter_weights(kind):
    model = add_lora(_base(kind), LoraConfig(enabled=True, r=4, alpha=8, dropout=0.0))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    assert all(torch.count_nonzero(p) == 0 for n, p in before.items() if "lora_B" in n)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(2):  # lora_B = 0 gives lora_A a zero gradient on the first step
        opt.zero_grad()
        _out(model, labels=True).loss.backward()
        opt.step()
    after = dict(model.named_parameters())
    adapters = [n for n in before if "lora_" in n]
    assert adapters and all(after[n].requires_grad for n in adapters)
    assert all(not torch.equal(before[n], after[n]) for n in adapters)
    assert all(torch.equal(before[n], after[n]) and not after[n].requires_grad for n in before if "lora_" not in n)


@pytest.mark.parametrize("kind", KINDS)
def test_save_load_roundtrip_gives_identical_logits(kind, tmp_path):
    base, model = _lora(kind)
    save_adapter(model, tmp_path / "ad", IDENTITY)
    names = {p.name for p in (tmp_path / "ad").iterdir()}
    assert {"adapter_model.safetensors", "adapter_config.json", "coral-adapter.json"} <= names
    assert not any(n.endswith(".bin") for n in names)
    meta = read_adapter_meta(tmp_path / "ad")
    assert is_adapter(tmp_path / "ad") and not is_adapter(tmp_path)
    assert meta["base"] == IDENTITY and meta["lora"]["r"] == 4 and meta["lora"]["target_modules"] == ["all-linear"]
    loaded = load_adapter(copy.deepcopy(base), tmp_path / "ad", dict(IDENTITY)).eval()
    assert torch.equal(_out(loaded).logits, _out(model).logits)
    assert not torch.allclose(_out(loaded).logits, _out(base).logits)
    assert not any(p.requires_grad for p in loaded.parameters())
    trainable = load_adapter(copy.deepcopy(base), tmp_path / "ad", IDENTITY, trainable=True)
    assert {n for n, p in trainable.named_parameters() if p.requires_grad} == {
        n for n, p in model.named_parameters() if p.requires_grad}


def test_load_refuses_another_base_pickles_and_damage(tmp_path):
    base, model = _lora("llama")
    folder = save_adapter(model, tmp_path / "ad", IDENTITY)
    with pytest.raises(AssetError, match="another base") as err:
        load_adapter(copy.deepcopy(base), folder, {"name": "tiny-base", "fingerprint": "beef"})
    assert "fingerprint=f00d" in str(err.value) and "fix:" in str(err.value)

    pickled = tmp_path / "pickled"
    pickled.mkdir()
    for name in ("adapter_config.json", "coral-adapter.json"):
        (pickled / name).write_bytes((folder / name).read_bytes())
    torch.save(load_file(str(folder / "adapter_model.safetensors")), pickled / "adapter_model.bin")
    with pytest.raises(AssetError, match="pickle files are not loaded"):
        load_adapter(copy.deepcopy(base), pickled, IDENTITY)

    weights = folder / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-64])
    with pytest.raises(AssetError, match="damaged"):
        load_adapter(copy.deepcopy(base), folder, IDENTITY)


def test_bare_peft_folder_is_an_adapter_of_unknown_base(tmp_path):
    _, model = _lora("gpt2")
    model.save_pretrained(str(tmp_path / "bare"), save_embedding_layers=False)
    assert is_adapter(tmp_path / "bare")
    with pytest.raises(AssetError, match="not written by coral"):
        load_adapter(_base("gpt2"), tmp_path / "bare", IDENTITY)


def test_missing_or_tied_target_modules_are_config_errors():
    with pytest.raises(ConfigError, match=r"\['qproj', 'wq'\] match no linear layer") as err:
        add_lora(_base("llama"), LoraConfig(target_modules=["q_proj", "qproj", "wq"]))
    fix = str(err.value).split("fix:")[1]
    assert all(n in fix for n in ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"))
    with pytest.raises(ConfigError, match="c_attn, c_fc, c_proj"):
        add_lora(_base("gpt2"), LoraConfig(target_modules=["q_proj"]))
    with pytest.raises(ConfigError, match="tied"):  # Llama here ties lm_head to embed_tokens
        add_lora(_base("llama"), LoraConfig(target_modules=["q_proj", "lm_head"]))
    assert LoraConfig(target_modules=["all-linear", "q_proj"]).problems()
    assert LoraConfig(target_modules=[]).problems() and not LoraConfig().problems()


def test_all_linear_skips_the_lm_head_and_named_targets_work():
    _, model = _lora("llama")
    targeted = {n.rsplit(".", 1)[0] for n, _ in model.named_parameters() if "lora_A" in n}
    assert not any("lm_head" in n or "embed" in n for n in targeted)
    assert len(targeted) == 2 * 7  # q k v o gate up down per layer
    _, only_qv = _lora("bart", target_modules=["q_proj", "v_proj"])
    names = {n.rsplit(".", 3)[0].rsplit(".", 1)[-1] for n, _ in only_qv.named_parameters() if "lora_A" in n}
    assert names == {"q_proj", "v_proj"}


@pytest.mark.parametrize("kind", KINDS)
def test_merge_and_export_loads_without_peft(kind, tmp_path):
    _, model = _lora(kind)
    merge_and_export(model, None, tmp_path / "merged")
    state = load_file(str(tmp_path / "merged" / "model.safetensors"))
    assert not any("lora" in k or "base_layer" in k for k in state)
    auto = AutoModelForSeq2SeqLM if kind == "bart" else AutoModelForCausalLM
    plain = auto.from_pretrained(str(tmp_path / "merged")).eval()
    assert type(plain).__module__.startswith("transformers.")
    torch.testing.assert_close(_out(plain).logits, _out(model).logits, atol=1e-5, rtol=0)
    assert any("lora_A" in n for n, _ in model.named_parameters())  # the adapter model is untouched


def test_reference_model_is_the_base_with_adapters_off():
    base = _base("llama")
    base_logits = _out(base).logits
    model = add_lora(copy.deepcopy(base), LoraConfig(enabled=True, r=4, alpha=8, dropout=0.1)).train()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    _out(model, labels=True).loss.backward()
    opt.step()
    with reference_model(model) as ref:
        ref_logits = _out(ref).logits
        assert not ref_logits.requires_grad
    assert torch.equal(ref_logits, base_logits)
    assert model.training and all(m.training for m in model.modules())  # modes restored
    assert not torch.allclose(_out(model.eval()).logits, base_logits)  # adapters are back on

    full = _base("gpt2").train()
    frozen = frozen_copy(full)
    assert not frozen.training and not any(p.requires_grad for p in frozen.parameters())
    with reference_model(full, frozen) as ref:
        assert ref is frozen and ref.training  # the policy's mode: dropout alike on both sides
    assert not frozen.training  # and its own mode back afterwards
    with pytest.raises(ValueError, match="frozen_copy"):
        with reference_model(full):
            pass


def test_adapters_from_an_init_are_their_own_reference():
    """CORAL after CE-FT: the reference is the CE-FT policy where training started (a frozen copy of
    the adapted model), not the base with adapters off, and it stays there while the policy moves."""
    base, model = _lora("llama")
    start_logits = _out(model).logits
    frozen = frozen_copy(model)
    model.train()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    _out(model, labels=True).loss.backward()
    opt.step()
    with reference_model(model, frozen) as ref:
        assert ref is frozen and ref.training == model.training
        torch.testing.assert_close(_out(ref).logits, start_logits, atol=1e-6, rtol=0)
    assert not torch.allclose(start_logits, _out(base).logits)  # the start is not the base
    assert not torch.allclose(_out(model.eval()).logits, start_logits)  # and the policy did move


def test_kl_penalty_values_and_gradients():
    logp = torch.tensor([[-1.0, -2.0, -0.5], [-0.3, -0.7, float("-inf")]], requires_grad=True)
    ref = torch.tensor([[-1.5, -1.0, -9.0], [-0.3, -0.2, float("-inf")]], requires_grad=True)
    mask = torch.tensor([[1, 1, 0], [1, 1, 0]])
    for est in ("k1-reward", "k2", "k3"):
        same, value = kl_penalty(logp, logp.detach().clone(), mask, est)
        assert torch.equal(value, torch.zeros(2))
        if est != "k1-reward":
            assert torch.equal(same, torch.zeros(2))
    # per token d = log pi - log ref: row 0 (0.5, -1.0), row 1 (0.0, -0.5); the masked column never counts
    k1, value = kl_penalty(logp, ref, mask, "k1-reward")
    torch.testing.assert_close(value, torch.tensor([-0.5, -0.5]))
    torch.testing.assert_close(k1, value * torch.tensor([-3.0, -1.0]))  # k1 (detached) * sum_t log pi
    k2, _ = kl_penalty(logp, ref, mask, "k2")
    torch.testing.assert_close(k2, torch.tensor([0.5 * (0.25 + 1.0), 0.5 * 0.25]))
    k3, _ = kl_penalty(logp, ref, mask, "k3")
    e = torch.exp
    torch.testing.assert_close(k3, torch.stack([e(torch.tensor(-0.5)) + 0.5 - 1 + e(torch.tensor(1.0)) - 1.0 - 1,
                                                e(torch.tensor(0.5)) - 0.5 - 1]))
    assert (k3 >= 0).all()
    k3.sum().backward()
    assert ref.grad is None and torch.isfinite(logp.grad).all()
    # d k3 / d logp = 1 - exp(-d) on response tokens, 0 on padding
    d = torch.tensor([[0.5, -1.0, 0.0], [0.0, -0.5, 0.0]])
    torch.testing.assert_close(logp.grad, (1 - torch.exp(-d)) * mask)
    torch.manual_seed(0)
    big, _ = kl_penalty(torch.randn(64, 5), torch.randn(64, 5), torch.ones(64, 5), "k3")
    assert (big >= 0).all()
    with pytest.raises(ValueError, match="estimator"):
        kl_penalty(logp, ref, mask, "k1")