"""Faster decoding with unchanged outputs: the top-k nucleus keeps exactly what HF's sorting
`TopPLogitsWarper` keeps, the sampler draws from exactly that nucleus (the distribution HF's
sampling draws from), and the log-probs recorded while decoding equal the teacher-forced
re-score's. Tiny models built in code, seeds fixed."""

import dataclasses
from types import SimpleNamespace

import pytest
import torch
from transformers import (
    BartConfig,
    BartForConditionalGeneration,
    TopPLogitsWarper,
)

from coral_cli.config.schema import GenerateConfig
from coral_cli.generation import responses
from coral_cli.generation.responses import generate_for_contexts
from coral_cli.generator.decoding.nucleus import NucleusLogitsProcessor, NucleusSampler
from coral_cli.generator.decoding.sampling import generate_kwargs, run_generate
from coral_cli.generator.decoding.step_logprobs import StepLogprobs
from coral_cli.generator.pretrained.causal import CausalPolicy
from coral_cli.generator.pretrained.seq2seq_lm import PretrainedSeq2SeqPolicy
from tests.tiny_lm import chat_tokenizer, tiny_llama

CPU = torch.device("cpu")
CONTEXTS = [["hello , how are you ?", "fine , thanks ."], ["what time is it ?"], ["good morning"],
            ["where is the station , please ?"]]


def logits(shape: tuple[int, int], kind: str, seed: int) -> torch.Tensor:
    """Peaked rows (the nucleus is in the top 64), flat rows (it is not: the fallbacks run), rows
    of tied values, and a few -inf entries as min-length / n-gram rules leave them."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g)
    few = torch.randint(0, 3, shape, generator=g).float()
    x = {"peaked": x * 8, "flat": x * 0.05, "ties": (x * 2).round(), "few": few}[kind]
    x[:, 1] = float("-inf")
    return x


def warper_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Rows that reach the full-sort fallback, per call."""
    calls: list[int] = []
    original = TopPLogitsWarper.__call__
    monkeypatch.setattr(TopPLogitsWarper, "__call__",
                        lambda self, ids, s: calls.append(len(s)) or original(self, ids, s))
    return calls


@pytest.mark.parametrize("shape", [(3, 50), (16, 1000), (4, 30522)])
@pytest.mark.parametrize("kind", ["peaked", "flat", "ties", "few"])
@pytest.mark.parametrize("top_p", [0.5, 0.9, 0.95, 0.999])
def test_nucleus_keeps_exactly_what_the_sorting_warper_keeps(shape, kind, top_p):
    x = logits(shape, kind, seed=shape[1] + int(top_p * 1000))
    ids = torch.zeros(shape[0], 1, dtype=torch.long)
    expected = TopPLogitsWarper(top_p, min_tokens_to_keep=1)(ids, x)
    got = NucleusLogitsProcessor(top_p)(ids, x)
    assert torch.equal(got.isinf(), expected.isinf())
    assert torch.equal(got, expected)  # same -inf mask, same finite values


def test_peaked_rows_skip_the_sort_and_flat_rows_fall_back(monkeypatch):
    calls = warper_calls(monkeypatch)
    ids = torch.zeros(16, 1, dtype=torch.long)
    NucleusLogitsProcessor(0.9)(ids, logits((16, 30522), "peaked", 0))
    assert calls == []
    flat = logits((16, 30522), "flat", 0)
    assert torch.equal(NucleusLogitsProcessor(0.9)(ids, flat), TopPLogitsWarper(0.9)(ids, flat))
    assert calls[0] == 16  # 90% of a flat 30k vocabulary is past every top-k width


def test_top_p_zero_and_one_match_the_warper():
    ids = torch.zeros(4, 1, dtype=torch.long)
    x = logits((4, 1000), "ties", 3)
    for top_p in (0.0, 1.0):
        assert torch.equal(NucleusLogitsProcessor(top_p)(ids, x), TopPLogitsWarper(top_p)(ids, x))


def test_nucleus_kwargs_sample_in_our_processor_under_greedy_search():
    kw = generate_kwargs(GenerateConfig(strategy="nucleus", top_p=0.8, temperature=0.7))
    assert kw["do_sample"] is False and kw["top_p"] == 1.0 and kw["temperature"] == 1.0
    [sampler] = kw["logits_processor"]
    assert isinstance(sampler, NucleusSampler) and sampler.temperature == 0.7 and sampler.nucleus.top_p == 0.8
    assert generate_kwargs(GenerateConfig(strategy="nucleus", top_p=1.0))["logits_processor"][0].nucleus is None
    assert "logits_processor" not in generate_kwargs(GenerateConfig(strategy="greedy"))
    assert generate_kwargs(GenerateConfig(strategy="nucleus"), sort_free=False)["do_sample"] is True


