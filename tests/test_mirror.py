"""The Mirror baseline (`--loss mirror`): its loss against hand-computed values, the prompt split
into context and query, a tiny training slice (the loss falls; generate and chat load the
checkpoint), save -> resume exactness, and clear errors for misuse."""

import json
import math

import numpy as np
import pytest
import torch

from coral_cli.config import resolve
from coral_cli.config.schema import GenerateConfig
from coral_cli.errors import AssetError, ConfigError
from coral_cli.generator.core.batch import IGNORE, TrainBatch
from coral_cli.generator.mirror.model import MirrorOutput
from coral_cli.generator.mirror.policy import MirrorPolicy, build_mirror
from coral_cli.objectives.mirror import MirrorObjective, gaussian_kl, mirror_loss
from coral_cli.tokenizer import load_tokenizer

CPU = torch.device("cpu")
TINY = {"objective.loss": "mirror", "generator.mirror.embedding_dim": 16, "generator.mirror.hidden": 24,
        "generator.mirror.layers": 1, "generator.mirror.z_dim": 4, "generator.mirror.dropout": 0.0}
RECIPE = """
[data]
max_pairs = 16
max_context_tokens = 48
max_response_tokens = 24

[generator]
eval_pairs = 8

[generator.mirror]
embedding_dim = 32
hidden = 48
layers = 1
z_dim = 8
dropout = 0.0
kl_anneal_batches = 6

[objective]
loss = "mirror"

[train]
lr = 1e-2
warmup_steps = 2
max_epochs = 1000
max_steps = 16
batch_tokens = 8192
max_batch_size = 8
log_every = 2
eval_every = 8
save_epochs = 1000
patience = 0

[generate]
strategy = "greedy"
max_new_tokens = 8
"""


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer("bundled")


def policy(tok, **over):
    cfg = resolve(None, {**TINY, **over})
    torch.manual_seed(0)
    return cfg, MirrorPolicy(build_mirror(cfg.generator.mirror, tok), tok)


def test_loss_equals_a_hand_computed_value():
    """B = 2, V = 3, Z = 2; NLL summed over tokens, averaged over examples (the authors' 'sents')."""
    ln2, ln3 = math.log(2), math.log(3)
    uniform = torch.zeros(2, 2, 3)  # every token: -log P = log 3
    peaked = torch.tensor([ln2, 0.0, 0.0]).expand(2, 2, 3)  # P = (1/2, 1/4, 1/4)
    out = MirrorOutput(y_given_cxz=uniform, x_given_cyz=peaked, x_given_cz=peaked, y_given_cz=uniform,
                       mu_q=torch.tensor([[1.0, 0.0], [0.0, 0.0]]), logvar_q=torch.zeros(2, 2),
                       mu_p=torch.zeros(2, 2), logvar_p=torch.tensor([[0.0, 0.0], [ln2, 0.0]]))
    y_labels = torch.tensor([[0, 1], [2, IGNORE]])
    x_labels = torch.tensor([[0, IGNORE], [1, 2]])
    loss, stats = mirror_loss(out, y_labels, x_labels, kl_weight=0.5, backward_weight=2.0)
    # per example: 1/2 (NLL(y|cxz) + NLL(x|cz)) + 1/2 * 2 (NLL(x|cyz) + NLL(y|cz)) + 0.5 KL
    kl = [0.5 * 1.0, 0.5 * (ln2 + 1 / 2 - 1)]  # KL(N(1,1)||N(0,1)) in one dim; KL(N(0,1)||N(0,2))
    row0 = 0.5 * (2 * ln3 + ln2) + 1.0 * (ln2 + 2 * ln3) + 0.5 * kl[0]
    row1 = 0.5 * (ln3 + 2 * 2 * ln2) + 1.0 * (2 * 2 * ln2 + ln3) + 0.5 * kl[1]
    assert float(loss) == pytest.approx((row0 + row1) / 2, rel=1e-6)
    assert float(stats["nll"]) == pytest.approx(ln3)  # per token, forward decoder
    assert float(stats["nll_x_cz"]) == pytest.approx((ln2 + 4 * ln2) / 3)
    assert float(stats["kl"]) == pytest.approx(sum(kl) / 2)


def test_kl_is_the_closed_form_of_two_diagonal_gaussians():
    g = torch.Generator().manual_seed(0)
    mu_q, lv_q, mu_p, lv_p = (torch.randn(3, 5, generator=g) for _ in range(4))
    q = torch.distributions.Normal(mu_q, (0.5 * lv_q).exp())
    p = torch.distributions.Normal(mu_p, (0.5 * lv_p).exp())
    torch.testing.assert_close(gaussian_kl(mu_q, lv_q, mu_p, lv_p), torch.distributions.kl_divergence(q, p).sum(-1))


