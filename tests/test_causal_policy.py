"""A pretrained decoder-only LM behind the generator contract: its chat format, response-only
labels under left padding, CE and CORAL losses against hand-computed values, and generation."""

import pytest
import torch

from coral_cli.config.schema import GenerateConfig
from coral_cli.generator.core.batch import IGNORE
from coral_cli.generator.pretrained.causal import CausalPolicy
from tests.policy_checks import CONTEXTS, CPU, assert_ce_equals_hand_nll, assert_coral_equals_hand, pairs
from tests.tiny_lm import chat_tokenizer, tiny_llama



@pytest.fixture(scope="module")
def policy():
    tok = chat_tokenizer()
    return CausalPolicy(tiny_llama(tok).eval(), tok)


def hand_nll(policy, ctx, resp):
    """-log P of every response token and the end token, one unpadded example at a time."""
    out = []
    for c, r in zip(ctx, resp):
        seq = torch.tensor([c + r + [policy.end_id]])
        logp = torch.log_softmax(policy.model(input_ids=seq).logits[0], -1)
        out.append([-logp[len(c) - 1 + t, y].item() for t, y in enumerate(r + [policy.end_id])])
    return out


def test_chat_format_alternates_roles_with_the_reply_as_the_assistant(policy):
    text = policy.tokenizer.decode(policy.context_ids([CONTEXTS[0]], 64)[0])
    # the reply answers the last utterance (the user's); the one before was the assistant's
    assert text.startswith("assistant : hello") and "user : fine" in text and text.endswith("assistant :")
    short = policy.context_ids([CONTEXTS[0]], 12)[0]  # too long for both turns: the oldest is dropped
    assert policy.tokenizer.decode(short).startswith("user : fine") and len(short) <= 12
    assert policy.format == "chat" and policy.kind == "causal"


def test_kept_turns_as_chat_messages_give_the_same_prompt(policy):
    """What `coral bench` hands trl's GRPOTrainer: the kept turns as messages, which its chat
    template turns into exactly our prompt ids."""
    for budget in (64, 12):
        kept = policy.kept_turns(CONTEXTS[0], budget)
        ids = policy.tokenizer.apply_chat_template(policy.messages(kept), add_generation_prompt=True, tokenize=True,
                                                   return_dict=True)["input_ids"]
        assert list(ids) == policy.context_ids([CONTEXTS[0]], budget)[0]
    assert len(policy.kept_turns(CONTEXTS[0], 12)) == 1 and policy.messages(["a", "b"])[1]["role"] == "user"


def test_labels_cover_the_response_and_end_token_only_under_left_padding(policy):
    ctx, resp = pairs(policy)
    batch, ids, mask = policy.ground_truth(ctx, resp, CPU)
    assert not mask[1, 0] and mask[0, 0]  # the shorter prompt is left-padded
    for row, r in enumerate(resp):
        assert batch.labels[row][batch.labels[row].ne(IGNORE)].tolist() == r + [policy.end_id]
    assert_ce_equals_hand_nll(policy, hand_nll)


def test_coral_loss_with_fixed_rewards_equals_hand_computed(policy):
    assert_coral_equals_hand(policy, hand_nll)


def test_batched_generation_matches_one_at_a_time_and_stops_at_the_end_token(policy):
    ctx, _ = pairs(policy)
    g = GenerateConfig(strategy="greedy", max_new_tokens=6, min_new_tokens=0)
    ids, mask = policy.prompts(ctx, CPU)
    batched = policy.sample(policy.model, ids, mask, g)
    alone = [policy.sample(policy.model, *policy.prompts([c], CPU), g) for c in ctx]
    assert batched.lists() == [a.lists()[0] for a in alone]
    with torch.no_grad():
        policy.model.lm_head.weight[policy.end_id] += 100.0  # the end token now always wins
    out = policy.sample(policy.model, ids, mask, g)
    assert out.ended.all() and out.mask.sum().item() == 0
    with torch.no_grad():
        policy.model.lm_head.weight[policy.end_id] -= 100.0


def test_eos_format_without_a_chat_template(policy):
    tok = chat_tokenizer(template=None)
    plain = CausalPolicy(policy.model, tok)
    ids = plain.context_ids([["hi", "yo"]], 64)[0]
    assert plain.format == "eos" and tok.decode(ids) == "hi [SEP] yo [SEP]"
    assert plain.fingerprint != policy.fingerprint


# SmolLM2's template, shortened: a default system prompt when the conversation has none
DEFAULT_SYSTEM = ("{% for m in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
                  "system : you are a helpful assistant named bot [SEP] {% endif %}"
                  "{{ m.role }} : {{ m.content }} [SEP] {% endfor %}{% if add_generation_prompt %}assistant :{% endif %}")


def test_a_template_default_system_prompt_never_reaches_the_context():
    tok = chat_tokenizer(template=DEFAULT_SYSTEM)
    policy = CausalPolicy(tiny_llama(tok), tok)
    prompt = tok.decode(policy.context_ids([["how are you ?", "fine , and you ?"]], 64)[0])
    assert "helpful" not in prompt and "named bot" not in prompt
    assert prompt.startswith("system : [SEP] assistant : how are you?")
    plain = CausalPolicy(tiny_llama(chat_tokenizer()), chat_tokenizer())  # no default: nothing added
    assert not plain.blank_system and "system" not in chat_tokenizer().decode(plain.context_ids([["hi"]], 64)[0])
