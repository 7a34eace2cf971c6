"""The KL guard's math: which gradient each estimator follows (Monte-Carlo against the analytic
gradient on a small categorical policy), on-policy samples only, the same dropout on both sides,
normalised like the CORAL term; and the moving-average baseline that never sees its own batch."""

import copy

import pytest
import torch

from coral_cli.generator.core.policy import Seq2SeqPolicy
from coral_cli.objectives.coral_loss import coral_loss
from coral_cli.objectives.kl import kl_penalty
from coral_cli.tasks.train import build_objective
from tests.fixed_rewards import ResponseTokenReward, make
from tests.test_coral_objective import CPU, POOL, batch, tiny, tok  # noqa: F401
from tests.test_coral_step import plugins  # noqa: F401  (registers the fixed on-policy sampler)

K = 5


def _categorical():
    theta = torch.tensor([0.8, -0.3, 0.1, 1.2, -1.0], requires_grad=True)
    ref = torch.log_softmax(torch.tensor([0.2, 0.5, -0.4, 0.0, 0.3]), 0)
    return theta, ref


def _analytic(theta, ref, reverse=False):
    """grad_theta KL(pi || ref), or KL(ref || pi), in closed form through autograd."""
    t = theta.detach().clone().requires_grad_(True)
    logpi = torch.log_softmax(t, 0)
    kl = (ref.exp() * (ref - logpi)).sum() if reverse else (logpi.exp() * (logpi - ref)).sum()
    (g,) = torch.autograd.grad(kl, t)
    return g


def _monte_carlo(estimator, n=400_000, seed=0):
    """The mean over y ~ pi of the gradient of the estimator's loss."""
    theta, ref = _categorical()
    logpi = torch.log_softmax(theta, 0)
    y = torch.multinomial(logpi.exp().detach(), n, replacement=True, generator=torch.Generator().manual_seed(seed))
    logp = logpi[y][:, None]  # (n, 1): one-token "sequences"
    term, _ = kl_penalty(logp, ref[y][:, None], torch.ones(n, 1), estimator)
    term.mean().backward()
    return theta.grad, _analytic(theta, ref), _analytic(theta, ref, reverse=True)


@pytest.mark.parametrize("estimator", ["k1-reward", "k2"])
def test_the_loss_gradient_is_the_gradient_of_kl_pi_ref(estimator):
    mc, forward, reverse = _monte_carlo(estimator)
    torch.testing.assert_close(mc, forward, atol=4e-3, rtol=0)
    assert (forward - reverse).abs().max() > 0.05  # the two divergences are told apart at this tolerance


def test_k3_follows_the_reverse_kl_as_its_label_says():
    mc, forward, reverse = _monte_carlo("k3")
    torch.testing.assert_close(mc, reverse, atol=4e-3, rtol=0)
    assert (mc - forward).abs().max() > 0.05


def test_k1_reward_follows_the_whole_sequence_kl():
    """Two-token sequences from a policy whose second token depends on the first: the k1-reward
    gradient matches grad KL(pi || ref) over sequences (k2's per-token gradient would not)."""
    a = torch.tensor([0.5, -0.5], requires_grad=True)  # first token
    b = torch.tensor([[1.0, -1.0], [-0.7, 0.4]], requires_grad=True)  # second token given the first
    ra, rb = torch.log_softmax(torch.tensor([0.0, 0.3]), 0), torch.log_softmax(torch.tensor([[0.2, 0.0], [0.0, 0.9]]), 1)

    def kl_exact():
        la, lb = torch.log_softmax(a, 0), torch.log_softmax(b, 1)
        return sum(la[i].exp() * lb[i, j].exp() * (la[i] + lb[i, j] - ra[i] - rb[i, j]) for i in range(2) for j in range(2))

    exact = torch.autograd.grad(kl_exact(), [a, b])
    n, g = 400_000, torch.Generator().manual_seed(1)
    la, lb = torch.log_softmax(a, 0), torch.log_softmax(b, 1)
    y1 = torch.multinomial(la.exp().detach(), n, replacement=True, generator=g)
    y2 = torch.bernoulli(lb.exp().detach()[y1, 1], generator=g).long()
    logp = torch.stack([la[y1], lb[y1, y2]], 1)  # (n, 2)
    ref = torch.stack([ra[y1], rb[y1, y2]], 1)
    term, _ = kl_penalty(logp, ref, torch.ones(n, 2), "k1-reward")
    mc = torch.autograd.grad(term.mean(), [a, b])
    for got, want in zip(mc, exact):
        torch.testing.assert_close(got, want, atol=6e-3, rtol=0)


def test_masked_tokens_get_no_kl_value_and_no_gradient():
    logp = torch.tensor([[-1.0, -2.0], [-0.3, float("-inf")]], requires_grad=True)
    ref = torch.tensor([[-1.5, -1.0], [-2.0, -1.0]])
    mask = torch.tensor([[0, 0], [1, 0]])  # row 0: a ground truth; row 1: one on-policy token
    for estimator in ("k1-reward", "k2", "k3"):
        term, value = kl_penalty(logp, ref, mask, estimator)
        (grad,) = torch.autograd.grad(term.sum(), logp)
        assert grad[0].abs().sum() == 0 and torch.isfinite(grad).all()
        torch.testing.assert_close(value, torch.tensor([0.0, 1.7]))
    with pytest.raises(ValueError, match="estimator"):
        kl_penalty(logp, ref, mask, "k1")  # zero expected gradient as a loss: not offered


