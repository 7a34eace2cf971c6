"""A pretrained encoder-decoder LM behind the generator contract, on tiny BART / BlenderbotSmall
models built in code over the bundled WordPiece vocabulary: its encoder format, response-only
labels, CE and CORAL losses against hand-computed values, batched generation, and LoRA CORAL
training end to end with the checkpoint loaded back."""

import pytest
import torch
from transformers import BartConfig, BartForConditionalGeneration, BlenderbotSmallConfig, BlenderbotSmallForConditionalGeneration

from coral_cli.config import resolve
from coral_cli.config.schema import GenerateConfig
from coral_cli.generator.core.batch import IGNORE
from coral_cli.generator.loading import load_policy
from coral_cli.generator.pretrained.seq2seq_lm import PretrainedSeq2SeqPolicy
from coral_cli.registry import REWARDS
from coral_cli.runs import run_dir
from coral_cli.tasks.train import generator_trainer
from tests.policy_checks import CONTEXTS, CPU, assert_ce_equals_hand_nll, assert_coral_equals_hand, pairs
from tests.tiny_lm import chat_tokenizer

SIZES = dict(d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2, decoder_attention_heads=2,
             encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=128)


def ids_of(tok):
    # the decoder starts with [unused0] (neither eos nor [CLS]) so the start token is told apart
    return dict(pad_token_id=tok.pad_token_id, bos_token_id=tok.cls_token_id, eos_token_id=tok.sep_token_id,
                decoder_start_token_id=tok.convert_tokens_to_ids("[unused0]"), forced_bos_token_id=None,
                forced_eos_token_id=None)


@pytest.fixture(scope="module")
def policy():
    tok = chat_tokenizer(template=None)
    torch.manual_seed(0)
    model = BartForConditionalGeneration(BartConfig(vocab_size=len(tok), **SIZES, **ids_of(tok))).eval()
    return PretrainedSeq2SeqPolicy(model, tok)


def hand_nll(policy, ctx, resp):
    """-log P of every response token and the end token, one unpadded example at a time."""
    out = []
    for c, r in zip(ctx, resp):
        logits = policy.model(input_ids=torch.tensor([c]), decoder_input_ids=torch.tensor([[policy.start_id, *r]])).logits
        logp = torch.log_softmax(logits[0], -1)
        out.append([-logp[t, y].item() for t, y in enumerate(r + [policy.end_id])])
    return out


def test_encoder_input_joins_turns_with_the_models_specials_and_cuts_from_the_left(policy):
    tok = policy.tokenizer
    assert policy.kind == "seq2seq-lm" and policy.start_id == tok.convert_tokens_to_ids("[unused0]")
    ids = policy.context_ids([CONTEXTS[0]], 64)[0]
    assert tok.decode(ids) == "[CLS] hello, how are you? [SEP] fine, thanks. [SEP]"
    short = policy.context_ids([CONTEXTS[0]], 7)[0]  # the oldest tokens go; the specials stay
    assert len(short) == 7 and tok.decode(short) == "[CLS] [SEP] fine, thanks. [SEP]"
    assert short[-1] == policy.end_id


def test_blenderbot_joins_turns_with_two_spaces():
    tok = chat_tokenizer(template=None)
    model = BlenderbotSmallForConditionalGeneration(BlenderbotSmallConfig(vocab_size=len(tok), **SIZES, **ids_of(tok)))
    blender = PretrainedSeq2SeqPolicy(model, tok)
    assert blender.separator == "  " and blender.fingerprint != PretrainedSeq2SeqPolicy(
        BartForConditionalGeneration(BartConfig(vocab_size=len(tok), **SIZES, **ids_of(tok))), tok).fingerprint


def test_labels_cover_the_response_and_end_token_and_ce_equals_the_hand_nll(policy):
    ctx, resp = pairs(policy)
    batch, ids, mask = policy.ground_truth(ctx, resp, CPU)
    assert batch.decoder_input_ids[:, 0].eq(policy.start_id).all()
    for row, r in enumerate(resp):
        assert batch.labels[row][batch.labels[row].ne(IGNORE)].tolist() == r + [policy.end_id]
    assert_ce_equals_hand_nll(policy, hand_nll)


def test_coral_loss_with_fixed_rewards_equals_hand_computed(policy):
    assert_coral_equals_hand(policy, hand_nll)


def test_batched_generation_matches_one_at_a_time_and_stops_at_the_end_token(policy):
    ctx, _ = pairs(policy)
    g = GenerateConfig(strategy="greedy", max_new_tokens=6, min_new_tokens=0)
    ids, mask = policy.prompts(ctx, CPU)
    batched = policy.sample(policy.model, ids, mask, g, bf16=False)
    alone = [policy.sample(policy.model, *policy.prompts([c], CPU), g, bf16=False) for c in ctx]
    assert batched.lists() == [a.lists()[0] for a in alone]
    with torch.no_grad():
        policy.model.final_logits_bias[0, policy.end_id] += 100.0  # the end token now always wins
    out = policy.sample(policy.model, ids, mask, g, bf16=False)
    with torch.no_grad():
        policy.model.final_logits_bias[0, policy.end_id] -= 100.0
    assert out.ended.all() and out.mask.sum().item() == 0


def asks(contexts, responses):
    return [0.9 if "?" in r else 0.1 for r in responses]


@pytest.mark.slow
def test_lora_coral_on_a_blenderbot_folder_trains_saves_and_loads_back(tmp_path):
    base = tmp_path / "tiny-blenderbot-small"
    tok = chat_tokenizer(template=None)
    torch.manual_seed(0)
    BlenderbotSmallForConditionalGeneration(BlenderbotSmallConfig(vocab_size=len(tok), **SIZES, **ids_of(tok))).save_pretrained(base)
    tok.save_pretrained(base)
    REWARDS.register("test-asks-s2s", asks, replace=True)
    try:
        cfg = resolve(None, {"generator.pretrained": str(base), "generator.lora.enabled": True, "generator.lora.r": 4,
                             "objective.loss": "coral", "objective.reward": "test-asks-s2s", "objective.kl_coef": 0.1,
                             "objective.sample_max_new_tokens": 6, "data.max_pairs": 16, "data.max_context_tokens": 64,
                             "data.max_response_tokens": 16, "generator.eval_pairs": 4, "generate.max_new_tokens": 6,
                             "train.max_steps": 2, "train.lr": 1e-3, "train.warmup_steps": 1, "train.log_every": 1,
                             "train.batch_tokens": 2048, "train.max_batch_size": 8, "runtime.runs_dir": str(tmp_path)})
        run = run_dir(tmp_path, "s2s").create(cfg, "coral coral train")
        trainer = generator_trainer(cfg, run, [])
        assert trainer.task.policy.kind == "seq2seq-lm" and hasattr(trainer.task.policy.model, "peft_config")
        assert trainer.fit().step == 2
    finally:
        REWARDS.unregister("test-asks-s2s")
    last = run.checkpoint("last")
    assert (last / "adapter_model.safetensors").is_file()
    policy, meta = load_policy(last)
    assert isinstance(policy, PretrainedSeq2SeqPolicy) and meta["backend"] == "seq2seq-lm" and meta["adapter"]
    live = trainer.task.policy
    ctx = policy.context_ids(CONTEXTS, 64)
    live.model.eval()
    g = GenerateConfig(strategy="greedy", max_new_tokens=5)
    assert policy.sample(policy.model, *policy.prompts(ctx, CPU), g, bf16=False).lists() == \
        live.sample(live.model, *live.prompts(ctx, CPU), g, bf16=False).lists()