def test_prompts_split_into_context_and_query(tok):
    _, pol = policy(tok)
    contexts = [[7592, 1010, 102, 2129, 2024, 102, 2017, 1029], [2054, 2051], [102, 2748]]
    ids, mask = pol.prompts(contexts, CPU)
    c, x = pol.split(ids, mask)
    assert [r[:int(n)] for r, n in zip(c.ids.tolist(), c.mask.sum(1))] == [[7592, 1010, 102, 2129, 2024], [], []]
    assert [r[:int(n)] for r, n in zip(x.ids.tolist(), x.mask.sum(1))] == [[2017, 1029], [2054, 2051], [2748]]


def test_objective_runs_the_four_decoders_on_a_batch_and_anneals_the_kl(tok):
    cfg, pol = policy(tok, **{"generator.mirror.kl_anneal_batches": 4})
    contexts, responses = [[7592, 1010, 102, 2129, 1029], [2054, 2051, 1029]], [[1045, 2572], [2748, 1012, 999]]
    teacher, ids, mask = pol.ground_truth(contexts, responses, CPU)
    objective = MirrorObjective(pol, cfg.generator.mirror)
    batch = TrainBatch(teacher, ids, mask, contexts, responses, np.array([-1, -1]), np.random.default_rng(0))
    weights = []
    for _ in range(6):
        loss, stats = objective(pol.model, batch)
        weights.append(float(stats["kl_weight"]))
    assert weights == [0.0, 0.25, 0.5, 0.75, 1.0, 1.0]
    loss.backward()
    assert all(p.grad is not None for name, p in pol.model.named_parameters() if not name.startswith("embed"))
    assert float(stats["target_tokens"]) == 7  # responses + their end tokens


def test_projecting_only_scored_positions_gives_the_full_loss_and_gradients(tok):
    """The objective asks the four decoders for logits at labelled positions only; the loss and
    every gradient equal those of the full (B, T, V) logits (same z draw, dropout off)."""
    cfg, pol = policy(tok)
    pol.model.eval()
    contexts, responses = [[7592, 1010, 102, 2129, 1029], [2054, 2051, 1029]], [[1045, 2572], [2748, 1012, 999, 2000]]
    inp = pol.training_inputs(pol.ground_truth(contexts, responses, CPU)[0])
    assert inp.y_labels.eq(IGNORE).any() and inp.x_labels.eq(IGNORE).any()  # padding to skip
    runs = []
    for where in ((inp.x_labels.ne(IGNORE), inp.y_labels.ne(IGNORE)), ()):
        pol.model.zero_grad()
        torch.manual_seed(1)
        out = pol.model(inp.c, inp.x, inp.y, inp.x_in, inp.y_in, *where)
        assert out.y_given_cxz.dim() == (2 if where else 3)
        loss, _ = mirror_loss(out, inp.y_labels, inp.x_labels, kl_weight=0.5, backward_weight=1.0)
        loss.backward()
        runs.append((loss.item(), {n: p.grad.clone() for n, p in pol.model.named_parameters() if p.grad is not None}))
    assert runs[0][0] == pytest.approx(runs[1][0], rel=1e-6)
    assert runs[0][1].keys() == runs[1][1].keys()
    for name, grad in runs[0][1].items():
        torch.testing.assert_close(grad, runs[1][1][name], rtol=1e-4, atol=1e-7, msg=name)


def test_decoding_strategies_are_bounded_and_seeded(tok):
    _, pol = policy(tok)
    pol.model.eval()
    ids, mask = pol.prompts([[7592, 102, 2129, 1029], [2054]], CPU)
    for strategy, n in (("greedy", 1), ("nucleus", 3), ("beam", 2)):
        g = GenerateConfig(strategy=strategy, num_beams=3, max_new_tokens=5, num_return_sequences=n)
        torch.manual_seed(1)
        first = pol.sample(pol.model, ids, mask, g)
        torch.manual_seed(1)
        again = pol.sample(pol.model, ids, mask, g)
        assert len(first) == 2 * n and first.ids.shape[1] <= 5 and torch.equal(first.ids, again.ids)
    with pytest.raises(ValueError, match="greedy"):
        pol.sample(pol.model, ids, mask, GenerateConfig(strategy="greedy"), num_return_sequences=2)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from coral_cli.runs import run_dir
    from coral_cli.tasks.train import train_generator
    from coral_cli.training.events import StepEnd

    tmp = tmp_path_factory.mktemp("mirror")
    (tmp / "mirror.toml").write_text(RECIPE)
    cfg = resolve(str(tmp / "mirror.toml"))
    run = run_dir(tmp, "mirror").create(cfg, "coral coral train")
    losses: list[float] = []
    state = train_generator(cfg, run, [lambda e: losses.append(e.stats["nll"]) if isinstance(e, StepEnd) else None])
    return cfg, run, state, losses