def test_the_penalty_is_normalised_like_the_coral_term():
    logp = torch.tensor([-2.0, -6.0, -3.0])
    r3, n, w = torch.tensor([0.5, -0.2, 0.1]), torch.tensor([2, 5, 3]), torch.tensor([1.0, 0.5, 0.5])
    penalty = torch.tensor([0.0, 0.4, 1.0])
    token, _ = coral_loss(logp, r3, n, "token", w, penalty)
    seq, _ = coral_loss(logp, r3, n, "sequence", w, penalty)
    total = (w * (-r3 * logp + penalty)).sum()
    assert token.item() == pytest.approx((total / (w * n).sum()).item())
    assert seq.item() == pytest.approx((total / w.sum()).item())


def _objective(tok, reference_shift=0.0, **objective):
    cfg, model = tiny(tok, policy="mix", on_policy_sampler="test-fixed-on", **objective)
    obj = build_objective(cfg, make(ResponseTokenReward, "test-question", tok), Seq2SeqPolicy(model, tok), POOL, CPU)
    if reference_shift:
        obj.reference = copy.deepcopy(model).requires_grad_(False)
        with torch.no_grad():
            obj.reference.lm_head.weight.add_(reference_shift)
            obj.reference.final_logits_bias.normal_(0, 1.0)
    return cfg, model, obj


def test_the_ground_truth_and_random_negatives_get_no_kl_gradient(tok):
    """With only positives in the batch, a reference far from the policy changes nothing."""
    cfg, model, with_kl = _objective(tok, reference_shift=0.3, p_plus=0.5, kl_coef=0.5)
    cfg.objective.p_plus = 1.0  # every row its ground truth (the config check wants p+ < 1 up front)
    grads = []
    for kl_coef in (0.5, 0.0):
        cfg.objective.kl_coef = kl_coef
        model.zero_grad()
        loss, stats = with_kl(model, batch(tok, seed=3))
        loss.backward()
        grads.append([p.grad.clone() for p in model.parameters() if p.grad is not None])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b)


def test_on_policy_samples_do_get_the_kl(tok):
    cfg, model, obj = _objective(tok, reference_shift=0.3, p_plus=0.0, kl_coef=0.5)
    loss, stats = obj(model, batch(tok, seed=3))
    cfg.objective.kl_coef = 0.0
    plain, _ = obj(model, batch(tok, seed=3))
    assert abs(stats["kl"].item()) > 0.01 and abs(loss.item() - plain.item()) > 1e-4


def test_dropout_treats_policy_and_reference_alike_so_the_kl_starts_at_zero(tok):
    over = {"generator.encoder_layers": 1, "generator.decoder_layers": 1, "generator.d_model": 16,
            "generator.heads": 2, "generator.ffn_dim": 32, "generator.dropout": 0.3, "objective.policy": "mix",
            "objective.on_policy_sampler": "test-fixed-on", "objective.p_plus": 0.0, "objective.kl_coef": 0.5}
    from coral_cli.config import resolve
    from coral_cli.generator.bart.model import build_generator

    cfg = resolve(None, over)
    torch.manual_seed(0)
    model = build_generator(cfg.generator, tok).train()
    obj = build_objective(cfg, make(ResponseTokenReward, "test-question", tok), Seq2SeqPolicy(model, tok), POOL, CPU)
    _, stats = obj(model, batch(tok, seed=3))
    assert stats["kl"].item() == 0.0 and model.training


def test_the_moving_average_baseline_sees_only_earlier_batches(tok):
    """Batch 1 is judged against the margin, batch 2 against batch 1's mean, batch 3 against the
    bias-corrected EMA of batches 1-2; never against itself."""
    from types import SimpleNamespace

    _, model, obj = _objective(tok, p_plus=0.5, baseline="moving-average", ema_decay=0.9, margin=0.25)
    d, cs = 0.9, SimpleNamespace(weight=torch.ones(3), groups=[])
    f1, f2 = torch.tensor([0.9, 0.1, 0.1]), torch.tensor([0.5, 0.5, 0.5])
    assert torch.equal(obj.baseline(f1, cs), torch.full((3,), 0.25))
    obj.update_ema(f1, cs)
    assert obj.baseline(f2, cs)[0].item() == pytest.approx(f1.mean().item())
    obj.update_ema(f2, cs)
    want = (d * (1 - d) * f1.mean() + (1 - d) * 0.5) / (1 - d ** 2)
    assert obj.baseline(f1, cs)[0].item() == pytest.approx(want.item())
    # through the objective: the first step's R3 is f_R - m, whatever the batch's own mean
    _, model, fresh = _objective(tok, p_plus=0.5, baseline="moving-average", ema_decay=0.9, margin=0.25)
    _, stats = fresh(model, batch(tok, seed=2))
    assert stats["r3"].item() == pytest.approx(stats["f_R"].item() - 0.25, abs=1e-6)


def test_the_moving_average_survives_a_resume(tok):
    from types import SimpleNamespace

    from coral_cli.tasks.generator import GeneratorTask

    _, _, obj = _objective(tok, p_plus=0.5, baseline="moving-average", ema_decay=0.9)
    cs = SimpleNamespace(weight=torch.ones(2), groups=[])
    obj.update_ema(torch.tensor([0.2, 0.4]), cs)
    obj.update_ema(torch.tensor([0.6, 0.6]), cs)
    saved = GeneratorTask.extra_state(SimpleNamespace(objective=obj))
    _, _, again = _objective(tok, p_plus=0.5, baseline="moving-average", ema_decay=0.9)
    GeneratorTask.load_extra_state(SimpleNamespace(objective=again, device=CPU), saved)
    for o in (obj, again):
        o.update_ema(torch.tensor([0.9, 0.1]), cs)
    assert again.ema_batches == obj.ema_batches == 3 and again.ema.item() == pytest.approx(obj.ema.item())
