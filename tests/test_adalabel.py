"""AdaLabel (Wang et al., ACL 2021): the adaptive soft target on hand-made tensors, the
auxiliary decoder's mask, the objective on a tiny BART, and checkpoints (plain BART + aux file)."""

import math

import numpy as np
import pytest
import torch

from coral_cli.config import resolve
from coral_cli.config.schema import AdaLabelConfig
from coral_cli.errors import AssetError, ConfigError
from coral_cli.generator.bart.aux_decoder import AUX_FILE, aux_decoder, aux_logits, target_mask
from coral_cli.generator.bart.model import build_generator, load_generator, load_generator_weights, save_generator
from coral_cli.generator.core.batch import TrainBatch
from coral_cli.generator.core.policy import Seq2SeqPolicy
from coral_cli.objectives.adalabel import AdaLabel
from coral_cli.objectives.adalabel_loss import adalabel_loss
from coral_cli.tasks.train import build_objective
from coral_cli.tokenizer import load_tokenizer

CPU = torch.device("cpu")
PLAIN = AdaLabelConfig(temperature=1.0, margin=0.0, alpha=0.0, keep_top=0, drop_top=0)
AUTHORS = AdaLabelConfig(temperature=1.0)  # margin 0.2, alpha 2, keep_top 500, drop_top 1
CONTEXTS = [[7592, 1010, 2129, 2024, 2017, 1029], [2054, 2051, 2003, 2009, 1029]]
RESPONSES = [[1045, 2572, 2986, 1012], [2748]]


def log(values):
    return torch.tensor(values).log()


def test_soft_target_and_loss_equal_hand_computed_values():
    """Vocabulary of 4 words, word 0 the padding. Row 1 (y = 1): p = (.1, .5, .3, .1) and aux
    scores (1, 1, 3, 1), so v = (0, 0, 3/4, 1/4), eps = 1 - max p = 0.5 (the cap 1 / (1 + 3/4)
    does not bite), q' = (0, .5, .375, .125): KL = .5 ln(.5/.5) + .375 ln(.375/.3) + .125 ln(.125/.1)
    = 0.5 ln 1.25; the aux CE is -ln(1/6). Row 2 (y = 2): p = (.1, .1, .1, .7), eps = 1 - .7 = .3,
    v = (0, .5, 0, .5), q' = (0, .15, .7, .15): KL = .7 ln(.7/.1) + .15 ln(.15/.1) + .15 ln(.15/.7),
    aux CE ln 4. The loss is the mean over the two tokens."""
    logits = torch.stack([log([.1, .5, .3, .1]), log([.1, .1, .1, .7])])  # (2, 4)
    aux = torch.stack([log([1, 1, 3, 1]), log([1, 1, 1, 1])])
    loss, stats = adalabel_loss(logits, aux, torch.tensor([1, 2]), PLAIN, pad_id=0)
    row2 = 0.7 * math.log(0.7 / 0.1) + 0.15 * math.log(0.15 / 0.1) + 0.15 * math.log(0.15 / 0.7) + math.log(4)
    row1 = 0.5 * math.log(1.25) + math.log(6)
    assert float(loss) == pytest.approx((row1 + row2) / 2, abs=1e-6)
    loss, stats = adalabel_loss(logits[:1], aux[:1], torch.tensor([1]), PLAIN, pad_id=0)
    assert float(stats["epsilon"]) == pytest.approx(0.5)
    assert float(stats["kl"]) == pytest.approx(0.5 * math.log(1.25), abs=1e-6)
    assert float(stats["aux_nll"]) == pytest.approx(math.log(6), abs=1e-6)
    assert float(loss) == pytest.approx(0.5 * math.log(1.25) + math.log(6), abs=1e-6)
    assert float(stats["nll"]) == pytest.approx(-math.log(0.5), abs=1e-6)


def test_authors_cap_weight_and_truncation_by_hand():
    """y = 2, p = (.1, .6, .2, .1): the model prefers word 1. Aux scores (1, 2, 1, 1): without y and
    the padding, v would be over {1, 3}; drop_top = 1 removes word 1, so v = (0, 0, 0, 1). Then
    eps = min(1 - .6, 1 / (1 + 1) - 0.2) = 0.3, times alpha = (.2 / .6) ** 2 = 1/9: eps = 1/30,
    q' = (0, 0, 29/30, 1/30)."""
    logits = log([.1, .6, .2, .1])[None]
    aux = log([1, 2, 1, 1])[None]
    loss, stats = adalabel_loss(logits, aux, torch.tensor([2]), AUTHORS, pad_id=0)
    kl = 29 / 30 * math.log((29 / 30) / .2) + 1 / 30 * math.log((1 / 30) / .1)
    assert float(stats["epsilon"]) == pytest.approx(1 / 30)
    assert float(loss) == pytest.approx(kl + math.log(5), abs=1e-6)


