"""CORAL fine-tuning of a pretrained causal LM end to end, on a tiny Llama built in code: LoRA
adapters train and save as safetensors with their base's identity, the KL guard is 0 while the
policy equals its reference, and generate / resume load the checkpoint back."""

import json
import shutil

import numpy as np
import pytest
import torch
from transformers import LlamaForCausalLM

from coral_cli.config import resolve
from coral_cli.config.schema import GenerateConfig
from coral_cli.errors import AssetError
from coral_cli.generation.responses import generate_for_contexts
from coral_cli.generator.core.batch import TrainBatch
from coral_cli.generator.loading import load_policy
from coral_cli.registry import REWARDS
from coral_cli.runs import run_dir
from coral_cli.tasks.train import build_objective, build_policy, generator_trainer
from tests.policy_checks import CONTEXTS, RESPONSES
from tests.tiny_lm import save_tiny_llama

CPU = torch.device("cpu")


def asks(contexts, responses):
    return [0.9 if "?" in r else 0.1 for r in responses]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A tiny chat LM saved as a plain Hugging Face folder (what `generator.pretrained` takes)."""
    folder = save_tiny_llama(tmp_path_factory.mktemp("tiny-llama"), max_positions=256)
    REWARDS.register("test-asks-fn", asks, replace=True)
    yield folder
    REWARDS.unregister("test-asks-fn")


def config(base, tmp_path, **extra):
    return resolve(None, {"generator.pretrained": str(base), "generator.lora.enabled": True, "generator.lora.r": 4,
                          "objective.loss": "coral", "objective.reward": "test-asks-fn", "objective.kl_coef": 0.1,
                          "objective.sample_max_new_tokens": 6, "data.max_pairs": 16, "data.max_context_tokens": 64,
                          "data.max_response_tokens": 16, "generator.eval_pairs": 4, "generate.max_new_tokens": 6,
                          "train.max_steps": 3, "train.lr": 1e-3, "train.warmup_steps": 1, "train.log_every": 1,
                          "train.batch_tokens": 2048, "train.max_batch_size": 8, "runtime.runs_dir": str(tmp_path),
                          **extra})


def test_the_kl_guard_is_zero_while_the_adapters_are_untrained(base, tmp_path):
    cfg = config(base, tmp_path, **{"objective.p_plus": 0.0, "objective.policy": "mix"})
    policy, _ = build_policy(cfg, CPU)
    assert hasattr(policy.model, "peft_config") and policy.kind == "causal"
    policy.model.train()  # LoRA dropout on: the reference must see it alike
    with_kl, stats = build_objective(cfg, _fn(), policy, [[5]], CPU)(policy.model, _seeded_batch(policy))
    cfg.objective.kl_coef = 0.0
    without, _ = build_objective(cfg, _fn(), policy, [[5]], CPU)(policy.model, _seeded_batch(policy))
    assert stats["kl"].item() == pytest.approx(0.0, abs=1e-6)  # LoRA's B starts at 0: policy == reference
    assert with_kl.item() == pytest.approx(without.item(), abs=1e-6)


def _seeded_batch(policy) -> TrainBatch:
    """The two test contexts with their references, under fixed seeds: each call draws the same
    candidates (on-policy samples included)."""
    ctx, resp = policy.context_ids(CONTEXTS, 64), policy.response_ids(RESPONSES, 16)
    teacher, ids, mask = policy.ground_truth(ctx, resp, CPU)
    torch.manual_seed(0)
    return TrainBatch(teacher, ids, mask, ctx, resp, np.array([-1, -1]), np.random.default_rng(0), CONTEXTS)


def _fn():
    from coral_cli.rewards.callable import CallableReward

    return CallableReward(asks)


@pytest.mark.slow
def test_lora_coral_trains_saves_adapters_and_generates_from_the_checkpoint(base, tmp_path):
    cfg = config(base, tmp_path, **{"objective.p_plus": 0.3})  # on-policy samples in every batch: a KL each step
    run = run_dir(tmp_path, "lora").create(cfg, "coral coral train")
    trainer = generator_trainer(cfg, run, [])
    frozen = {k: v.clone() for k, v in trainer.task.model.state_dict().items() if "lora_" not in k}
    state = trainer.fit()
    assert state.step == 3
    after = trainer.task.model.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in frozen.items())  # only the adapters moved
    steps = [r for r in run.read_metrics() if r.get("event") == "step"]
    assert steps and all(r.get("kl") is not None for r in steps)
    last = run.checkpoint("last")
    assert (last / "adapter_model.safetensors").is_file() and not list(last.glob("*.bin"))
    policy, meta = load_policy(last)
    assert meta["adapter"] and meta["base"]["spec"] == str(base)
    out = generate_for_contexts(policy, policy.context_ids(CONTEXTS, 64), GenerateConfig(strategy="greedy", max_new_tokens=5))
    assert len(out) == 2 and all(isinstance(o["responses"][0], str) for o in out)
    # CORAL from these adapters (--init, as after CE-FT): the KL's reference is the trained start, not the base
    follow = config(base, tmp_path, **{"generator.init": str(last), "objective.p_plus": 0.0})
    policy, _ = build_policy(follow, CPU)
    objective = build_objective(follow, _fn(), policy, [[5]], CPU)
    assert objective.reference is not None and hasattr(objective.reference, "peft_config")
    _, stats = objective(policy.model.train(), _seeded_batch(policy))
    assert stats["kl"].item() == pytest.approx(0.0, abs=1e-6)  # the adapters off would differ: they trained
    # resume continues from the adapters; a changed base is refused
    resumed = generator_trainer(cfg, run, [])
    resumed.cfg.max_steps = 4
    assert resumed.fit(resume=True).step == 4
    other = shutil.copytree(base, tmp_path / "other-base")  # the same model with another setting
    (other / "config.json").write_text((other / "config.json").read_text().replace('"rms_norm_eps"', '"foo": 1, "rms_norm_eps"'))
    moved = shutil.copytree(last, tmp_path / "moved")
    meta["base"]["spec"] = str(other)
    (moved / "coral.json").write_text(json.dumps(meta))
    with pytest.raises(AssetError, match="another base model"):
        load_policy(moved)


@pytest.mark.slow
def test_export_merges_the_adapters_into_a_plain_folder(base, tmp_path, cli):
    cfg = config(base, tmp_path, **{"train.max_steps": 1, "objective.kl_coef": 0.0})
    run = run_dir(tmp_path, "export").create(cfg, "coral coral train")
    generator_trainer(cfg, run, []).fit()
    out = tmp_path / "merged"
    result = cli("export", "-c", str(run.checkpoint("last")), "--out", str(out))
    assert result.exit_code == 0, result.output
    policy, _ = load_policy(run.checkpoint("last"))
    plain = LlamaForCausalLM.from_pretrained(out, use_safetensors=True).eval()
    ids = torch.tensor([[5, 6, 7, 8]])
    torch.testing.assert_close(plain(input_ids=ids).logits, policy.model(input_ids=ids).logits, atol=1e-5, rtol=1e-4)
    assert cli("export", "-c", str(run.checkpoint("last")), "--out", str(out)).exit_code == 2  # never overwrites


def test_a_pretrained_lm_as_it_is_generates_and_chats(base, tmp_path, cli):
    """The paper's zero-shot rows: no training, the model's own format."""
    out = tmp_path / "zs.jsonl"
    result = cli("generate", "-c", str(base), "--max-pairs", "3", "--max-new-tokens", "4", "--out", str(out))
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 3 and all(isinstance(r["response"], str) for r in rows)
    result = cli("chat", "-c", str(base), "--plain", "-n", "2", input="hello , how are you ?\n")
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.stdout.splitlines()[0])["candidates"]) == 2
    result = cli("generate", "-c", "nobody/no-such-model", "--max-pairs", "1")
    assert result.exit_code == 2 and "no internet" in result.output and "smollm2" in result.output
