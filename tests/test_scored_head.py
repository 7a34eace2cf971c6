"""The LM head runs only at scored positions (generator/core/scored_head.py): the logits, log-probs
and gradients equal those of the full (B, T, V) logits masked afterwards, for the seq2seq and the
causal policy, and the head really sees only the scored rows."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from coral_cli.config import resolve
from coral_cli.generator.bart.model import build_generator
from coral_cli.generator.core.batch import IGNORE, Responses
from coral_cli.generator.core.policy import Seq2SeqPolicy
from coral_cli.generator.core.scored_head import scored_logits
from coral_cli.generator.pretrained.causal import CausalPolicy
from coral_cli.tokenizer import load_tokenizer
from tests.tiny_lm import chat_tokenizer, tiny_llama

CONTEXTS = [[2129, 2024, 2017, 1029], [7592], [2054, 2003, 2115, 2171, 1029, 102, 2026, 2171]]
RESPONSES = [[1045, 2572, 2986, 1012], [7592, 999], [2026, 2171, 2003, 4172, 1012, 2054, 2055]]


def seq2seq():
    torch.manual_seed(0)
    cfg = resolve(None, {"generator.encoder_layers": 1, "generator.decoder_layers": 1, "generator.d_model": 16,
                         "generator.heads": 2, "generator.ffn_dim": 32, "generator.dropout": 0.0})
    tok = load_tokenizer("bundled")
    model = build_generator(cfg.generator, tok).eval()
    with torch.no_grad():
        model.final_logits_bias.normal_()  # a bias that must be added at the selected rows too
    return Seq2SeqPolicy(model, tok)


def causal():
    tok = chat_tokenizer()
    return CausalPolicy(tiny_llama(tok).eval(), tok)


def full_logprobs(policy, batch) -> torch.Tensor:
    """The reference: every position through the head, then masked."""
    logits = policy.logits(policy.model, batch).float()
    logp = F.log_softmax(logits, -1).gather(-1, batch.labels.clamp(min=0)[..., None]).squeeze(-1)
    return logp * batch.labels.ne(IGNORE)


@pytest.mark.parametrize("make", [seq2seq, causal], ids=["seq2seq", "causal"])
def test_scored_positions_only_give_the_full_logprobs_and_gradients(make):
    policy = make()
    batch, _, _ = policy.ground_truth(CONTEXTS, RESPONSES, "cpu")
    scored = batch.labels.ne(IGNORE)
    assert 0 < int(scored.sum()) < scored.numel()  # padding is there to skip

    seen = []
    head = policy.model.get_output_embeddings()
    handle = head.register_forward_hook(lambda _m, args, _out: seen.append(tuple(args[0].shape)))
    fast = policy.logprobs(policy.model, batch)
    handle.remove()
    assert seen == [(int(scored.sum()), head.in_features)]  # the head ran on the scored rows only

    slow = full_logprobs(policy, batch)
    torch.testing.assert_close(fast, slow, rtol=1e-5, atol=1e-5)
    assert (fast[~scored] == 0).all() and (fast[scored] < 0).all()
    torch.testing.assert_close(policy.scored_logits(policy.model, batch),
                               policy.logits(policy.model, batch)[scored], rtol=1e-5, atol=1e-5)
    # the ground truth's count is known on the host: the rows are gathered by index (no sync), and
    # a batch without the count (boolean index) gives the same log-probs
    assert batch.scored == int(scored.sum())
    assert batch.scored_index().tolist() == scored.flatten().nonzero().squeeze(1).tolist()
    batch.scored = None
    torch.testing.assert_close(policy.logprobs(policy.model, batch), fast, rtol=0, atol=0)
    batch.scored = int(scored.sum())

    weights = torch.linspace(-1, 2, scored.shape[0])[:, None]  # CORAL's per-sequence R3 (eq. 2)
    grads = []
    for logp in (policy.logprobs, lambda m, b: full_logprobs(policy, b)):
        policy.model.zero_grad()
        (weights * logp(policy.model, batch)).sum().backward()
        grads.append({n: p.grad.clone() for n, p in policy.model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], rtol=1e-4, atol=1e-6, msg=name)


def test_a_model_without_a_hugging_face_head_gets_its_full_logits_masked():
    class Plain(torch.nn.Module):
        def forward(self, x):
            return x * 2

    x = torch.randn(2, 3, 5)
    where = torch.tensor([[True, False, True], [False, False, True]])
    model = Plain()
    torch.testing.assert_close(scored_logits(lambda: model(x), model, where), (x * 2)[where])
    index = where.flatten().nonzero().squeeze(1)
    torch.testing.assert_close(scored_logits(lambda: model(x), model, where, index), (x * 2)[where])


def test_a_hidden_state_that_does_not_match_the_labels_is_a_clear_error():
    policy = seq2seq()
    batch, _, _ = policy.ground_truth(CONTEXTS, RESPONSES, "cpu")
    batch.labels = batch.labels[:, :-1]
    with pytest.raises(RuntimeError, match="labels are"):
        policy.scored_logits(policy.model, batch)


def test_responses_cut_without_an_end_token_score_only_their_tokens():
    policy = seq2seq()
    ids, mask = policy.prompts(CONTEXTS, "cpu")
    responses = Responses.from_lists(RESPONSES, policy.pad_id, "cpu")
    responses.ended = torch.tensor([True, False, True])
    batch = policy.teacher(ids, mask, responses)
    torch.testing.assert_close(policy.logprobs(policy.model, batch), full_logprobs(policy, batch), rtol=1e-5, atol=1e-5)
    assert int(batch.labels.ne(IGNORE).sum()) == sum(map(len, RESPONSES)) + 2