def test_the_soft_target_is_a_constant_and_p_equal_to_it_costs_nothing():
    """KL(q' || p) = 0 at p = q' (plain form: eps = 1 - max p, with max p at the target)."""
    q = torch.tensor([0.0, 0.5, 0.375, 0.125])
    logits = torch.log(q.clamp(min=1e-30))[None].requires_grad_()
    loss, stats = adalabel_loss(logits, log([1, 1, 3, 1])[None], torch.tensor([1]), PLAIN, pad_id=0)
    assert float(stats["kl"]) == pytest.approx(0.0, abs=1e-6)
    loss.backward()
    assert logits.grad.abs().max() < 1e-6  # no gradient through eps or v


def test_the_auxiliary_decoder_sees_everything_but_its_target():
    """Position i predicts decoder input i + 1: only that key is masked."""
    m = target_mask(4)
    assert m.tolist() == [[False, True, False, False], [False, False, True, False],
                          [False, False, False, True], [False, False, False, False]]


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer("bundled")


def tiny(tok, **over):
    cfg = resolve(None, {"generator.encoder_layers": 1, "generator.decoder_layers": 1, "generator.d_model": 16,
                         "generator.heads": 2, "generator.ffn_dim": 32, "generator.dropout": 0.0,
                         "generator.max_positions": 64, "objective.loss": "adalabel", **over})
    torch.manual_seed(0)
    return cfg, Seq2SeqPolicy(build_generator(cfg.generator, tok), tok)


def train_batch(policy):
    teacher, ids, mask = policy.ground_truth(CONTEXTS, RESPONSES, CPU)
    return TrainBatch(teacher, ids, mask, CONTEXTS, RESPONSES, np.array([-1, -1]), np.random.default_rng(0), None)


def test_aux_prediction_does_not_depend_on_its_own_target(tok):
    """Changing response token r_2 changes the aux logits of every position but the one predicting it."""
    cfg, policy = tiny(tok)
    build_objective(cfg, None, policy, [], CPU)
    policy.model.eval()

    def aux_out(responses):
        teacher, _, _ = policy.ground_truth(CONTEXTS, responses, CPU)
        enc = policy.model.get_encoder()(input_ids=teacher.input_ids, attention_mask=teacher.attention_mask)
        return aux_logits(policy.model, teacher.decoder_input_ids, policy.pad_id, enc.last_hidden_state,
                          teacher.attention_mask)  # (B, T, V)

    changed = RESPONSES[0][:1] + [2009] + RESPONSES[0][2:]  # r_2 replaced
    same = torch.isclose(aux_out(RESPONSES)[0], aux_out([changed, RESPONSES[1]])[0], atol=1e-6).all(-1)
    assert same.tolist() == [False, True, False, False, False]  # position 1 predicts r_2: only it is blind to r_2


def test_objective_matches_the_pure_loss_and_trains_the_aux_decoder(tok):
    cfg, policy = tiny(tok)
    objective = build_objective(cfg, None, policy, [], CPU)
    assert isinstance(objective, AdaLabel)
    names = [n for n, _ in policy.model.named_parameters()]
    assert any(n.startswith("adalabel_aux.") for n in names)  # the trainer's optimizer sees it
    b = train_batch(policy)
    loss, stats = objective(policy.model, b)
    t, keep = b.teacher, b.teacher.labels.ne(-100)
    with torch.no_grad():  # the pure loss on the full logits, masked afterwards
        out = policy.model(input_ids=t.input_ids, attention_mask=t.attention_mask, decoder_input_ids=t.decoder_input_ids)
        aux = aux_logits(policy.model, t.decoder_input_ids, policy.pad_id, out.encoder_last_hidden_state,
                         t.attention_mask, keep)
        pure, _ = adalabel_loss(out.logits[keep], aux, t.labels[keep], cfg.objective.adalabel, policy.pad_id)
    assert loss.item() == pytest.approx(pure.item(), rel=1e-5)
    loss.backward()
    assert aux_decoder(policy.model).out.weight.grad.abs().sum() > 0
    assert policy.model.model.encoder.layers[0].fc1.weight.grad.abs().sum() > 0
    assert int(stats["target_tokens"]) == sum(len(r) + 1 for r in RESPONSES)


def test_adalabel_needs_the_papers_encoder_decoder(tok):
    cfg, policy = tiny(tok)

    class Causal(Seq2SeqPolicy):
        kind = "causal"

    with pytest.raises(ConfigError, match="fix: drop --pretrained"):
        build_objective(cfg, None, Causal(policy.model, tok), [], CPU)
    with pytest.raises(ConfigError, match="drop_top"):
        resolve(None, {"objective.adalabel.keep_top": 2, "objective.adalabel.drop_top": 2})