def draws(sampler: NucleusSampler, row: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """n tokens drawn from one (V,) row of logits: the chosen token is the row's only finite score."""
    torch.manual_seed(seed)
    out = sampler(torch.zeros(n, 1, dtype=torch.long), row.expand(n, -1).clone())
    assert torch.equal(out.isfinite().sum(1), torch.ones(n, dtype=torch.long))
    return out.argmax(1)


@pytest.mark.parametrize("kind", ["peaked", "flat", "wide", "ties", "few"])
@pytest.mark.parametrize("top_p,temperature", [(0.9, 1.0), (0.5, 0.7), (1.0, 1.0)])
def test_sampler_draws_from_the_sorting_warpers_nucleus(kind, top_p, temperature, monkeypatch):
    """Over 4,000 draws, each token expected 20+ times, and the rest in 8 groups by token id,
    are drawn as often as softmax(TopPLogitsWarper(x / T)) says, within 5 standard errors, and
    no token outside the nucleus is ever drawn."""
    x = logits((1, 3000), "flat", seed=7)[0] if kind == "wide" else logits((1, 1000), kind, seed=7)[0]
    if kind == "peaked":
        x = x / 4  # a nucleus of dozens of tokens, inside the first top-k width
    rejected: list[int] = []  # "wide": a nucleus of ~2,700 tokens, past every top-k width: drawn by rejection
    original = NucleusLogitsProcessor._draw_by_rejection
    monkeypatch.setattr(NucleusLogitsProcessor, "_draw_by_rejection",
                        lambda self, ids, s: rejected.append(len(s)) or original(self, ids, s))
    expected = TopPLogitsWarper(top_p)(torch.zeros(1, 1, dtype=torch.long), x[None] / temperature)[0].softmax(-1)
    n = 4_000
    freq = torch.bincount(draws(NucleusSampler(top_p, temperature), x, n, seed=1), minlength=len(x)) / n
    assert (freq[expected == 0] == 0).all()
    big = expected * n >= 20
    rest = (~big).nonzero()[:, 0].tensor_split(8)
    cells = [(freq[i], expected[i]) for i in big.nonzero()[:, 0]] + [(freq[r].sum(), expected[r].sum()) for r in rest]
    for f, p in cells:
        assert abs(float(f) - float(p)) <= 5 * (float(p) * (1 - float(p)) / n) ** 0.5 + 1e-9
    assert (expected > 0).sum() > 1  # a real choice, not a single token
    assert rejected == ([n] if kind == "wide" and top_p < 1 else []) or kind in ("ties", "few")


def test_sampler_fails_the_frequency_check_without_the_nucleus():
    """The check above can fail: full-softmax draws put mass where the nucleus has none."""
    x = logits((1, 1000), "peaked", seed=7)[0] / 4
    expected = TopPLogitsWarper(0.5)(torch.zeros(1, 1, dtype=torch.long), x[None])[0].softmax(-1)
    got = draws(NucleusSampler(1.0), x, 4_000, seed=1)
    assert (expected[got] == 0).any()


@pytest.mark.parametrize("n", [1, 3])
def test_sampled_generate_with_a_one_token_nucleus_is_greedy(causal, n):
    """top_p -> 0 keeps the top token only: every sample, n per context in context order,
    equals greedy decoding's reply, through `run_generate`'s prompt repetition."""
    ids, mask = causal.prompts(causal.context_ids(CONTEXTS, 64), CPU)
    greedy = causal.sample(causal.model, ids, mask, GenerateConfig(strategy="greedy", max_new_tokens=8))
    sampled = causal.sample(causal.model, ids, mask, GenerateConfig(strategy="nucleus", top_p=1e-6,
                                                                    max_new_tokens=8, num_return_sequences=n))
    assert torch.equal(sampled.ids, greedy.ids.repeat_interleave(n, 0))
    assert torch.equal(sampled.mask, greedy.mask.repeat_interleave(n, 0))


@pytest.fixture(scope="module")
def causal():
    tok = chat_tokenizer()
    model = tiny_llama(tok).eval()
    with torch.no_grad():
        model.lm_head.weight[tok.eos_token_id] += 1.0  # some replies end early, some run to the limit
    return CausalPolicy(model, tok)


@pytest.fixture(scope="module")
def lora():
    """The causal LM under peft's wrapper: `generate` runs on the HF model inside it."""
    from coral_cli.config.schema import LoraConfig
    from coral_cli.generator.pretrained.lora import add_lora

    tok = chat_tokenizer()
    model = tiny_llama(tok)
    with torch.no_grad():
        model.lm_head.weight[tok.eos_token_id] += 1.0
    return CausalPolicy(add_lora(model, LoraConfig(r=2, alpha=4, dropout=0.0)).eval(), tok)


@pytest.fixture(scope="module")
def seq2seq():
    tok = chat_tokenizer(template=None)
    torch.manual_seed(0)
    model = BartForConditionalGeneration(BartConfig(
        vocab_size=len(tok), d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=128,
        pad_token_id=tok.pad_token_id, bos_token_id=tok.cls_token_id, eos_token_id=tok.sep_token_id,
        decoder_start_token_id=tok.convert_tokens_to_ids("[unused0]"), forced_bos_token_id=None,
        forced_eos_token_id=None)).eval()
    model.final_logits_bias[0, tok.sep_token_id] += 6.0  # some replies end early, some run to the limit
    return PretrainedSeq2SeqPolicy(model, tok)


CONFIGS = {
    "greedy": GenerateConfig(strategy="greedy", max_new_tokens=10),
    "nucleus": GenerateConfig(strategy="nucleus", top_p=0.9, max_new_tokens=10, num_return_sequences=3, seed=1),
    "nucleus-rules": GenerateConfig(strategy="nucleus", top_p=0.5, temperature=0.7, min_new_tokens=3,
                                    no_repeat_ngram_size=2, max_new_tokens=12, num_return_sequences=2),
}


@pytest.mark.parametrize("g", CONFIGS.values(), ids=CONFIGS.keys())
@pytest.mark.parametrize("backend", ["causal", "seq2seq", "lora"])
def test_recorded_logprobs_equal_the_teacher_forced_re_score(backend, g, request, monkeypatch):
    policy = request.getfixturevalue(backend)
    ctx = policy.context_ids(CONTEXTS, 64)
    ended: list[torch.Tensor] = []
    sample = policy.sample
    monkeypatch.setattr(policy, "sample", lambda *a, **k: ended.append((out := sample(*a, **k)).ended) or out)
    for seed in range(50) if g.num_return_sequences == 2 else [g.seed]:
        ended.clear()  # with two samples per context: a seed whose samples both end and run to the limit
        recorded = generate_for_contexts(policy, ctx, dataclasses.replace(g, seed=seed))
        if g.num_return_sequences != 2 or (torch.cat(ended).any() and not torch.cat(ended).all()):
            break
    else:
        pytest.fail("no seed gave both ended and cut samples")
    monkeypatch.setattr(responses, "decoding_dtype", lambda device: torch.bfloat16)  # as under bf16: re-score
    rescored = generate_for_contexts(policy, ctx, dataclasses.replace(g, seed=seed))
    assert [r["responses"] for r in recorded] == [r["responses"] for r in rescored]
    for a, b in zip(recorded, rescored):
        assert a["logprobs"] == pytest.approx(b["logprobs"], abs=1e-4)


def test_beam_search_is_not_recorded(causal):
    ids, mask = causal.prompts(causal.context_ids(CONTEXTS[:1], 64), CPU)
    with pytest.raises(ValueError, match="beam"):
        run_generate(causal.model, ids, mask, GenerateConfig(strategy="beam", num_beams=2), record=StepLogprobs())


class FixedLM(torch.nn.Module):
    """Returns the next of some fixed (N, V) logits at each call, like a decoding step."""

    def __init__(self, steps: list[torch.Tensor]) -> None:
        super().__init__()
        self.steps = iter(steps)

    def forward(self) -> SimpleNamespace:
        return SimpleNamespace(logits=next(self.steps)[:, None, :])


def test_recorder_pairs_each_step_with_the_token_it_chose():
    steps = [torch.log_softmax(torch.randn(2, 5, generator=torch.Generator().manual_seed(i)), -1) for i in range(4)]
    chosen = torch.tensor([[1, 4, 0, 2], [3, 3, 1, 0]])
    prompt = torch.zeros(2, 1, dtype=torch.long)
    rec, model = StepLogprobs(), FixedLM(steps)
    with rec.attached(model):
        for t in range(4):  # each step: a forward, then the processors see the tokens so far
            model()
            rec(torch.cat([prompt, chosen[:, :t]], 1), steps[t])
    expected = torch.stack([steps[t].gather(1, chosen[:, t:t + 1])[:, 0] for t in range(4)], 1)
    assert torch.allclose(rec.token_logprobs(chosen), expected)
    assert torch.allclose(rec.token_logprobs(chosen[:, :3]), expected[:, :3])  # generate dropped its last step
