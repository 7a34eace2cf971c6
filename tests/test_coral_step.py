"""The CORAL step in one place: the pure loss, candidates (samplers' own on_policy flags, RLOO's
per-row weights), plain-function rewards, seeded validation-R3, bf16 switches, NaN-aware logs."""

import numpy as np
import pytest
import torch

from coral_cli.config import resolve
from coral_cli.errors import ConfigError
from coral_cli.generator.core.policy import Seq2SeqPolicy
from coral_cli.objectives.candidates import draw_candidates
from coral_cli.objectives.coral_loss import coral_loss
from coral_cli.objectives.reward_input import score_candidates
from coral_cli.registry import REWARDS, SAMPLERS
from coral_cli.rewards.callable import CallableReward
from coral_cli.runs import run_dir
from coral_cli.samplers.base import Candidates
from coral_cli.tasks.train import build_objective, generator_trainer, load_training_reward
from coral_cli.training.loop import _mean
from tests.fixed_rewards import ResponseTokenReward, make
from tests.test_coral_objective import CONTEXTS, CPU, POOL, POSITIVES, batch, hand_logprob_sums, tiny, tok  # noqa: F401
from tests.tiny_generator import write_recipe


def question(contexts, responses):
    """The plain-function twin of ResponseTokenReward: 0.9 when the reply asks something."""
    return [0.9 if "?" in r else 0.1 for r in responses]


class FixedOnPolicy:
    """An on-policy sampler stand-in with a known output: 'hello' k times per row."""

    on_policy = True
    calls: list = []

    def __init__(self, env):
        self.env = env

    def sample(self, request):
        FixedOnPolicy.calls.append(request.k)
        return Candidates.from_lists([[7592]] * (len(request.contexts) * request.k), 0, CPU)


class OffPolicyNamedOnPolicy(FixedOnPolicy):
    on_policy = False


class PaddedOnPolicy(FixedOnPolicy):
    """'hello' padded to a decoding budget of 12, as `generate` returns a sample that ended early."""

    def sample(self, request):
        return Candidates.from_lists([[7592]] * (len(request.contexts) * request.k), 0, CPU, multiple=12)


@pytest.fixture(scope="module", autouse=True)
def plugins():
    SAMPLERS.register("test-fixed-on", FixedOnPolicy, replace=True)
    SAMPLERS.register("test-fixed-off", OffPolicyNamedOnPolicy, replace=True)
    SAMPLERS.register("test-padded-on", PaddedOnPolicy, replace=True)
    REWARDS.register("test-question-fn", question, replace=True)
    yield
    for name in ("test-fixed-on", "test-fixed-off", "test-padded-on"):
        SAMPLERS.unregister(name)
    REWARDS.unregister("test-question-fn")


def test_coral_loss_equals_hand_computed_values():
    logp = torch.tensor([-2.0, -6.0, -3.0], requires_grad=True)
    r3 = torch.tensor([0.5, -0.25, 1.0])
    n = torch.tensor([2, 3, 1])
    loss, stats = coral_loss(logp, r3, n, "sequence")
    assert loss.item() == pytest.approx((0.5 * 2 - 0.25 * 6 + 1.0 * 3) / 3)
    loss.backward()
    torch.testing.assert_close(logp.grad, -r3 / 3)  # REINFORCE: d/dlogP = -R3 / rows
    assert stats["nll"].item() == pytest.approx(11 / 6)
    loss, _ = coral_loss(logp, r3, n, "token")
    assert loss.item() == pytest.approx(2.5 / 6)
    # two samples of one row weigh one row together: rows = 2
    loss, stats = coral_loss(logp, r3, n, "sequence", torch.tensor([1.0, 0.5, 0.5]))
    assert loss.item() == pytest.approx((0.5 * 2 + 0.5 * (-0.25 * 6) + 0.5 * 3) / 2)
    assert stats["r3"].item() == pytest.approx((0.5 + 0.5 * -0.25 + 0.5 * 1.0) / 2)
    with pytest.raises(ValueError):
        coral_loss(logp, r3, n, "batch")


def test_rloo_weights_each_row_once_so_p_plus_keeps_its_meaning(tok):
    cfg, model = tiny(tok, p_plus=0.5, policy="mix", baseline="rloo", rloo_k=4, on_policy_sampler="test-fixed-on")
    objective = build_objective(cfg, make(ResponseTokenReward, "test-question", tok), Seq2SeqPolicy(model, tok), POOL, CPU)
    b = batch(tok, seed=1)
    src = np.random.default_rng(1).random(3) < 0.5  # what choose_sources will draw for this seed
    cs = draw_candidates(cfg.objective, objective.samplers, model, batch(tok, seed=1), 0)
    per_row = torch.zeros(3).index_add_(0, cs.row, cs.weight)
    torch.testing.assert_close(per_row, torch.ones(3))  # every row weighs one, however many samples
    positive_weight = (cs.weight * cs.kind.eq(0)).sum() / cs.weight.sum()
    assert positive_weight.item() == pytest.approx(src.mean())
    assert cs.kind[cs.kind.ne(0)].eq(1).all() and FixedOnPolicy.calls[-1] == 4
    assert cs.groups == [(int(src.sum()), int(src.sum()) + 4 * int((~src).sum()), 4)]
    loss, stats = objective(model, b)
    assert torch.isfinite(loss) and stats["neg_share"].item() == pytest.approx(1 - src.mean())