def test_checkpoint_is_plain_bart_plus_the_aux_file(tok, tmp_path):
    cfg, policy = tiny(tok)
    build_objective(cfg, None, policy, [], CPU)
    with torch.no_grad():  # unlike a fresh one
        for p in aux_decoder(policy.model).parameters():
            p.add_(0.5)
    save_generator(policy.model, tok, tmp_path / "a", cfg.data)
    _, plain = tiny(tok, **{"objective.loss": "ce"})
    save_generator(plain.model, tok, tmp_path / "ce", cfg.data)
    from safetensors.torch import load_file

    assert set(load_file(str(tmp_path / "a" / "model.safetensors"))) == \
        set(load_file(str(tmp_path / "ce" / "model.safetensors")))
    assert (tmp_path / "a" / AUX_FILE).is_file() and not (tmp_path / "ce" / AUX_FILE).exists()
    model, _, _ = load_generator(tmp_path / "a")  # generate / evaluate / chat: the main decoder alone
    assert aux_decoder(model) is None
    torch.testing.assert_close(model.state_dict()["lm_head.weight"], policy.model.state_dict()["lm_head.weight"])

    _, other = tiny(tok)
    AdaLabel(other, cfg.objective.adalabel)
    with torch.no_grad():
        for p in other.model.parameters():
            p.add_(1.0)
    load_generator_weights(other.model, tmp_path / "a")  # resume: both decoders come back exactly
    for key, value in policy.model.state_dict().items():
        torch.testing.assert_close(other.model.state_dict()[key], value, rtol=0, atol=0, msg=key)

    _, fine_tune = tiny(tok)  # --init DIR --loss adalabel starts from DIR's auxiliary decoder too
    AdaLabel(fine_tune, cfg.objective.adalabel, init=str(tmp_path / "a"))
    for key, value in aux_decoder(policy.model).state_dict().items():
        torch.testing.assert_close(aux_decoder(fine_tune.model).state_dict()[key], value, rtol=0, atol=0)

    (tmp_path / "a" / AUX_FILE).write_bytes(b"not safetensors")
    with pytest.raises(AssetError, match="is damaged"):
        load_generator_weights(other.model, tmp_path / "a")
    with pytest.raises(AssetError, match=f"no {AUX_FILE}"):
        load_generator_weights(other.model, tmp_path / "ce")


@pytest.mark.slow
def test_cli_trains_a_tiny_slice_then_generate_evaluate_and_chat_use_it(cli, tmp_path):
    """`--loss adalabel` on 32 pairs: the loss and the NLL fall; best/ holds plain BART + the aux
    file, and `coral generate`, `evaluate` and `chat` run on it."""
    import json

    from coral_cli.runs import run_dir
    from tests.tiny_generator import write_recipe

    recipe = write_recipe(tmp_path, f'\n[runtime]\nruns_dir = "{tmp_path}"\n')
    result = cli("coral", "train", "--loss", "adalabel", "--recipe", recipe, "--max-steps", "24",
                 "--set", "train.eval_every=12", "--set", "train.log_every=4", "--name", "ada")
    assert result.exit_code == 0, result.output
    steps = [r for r in run_dir(tmp_path, "ada").read_metrics() if r.get("event") == "step"]
    assert steps[-1]["loss"] < 0.7 * steps[0]["loss"] and steps[-1]["nll"] < steps[0]["nll"], steps
    assert all(0 <= r["epsilon"] < 1 for r in steps) and "aux_nll" in steps[0]
    ckpt = tmp_path / "ada" / "checkpoints" / "best"
    assert (ckpt / AUX_FILE).is_file()

    lines = ('{"context": ["hello , how are you ?"], "reference": "fine , thanks ."}\n'
             '{"context": "what is your name ?", "reference": "tom ."}\n')
    result = cli("generate", "-c", str(ckpt), "--input", "-", "--max-new-tokens", "6", "--strategy", "greedy",
                 input=lines)
    assert result.exit_code == 0, result.output
    rows = [json.loads(x) for x in result.stdout.splitlines()]
    assert len(rows) == 2 and all(isinstance(r["response"], str) for r in rows)
    (tmp_path / "pred.jsonl").write_text(result.stdout)
    result = cli("evaluate", "-p", str(tmp_path / "pred.jsonl"), "--metrics", "avg_len,distinct,bleu")
    assert result.exit_code == 0, result.output
    result = cli("chat", "-c", str(ckpt), "--plain", "-n", "1", input="hello , how are you ?\n")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout.splitlines()[0])["reply"] is not None


@pytest.mark.slow
def test_resume_after_a_kill_matches_an_uninterrupted_run(tmp_path):
    """As for CE and CORAL: generator, auxiliary decoder and optimizer come back exactly."""
    from safetensors.torch import load_file

    from tests.tiny_generator import full_and_resumed, write_recipe

    cfg = resolve(write_recipe(tmp_path, "\n[runtime]\nseed = 3\n"),
                  {"objective.loss": "adalabel", "train.max_steps": 8, "train.save_every": 3, "data.max_pairs": 16,
                   "generator.dropout": 0.1, "train.log_every": 1, "train.eval_every": 0})
    full, killed, state = full_and_resumed(cfg, tmp_path, kill_at=5)
    assert state.step == 8
    for name in ("model.safetensors", AUX_FILE):
        a = load_file(str(full.checkpoint("last") / name))
        b = load_file(str(killed.checkpoint("last") / name))
        assert a.keys() == b.keys()
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=f"{name}: {key}")
