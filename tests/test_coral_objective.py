from types import SimpleNamespace

import numpy as np
import pytest
import torch

from coral_cli.config import resolve
from coral_cli.generator.bart.model import build_generator
from coral_cli.generator.core.batch import TrainBatch
from coral_cli.generator.core.policy import Seq2SeqPolicy
from coral_cli.objectives.candidates import choose_sources
from coral_cli.objectives.cross_entropy import CrossEntropy
from coral_cli.samplers.base import Candidates
from coral_cli.tasks.train import build_objective
from coral_cli.tokenizer import load_tokenizer
from tests.fixed_rewards import ConstantReward, ResponseTokenReward, make

CPU = torch.device("cpu")
NO_GROUPS = SimpleNamespace(groups=[])
POOL = [[2748, 1012], [2053, 1010, 2025, 2085, 1012], [7592, 999], [2339, 1029], [4931, 2035]]
CONTEXTS = [[7592, 1010, 2129, 2024, 2017, 1029], [2054, 2051, 2003, 2009, 1029], [2175, 2188]]
POSITIVES = [[1045, 2572, 2986, 1012], [2009, 1005, 1055, 2416, 1029], [2748]]


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer("bundled")


def tiny(tok, **objective):
    over = {"generator.encoder_layers": 1, "generator.decoder_layers": 1, "generator.d_model": 16,
            "generator.heads": 2, "generator.ffn_dim": 32, "generator.dropout": 0.0,
            **{f"objective.{k}": v for k, v in objective.items()}}
    cfg = resolve(None, over)
    torch.manual_seed(0)
    return cfg, build_generator(cfg.generator, tok)


def batch(tok, seed=0, pool_index=(-1, -1, 0)):
    teacher, ids, mask = Seq2SeqPolicy(None, tok).ground_truth(CONTEXTS, POSITIVES, CPU)
    texts = [[tok.decode(c)] for c in CONTEXTS]  # one utterance each, for rewards that read text
    return TrainBatch(teacher, ids, mask, CONTEXTS, POSITIVES, np.array(pool_index), np.random.default_rng(seed), texts)


def hand_logprob_sums(model, tok, responses, ended=True):
    """sum_t log P(r_t | r_<t, c) per row, computed one example at a time."""
    out = []
    for ctx, resp in zip(CONTEXTS, responses):
        enc = torch.tensor([[tok.cls_token_id, *ctx, tok.sep_token_id]])
        dec = torch.tensor([[tok.cls_token_id, *resp]])
        logits = model(input_ids=enc, decoder_input_ids=dec).logits[0]
        targets = [*resp, tok.sep_token_id] if ended else resp
        out.append(sum(torch.log_softmax(logits[t], -1)[y] for t, y in enumerate(targets)))
    return torch.stack(out)


def test_loss_equals_hand_computed_value_with_fixed_rewards(tok):
    cfg, model = tiny(tok, p_plus=1.0, margin=0.3, policy="off")
    reward = make(ResponseTokenReward, "test-question", tok)
    objective = build_objective(cfg, reward, Seq2SeqPolicy(model, tok), POOL, CPU)
    loss, stats = objective(model, batch(tok))
    f = torch.tensor([0.1, 0.9, 0.1])  # only the second ground truth contains '?'
    expected = (-(f - 0.3) * hand_logprob_sums(model, tok, POSITIVES)).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert stats["r3_pos"].item() == pytest.approx((f - 0.3).mean().item(), rel=1e-5)
    assert stats["neg_share"].item() == 0.0


def test_negatives_are_weighted_by_their_own_reward(tok):
    cfg, model = tiny(tok, p_plus=0.0, margin=0.5, policy="off")
    reward = make(ResponseTokenReward, "test-question", tok)
    objective = build_objective(cfg, reward, Seq2SeqPolicy(model, tok), POOL, CPU)
    captured = {}
    sampler = objective.samplers["random"]
    original = sampler.sample

    def spy(request):
        cand = original(request)
        captured["ids"] = [r[m].tolist() for r, m in zip(cand.ids, cand.mask)]
        return cand

    sampler.sample = spy
    loss, stats = objective(model, batch(tok, seed=3))
    negatives = captured["ids"]
    f = torch.tensor([0.9 if 1029 in r else 0.1 for r in negatives])
    expected = (-(f - 0.5) * hand_logprob_sums(model, tok, negatives)).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert stats["neg_share"].item() == 1.0