def test_samplers_own_on_policy_flag_decides_their_slot(tok):
    with pytest.raises(ConfigError, match="not an on-policy sampler"):
        cfg, model = tiny(tok, policy="mix", on_policy_sampler="test-fixed-off")
        build_objective(cfg, make(ResponseTokenReward, "test-question", tok), Seq2SeqPolicy(model, tok), POOL, CPU)
    with pytest.raises(ConfigError, match="samples on-policy"):
        cfg, model = tiny(tok, policy="off", negative_sampler="test-fixed-on")
        build_objective(cfg, make(ResponseTokenReward, "test-question", tok), Seq2SeqPolicy(model, tok), POOL, CPU)
    # an on-policy sampler in the on-policy slot: its candidates are kind 1 (on-policy)
    cfg, model = tiny(tok, p_plus=0.0, policy="mix", on_policy_sampler="test-fixed-on")
    objective = build_objective(cfg, make(ResponseTokenReward, "test-question", tok), Seq2SeqPolicy(model, tok), POOL, CPU)
    cs = draw_candidates(cfg.objective, objective.samplers, model, batch(tok), 0)
    assert cs.kind.tolist() == [1, 1, 1] and cs.groups == []


def test_candidates_on_a_cpu_end_at_the_longest_and_the_loss_ignores_the_padding(tok):
    """Samples arrive as wide as the decoding budget: on a CPU the set is cut after its longest
    candidate (less decoder work), and the step's loss is the one of the tight set."""
    losses = {}
    for name in ("test-padded-on", "test-fixed-on"):
        cfg, model = tiny(tok, p_plus=0.0, policy="mix", on_policy_sampler=name)
        policy = Seq2SeqPolicy(model, tok)
        objective = build_objective(cfg, make(ResponseTokenReward, "test-question", tok), policy, POOL, CPU)
        cs = draw_candidates(cfg.objective, objective.samplers, model, batch(tok), 0)
        assert cs.cand.ids.shape[1] == 1  # 'hello', not the budget's 12 columns
        torch.manual_seed(0)
        losses[name] = objective(model, batch(tok))[0]
    torch.testing.assert_close(losses["test-padded-on"], losses["test-fixed-on"])


@pytest.mark.parametrize("backend", ["seq2seq", "causal"])
def test_label_count_is_what_teacher_forcing_scores(tok, backend):
    """`Responses.label_count` (the CORAL step's one read-back) is the `Policy.teacher` contract:
    each response's tokens, plus its end token where it ended; a sample cut at the budget has none."""
    from coral_cli.generator.core.batch import IGNORE
    from coral_cli.generator.pretrained.causal import CausalPolicy
    from tests.tiny_lm import chat_tokenizer, tiny_llama

    if backend == "seq2seq":
        policy = Seq2SeqPolicy(tiny(tok)[1], tok)
    else:
        chat = chat_tokenizer()
        policy = CausalPolicy(tiny_llama(chat), chat)
    cand = Candidates.from_lists([[7, 8, 9], [10], [11, 12]], policy.pad_id, CPU, multiple=6)
    cand.ended = torch.tensor([True, False, True])  # the second was cut at the decoding budget
    ids, mask = policy.prompts([[5, 6], [5], [6, 7, 8]], CPU)
    seq = policy.teacher(ids, mask, cand)
    assert cand.label_count() == int(seq.labels.ne(IGNORE).sum()) == 3 + 1 + 2 + 2
    seq.scored = cand.label_count()
    torch.testing.assert_close(policy.logprobs(policy.model, seq),  # the static-size index gathers the same rows
                               policy.logprobs(policy.model, policy.teacher(ids, mask, cand)))


def test_rloo_without_on_policy_samples_is_a_config_error():
    with pytest.raises(ConfigError, match="rloo"):
        resolve(None, {"objective.baseline": "rloo", "objective.policy": "off"})
    with pytest.raises(ConfigError, match="rloo"):
        resolve(None, {"objective.baseline": "rloo", "objective.random_ratio": 1.0})
    resolve(None, {"objective.baseline": "rloo", "objective.policy": "mix"})