@pytest.mark.slow
def test_a_tiny_slice_trains_and_the_checkpoint_generates_and_chats(trained, cli, tmp_path):
    from coral_cli.chat.loading import check_checkpoints, load_session
    from coral_cli.chat.session import ChatSettings
    from coral_cli.generation.responses import generate_for_contexts
    from coral_cli.generator.loading import load_policy

    _, run, state, losses = trained
    assert state.step == 16 and losses[-1] < losses[0] - 1.0, losses
    evals = [r for r in run.read_metrics() if r["event"] == "eval"]
    assert evals and all(math.isfinite(r["val_loss"]) for r in evals)
    last = run.checkpoint("last")
    meta = json.loads((last / "coral.json").read_text())
    assert meta["backend"] == "mirror" and meta["mirror"]["hidden"] == 48 and (last / "model.safetensors").is_file()
    pol, _ = load_policy(last)
    assert isinstance(pol, MirrorPolicy)
    out = generate_for_contexts(pol, [[7592, 1010, 102, 2129, 2024, 2017, 1029], [2748]],
                                GenerateConfig(strategy="nucleus", max_new_tokens=6, num_return_sequences=2))
    assert all(len(r["responses"]) == 2 and all(lp <= 0 for lp in r["logprobs"]) for r in out)
    result = cli("generate", "-c", str(last), "--max-pairs", "3", "--strategy", "beam", "--num-beams", "3",
                 "--max-new-tokens", "6", "--device", "cpu", "-o", str(tmp_path / "g.jsonl"))
    assert result.exit_code == 0, result.output
    rows = [json.loads(x) for x in (tmp_path / "g.jsonl").read_text().splitlines()]
    assert len(rows) == 3 and all(isinstance(r["response"], str) for r in rows)
    check_checkpoints(last, None)
    turn = load_session(last, None, "cpu", ChatSettings(n=2, max_new_tokens=5), []).say("how are you ?")
    assert len(turn.candidates) == 2 and all(0 < p <= 1 for c in turn.candidates for _, p in c.tokens)


@pytest.mark.slow
def test_resume_after_a_kill_matches_an_uninterrupted_run(tmp_path):
    from coral_cli.generator.core.checkpoint import read_meta
    from coral_cli.generator.mirror.policy import load_mirror_policy
    from tests.tiny_generator import full_and_resumed

    (tmp_path / "mirror.toml").write_text(RECIPE)
    # dropout and z draw from the RNG; the KL weight is still rising at the kill (annealed over 8 batches)
    cfg = resolve(str(tmp_path / "mirror.toml"), {"train.max_steps": 8, "train.save_every": 3, "train.eval_every": 0,
                                                  "generator.mirror.dropout": 0.2,
                                                  "generator.mirror.kl_anneal_batches": 8, "runtime.seed": 3})
    full, killed, state = full_and_resumed(cfg, tmp_path, kill_at=4)
    assert state.step == 8
    a, b = (load_mirror_policy(r.checkpoint("last"), CPU, read_meta(r.checkpoint("last"))).model.state_dict()
            for r in (full, killed))
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)
    # the last logging window (steps 7-8) lies after the resume: the same KL weight and loss
    ends = [[r for r in run.read_metrics() if r["event"] == "step"][-1] for run in (full, killed)]
    assert ends[0]["kl_weight"] == ends[1]["kl_weight"] == pytest.approx((6 + 7) / 2 / 8)
    assert ends[0]["loss"] == ends[1]["loss"]


def test_misuse_is_a_clear_error(tok, cli, tmp_path):
    from coral_cli.generator.loading import load_policy
    from coral_cli.generator.mirror.policy import save_mirror
    from coral_cli.tasks.train import build_policy

    cfg, pol = policy(tok)
    last = tmp_path / "ckpt"
    last.mkdir()
    save_mirror(pol, last, cfg.data)
    assert isinstance(load_policy(last)[0], MirrorPolicy)
    result = cli("export", "-c", str(last), "-o", str(tmp_path / "hf"))
    assert result.exit_code == 2 and "Mirror baseline" in result.stderr and not (tmp_path / "hf").exists()
    with pytest.raises(ConfigError, match="not a pretrained LM"):
        build_policy(resolve(None, {**TINY, "generator.pretrained": "smollm2"}), CPU)
    with pytest.raises(ConfigError, match="trains with --loss mirror only"):
        build_policy(resolve(None, {"objective.loss": "ce", "generator.init": str(last)}), CPU)
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in last.iterdir():
        (broken / f.name).write_bytes(f.read_bytes())
    meta = json.loads((broken / "coral.json").read_text())
    (broken / "coral.json").write_text(json.dumps({**meta, "mirror": {"hidden": "big"}}))
    with pytest.raises(AssetError, match="does not describe a Mirror model"):
        load_policy(broken)
    (broken / "coral.json").write_text(json.dumps({**meta, "mirror": {**meta["mirror"], "hidden": 32}}))
    result = cli("generate", "-c", str(broken), "--max-pairs", "2", "--device", "cpu")
    assert result.exit_code == 2 and "does not fit this Mirror model" in result.stderr and "fix:" in result.stderr