def test_gradient_equals_cross_entropy_at_p1_m0_reward1_token_normalisation(tok):
    cfg, model = tiny(tok, p_plus=1.0, margin=0.0, normalize="token")
    coral = build_objective(cfg, make(ConstantReward, "test-constant", tok), Seq2SeqPolicy(model, tok), POOL, CPU)
    loss, _ = coral(model, batch(tok))
    loss.backward()
    coral_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    ce, _ = CrossEntropy(Seq2SeqPolicy(model, tok))(model, batch(tok))
    ce.backward()
    assert loss.item() == pytest.approx(ce.item(), rel=1e-6)
    for g1, p in zip(coral_grads, model.parameters()):
        torch.testing.assert_close(g1, p.grad, rtol=1e-5, atol=1e-7)


def test_random_negatives_are_never_the_ground_truth(tok):
    cfg, model = tiny(tok, p_plus=0.0, policy="off")
    objective = build_objective(cfg, make(ConstantReward, "test-constant", tok), Seq2SeqPolicy(model, tok), POOL + [POSITIVES[0]], CPU)
    sampler = objective.samplers["random"]
    from coral_cli.samplers.base import SampleRequest

    for seed in range(50):
        req = SampleRequest(CONTEXTS, POSITIVES, np.array([5, -1, 0]), None, None, np.random.default_rng(seed), model, k=3)
        cand = sampler.sample(req)
        rows = [r[m].tolist() for r, m in zip(cand.ids, cand.mask)]
        for i, row in enumerate(rows):
            assert row != POSITIVES[i // 3]


def test_on_policy_negatives_come_from_the_model(tok):
    cfg, model = tiny(tok, p_plus=0.0, policy="mix", sample_max_new_tokens=4)
    with torch.no_grad():
        model.final_logits_bias[0, 7592] = 1e4  # the policy now always says 'hello'
    objective = build_objective(cfg, make(ConstantReward, "test-constant", tok), Seq2SeqPolicy(model, tok), POOL, CPU)
    captured = {}
    original = objective.samplers["nucleus"].sample
    objective.samplers["nucleus"].sample = lambda req: captured.setdefault("c", original(req))
    objective(model, batch(tok))
    cand = captured["c"]
    assert cand.ids.tolist() == [[7592] * 4] * 3 and not cand.ended.any()
    assert model.training  # sampling switched to eval and back


def test_choose_sources_follows_p_plus(tok):
    cfg, _ = tiny(tok, p_plus=0.8, policy="mix", random_ratio=0.25)
    src = choose_sources(np.random.default_rng(0), 20_000, cfg.objective)
    assert abs((src == 0).mean() - 0.8) < 0.01
    assert abs((src == 2).mean() / (src != 0).mean() - 0.25) < 0.02


def test_teacher_batch_marks_sep_only_where_the_candidate_ended(tok):
    cand = Candidates(torch.tensor([[5, 6, 0], [7, 8, 9]]), torch.tensor([[True, True, False], [True, True, True]]),
                      torch.tensor([True, False]))
    enc = torch.ones(2, 3, dtype=torch.long)
    seq = Seq2SeqPolicy(None, tok).teacher(enc, enc.bool(), cand)
    assert seq.decoder_input_ids.tolist() == [[101, 5, 6, 0], [101, 7, 8, 9]]
    assert seq.labels.tolist() == [[5, 6, 102, -100], [7, 8, 9, -100]]


def test_rloo_and_moving_average_baselines(tok):
    cfg, model = tiny(tok, p_plus=0.0, policy="mix", baseline="rloo", rloo_k=2, sample_max_new_tokens=3)
    objective = build_objective(cfg, make(ResponseTokenReward, "test-question", tok), Seq2SeqPolicy(model, tok), POOL, CPU)
    f = torch.tensor([0.2, 0.9, 0.5, 0.1, 0.7])
    b = objective.baseline(f, SimpleNamespace(groups=[(1, 5, 2)]))
    torch.testing.assert_close(b, torch.tensor([0.0, 0.5, 0.9, 0.7, 0.1]))
    loss, stats = objective(model, batch(tok))
    assert torch.isfinite(loss)
    cfg, model = tiny(tok, baseline="moving-average", ema_decay=0.5)
    objective = build_objective(cfg, make(ResponseTokenReward, "test-question", tok), Seq2SeqPolicy(model, tok), POOL, CPU)
    ones = SimpleNamespace(groups=[], weight=torch.ones(2))
    torch.testing.assert_close(objective.baseline(torch.tensor([0.2, 0.4]), ones), torch.tensor([0.0, 0.0]))  # m
    objective.update_ema(torch.tensor([0.2, 0.4]), ones)
    torch.testing.assert_close(objective.baseline(torch.tensor([0.5, 0.5]), ones), torch.tensor([0.3, 0.3]))
    objective.update_ema(torch.tensor([0.5, 0.5]), ones)  # (0.5 * 0.5 * 0.3 + 0.5 * 0.5) / (1 - 0.5^2)
    torch.testing.assert_close(objective.baseline(torch.tensor([0.0, 0.0]), ones), torch.full((2,), 0.325 / 0.75))