def test_a_plain_function_is_a_reward_and_matches_the_same_reward_model(tok):
    cfg, model = tiny(tok, p_plus=0.4, margin=0.2, policy="off")
    as_model = build_objective(cfg, make(ResponseTokenReward, "test-question", tok), Seq2SeqPolicy(model, tok), POOL, CPU)
    as_function = build_objective(cfg, CallableReward(question), Seq2SeqPolicy(model, tok), POOL, CPU)
    expected, _ = as_model(model, batch(tok, seed=4))
    got, stats = as_function(model, batch(tok, seed=4))
    assert got.item() == pytest.approx(expected.item(), rel=1e-6)
    # the function sees text: the contexts' utterances and the detokenised responses
    seen = {}
    reward = CallableReward(lambda c, r: seen.update(c=c, r=r) or [0.5] * len(r))
    cand = Candidates.from_lists([POSITIVES[0]], 0, CPU)
    f = score_candidates(reward, Seq2SeqPolicy(model, tok), [[7592, tok.sep_token_id, 2129]], [["hello", "how"]], cand)
    assert f.tolist() == [0.5]
    assert seen == {"c": [["hello", "how"]], "r": ["i am fine ."]}
    # registered by name, a function needs no checkpoint
    named = resolve(None, {"objective.reward": "test-question-fn"})
    assert isinstance(load_training_reward(named, CPU), CallableReward)


def test_a_reward_function_returning_the_wrong_count_is_a_clear_error(tok):
    reward = CallableReward(lambda c, r: [0.5])
    with pytest.raises(Exception, match="returned 1 scores for 2 responses"):
        reward.score([["a"], ["b"]], ["x", "y"])


@pytest.fixture(scope="module")
def question_trainer(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("step")
    cfg = resolve(write_recipe(tmp), {"objective.loss": "coral", "objective.reward": "test-question-fn",
                                      "generate.strategy": "nucleus", "generate.max_new_tokens": 6,
                                      "generator.eval_pairs": 4, "train.max_steps": 2})
    return generator_trainer(cfg, run_dir(tmp, "fn").create(cfg, "x"), [])


@pytest.mark.slow
def test_validation_r3_is_seeded_and_leaves_the_training_rng_alone(question_trainer):
    task = question_trainer.task
    before = torch.get_rng_state()
    first = task.evaluate()
    assert torch.equal(torch.get_rng_state(), before)  # training draws the same after an evaluation
    torch.manual_seed(123)  # whatever the training RNG holds, validation decodes the same
    second = task.evaluate()
    assert first["val_R3"] == second["val_R3"] and first["samples"] == second["samples"]


@pytest.mark.slow
def test_training_with_a_reward_function_runs_end_to_end(question_trainer):
    state = question_trainer.fit()
    assert state.step == 2
    records = question_trainer.run.read_metrics()
    assert any(r.get("event") == "eval" and r.get("val_R3") is not None for r in records)


def test_window_means_ignore_batches_without_positives():
    assert _mean([torch.tensor(float("nan")), torch.tensor(0.5), torch.tensor(0.25)]) == pytest.approx(0.375)
    assert _mean([float("nan"), 1.0]) == 1.0
    assert np.isnan(_mean([torch.tensor(float("nan"))]))


def test_bf16_false_reaches_sampling_and_reward_scoring(tok, monkeypatch):
    import coral_cli.generator.decoding.sampling as sampling
    import coral_cli.rewards.base as base

    seen = []
    spy = lambda device, enabled=True: seen.append(enabled)  # noqa: E731 (returns None: fp32)
    monkeypatch.setattr(sampling, "decoding_dtype", spy)
    monkeypatch.setattr(base, "autocast_dtype", spy)
    cfg, model = tiny(tok, p_plus=0.0, policy="mix", sample_max_new_tokens=2)
    cfg.train.bf16 = False
    reward = make(ResponseTokenReward, "test-question", tok)
    reward.bf16 = cfg.train.bf16  # what load_training_reward does with a checkpoint
    objective = build_objective(cfg, reward, Seq2SeqPolicy(model, tok), POOL, CPU)
    objective(model, batch(tok))
    assert seen and not any(seen)  # sampler and reward both asked for full precision


def test_dmi_pools_like_the_backbone_was_trained():
    from coral_cli.rewards.checkpoint import build_reward
    from coral_cli.rewards.heads import pool, resolve_pooling

    assert resolve_pooling("auto", "bundled") == "mean" and resolve_pooling("auto", "random") == "cls"
    hidden = torch.arange(12.0).view(1, 3, 4)
    torch.testing.assert_close(pool(hidden, torch.tensor([[True, True, False]]), "mean"), hidden[:, :2].mean(1))
    torch.testing.assert_close(pool(hidden, torch.ones(1, 3, dtype=torch.bool), "cls"), hidden[:, 0])
    cfg = resolve(None, {"retriever.model": "dmi", "retriever.backbone_layers": 1}).retriever
    assert build_reward(cfg, "bundled").args.pooling == "mean"  # the bundled MiniLM: [CLS] is near constant
