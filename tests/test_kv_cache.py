"""`generate.kv_cache = "static"`: transformers' fixed-size KV cache (compiled with CUDA graphs on a
GPU) decodes exactly what the dynamic cache decodes, for the paper's seq2seq BART and for a
decoder-only LM, and on-policy CORAL samples follow the setting."""

import dataclasses

import pytest
import torch

from coral_cli.config import resolve
from coral_cli.config.schema import GenerateConfig
from coral_cli.errors import ConfigError
from coral_cli.generator.bart.model import build_generator
from coral_cli.generator.core.policy import Seq2SeqPolicy
from coral_cli.generator.decoding.sampling import generate_kwargs
from coral_cli.generator.decoding.step_logprobs import StepLogprobs
from coral_cli.generator.pretrained.causal import CausalPolicy
from coral_cli.tokenizer import load_tokenizer
from tests.policy_checks import CONTEXTS
from tests.tiny_lm import chat_tokenizer, tiny_llama

TINY_BART = {"generator.d_model": 32, "generator.encoder_layers": 1, "generator.decoder_layers": 1,
             "generator.ffn_dim": 64, "generator.heads": 2}


def seq2seq_policy() -> Seq2SeqPolicy:
    cfg = resolve(None, TINY_BART)
    tok = load_tokenizer(cfg.tokenizer.name)
    torch.manual_seed(0)
    return Seq2SeqPolicy(build_generator(cfg.generator, tok).eval(), tok)


def causal_policy() -> CausalPolicy:
    tok = chat_tokenizer()
    torch.manual_seed(0)
    return CausalPolicy(tiny_llama(tok).eval(), tok)


@pytest.mark.parametrize("make", [seq2seq_policy, causal_policy], ids=["seq2seq", "causal"])
@pytest.mark.parametrize("strategy", ["nucleus", "greedy"])
def test_static_cache_decodes_the_same_tokens_and_log_probs(make, strategy):
    policy = make()
    ids, mask = policy.prompts(policy.context_ids(CONTEXTS, 48), "cpu")
    out, seen = {}, set()

    def cache_kind(module, args, kwargs):  # the cache each decoding step reads and writes
        cache = kwargs.get("cache", kwargs.get("past_key_values"))  # transformers 5 names it `cache`
        cache = getattr(cache, "self_attention_cache", cache)  # an encoder-decoder's decoder side
        seen.add(type(cache).__name__)

    hook = policy.model.register_forward_pre_hook(cache_kind, with_kwargs=True)
    for cache in ("dynamic", "static"):
        g = GenerateConfig(strategy=strategy, top_p=0.9, max_new_tokens=6, kv_cache=cache)
        torch.manual_seed(1)
        rec = StepLogprobs()
        samples = policy.sample(policy.model, ids, mask, g, record=rec)
        out[cache] = (samples, rec.token_logprobs(samples.ids))
        assert seen == {"DynamicCache" if cache == "dynamic" else "StaticCache"}
        seen.clear()
    hook.remove()
    (dyn, dyn_logp), (static, static_logp) = out["dynamic"], out["static"]
    assert torch.equal(dyn.ids, static.ids) and torch.equal(dyn.mask, static.mask)
    torch.testing.assert_close(dyn_logp, static_logp)


def test_the_setting_reaches_generate_and_on_policy_samples():
    assert generate_kwargs(GenerateConfig(kv_cache="static"))["cache_implementation"] == "static"
    assert "cache_implementation" not in generate_kwargs(GenerateConfig())
    from coral_cli.tasks.train import build_objective

    cfg = resolve(None, {**TINY_BART, "objective.policy": "mix", "generate.kv_cache": "static"})
    policy = seq2seq_policy()
    objective = build_objective(cfg, lambda c, r: [0.5] * len(r), policy, [[7592]], torch.device("cpu"))
    assert objective.samplers[cfg.objective.on_policy_sampler].decoding.kv_cache == "static"
    with pytest.raises(ConfigError, match="kv_cache"):
        resolve(None, {"generate.kv_cache": "paged"})



def test_the_bench_times_the_static_cache_beside_the_dynamic_one(monkeypatch):
    """The GPU bench's A/B line (run here on the CPU): both rates on the same contexts, the
    compiling first pass apart; a failure is reported, not raised."""
    from coral_cli.bench import stages

    policy = seq2seq_policy()
    ctx = policy.context_ids(CONTEXTS, 48)
    line = stages._static_cache_speed(policy, ctx, GenerateConfig(max_new_tokens=4), torch.device("cpu"))
    assert line["contexts"] == len(ctx) and line["warmup_seconds"] > 0
    assert line["static_over_dynamic"] == pytest.approx(line["responses_per_s"] / line["dynamic_responses_per_s"])
    real = stages.generate_for_contexts

    def no_static(policy, contexts, g):
        if g.kv_cache == "static":
            raise RuntimeError("compilation failed")
        return real(policy, contexts, g)

    monkeypatch.setattr(stages, "generate_for_contexts", no_static)
    failed = stages._static_cache_speed(policy, ctx, GenerateConfig(max_new_tokens=4), torch.device("cpu"))
    assert failed == {"contexts": len(ctx), "error": "RuntimeError: compilation failed"}
