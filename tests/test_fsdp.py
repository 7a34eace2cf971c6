"""FSDP2 (`train.strategy = "fsdp"`) on CPU with 2 gloo ranks: the same losses and weights as one
process on the same global batch, checkpoints in the one-process layout (saved logits == the
sharded model's), and a resume from a step-2 checkpoint that ends where the straight run ends."""

import json
import os
import shutil
import socket
import time

import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file

from coral_cli.config import resolve
from coral_cli.runs import run_dir
from coral_cli.tasks.train import generator_trainer
from coral_cli.training.distributed import leave_process_group
from coral_cli.training.events import Saved
from tests.tiny_generator import write_recipe

OVERRIDES = {"train.max_steps": 4, "train.max_batch_size": 4, "train.batch_tokens": 4096, "train.eval_every": 4,
             "train.log_every": 1, "train.save_every": 2, "train.warmup_steps": 2, "generator.dropout": 0.0,
             "runtime.device": "cpu"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spawn(fn, recipe: str, out, timeout: float) -> None:
    """Run `fn` on 2 spawned ranks; a rank still running after `timeout` seconds (a hang) fails the test."""
    ctx = mp.start_processes(fn, args=(2, _free_port(), recipe, str(out)), nprocs=2, join=False, start_method="spawn")
    deadline = time.monotonic() + timeout
    while not ctx.join(timeout=max(1.0, deadline - time.monotonic())):
        if time.monotonic() > deadline:
            for p in ctx.processes:
                p.kill()
            pytest.fail(f"the ranks still ran after {timeout:.0f} s: a collective hung")


def _recording(trainer, losses: list) -> None:
    """Record the loss of every micro-batch the trainer runs."""
    loss = trainer.task.loss

    def wrapped(batch):
        out = loss(batch)
        losses.append(float(out[0].detach()))
        return out

    trainer.task.loss = wrapped


def _probe(policy):
    """A fixed batch: the first 4 training pairs as teacher-forced inputs."""
    ctx = [[5 + i, 6 + i, 7 + i] for i in range(4)]
    resp = [[9 + i, 10 + i] for i in range(4)]
    batch, _, _ = policy.ground_truth(ctx, resp, torch.device("cpu"))
    return batch


def _worker(rank: int, world: int, port: int, recipe: str, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank), OMP_NUM_THREADS="1")
    torch.set_num_threads(1)
    cfg = resolve(recipe, {**OVERRIDES, "train.strategy": "fsdp"})

    def keep_step2(event):  # rank 0's listener: a copy of last/ at step 2, to resume from later
        if isinstance(event, Saved) and event.step == 2:
            shutil.copytree(event.path, os.path.join(out, "resumed", "checkpoints", "last"))

    trainer = generator_trainer(cfg, run_dir(out, "fsdp"), [keep_step2])
    losses: list[float] = []
    _recording(trainer, losses)
    assert trainer.fit().step == 4
    model = trainer.task.model
    assert type(model).__name__.startswith("FSDP")
    model.eval()
    with torch.no_grad():
        logits = trainer.task.policy.logprobs(model, _probe(trainer.task.policy))
    if rank == 0:
        torch.save({"losses": losses, "logits": logits}, os.path.join(out, "fsdp.pt"))
    else:
        torch.save({"losses": losses}, os.path.join(out, "fsdp1.pt"))
    trainer.close()

    torch.distributed.barrier()  # rank 0 copied step 2's checkpoint before the resume reads it
    resumed = generator_trainer(cfg, run_dir(out, "resumed"), [])
    assert resumed.fit(resume=True).step == 4
    resumed.close()
    leave_process_group()


@pytest.mark.slow
def test_fsdp_on_two_cpu_ranks_matches_one_process_saves_and_resumes_exactly(tmp_path):
    recipe = write_recipe(tmp_path)
    _spawn(_worker, recipe, tmp_path, timeout=240)
    r0, r1 = torch.load(tmp_path / "fsdp.pt"), torch.load(tmp_path / "fsdp1.pt")

    cfg = resolve(recipe, {**OVERRIDES, "train.grad_accum": 2})
    single = generator_trainer(cfg, run_dir(tmp_path, "single"), [])
    losses: list[float] = []
    _recording(single, losses)
    single.fit()
    # global batch j ran on rank j % 2 as its (j // 2)-th batch
    sharded = [(r0 if j % 2 == 0 else r1)["losses"][j // 2] for j in range(len(losses))]
    assert len(losses) == 8
    assert sharded == pytest.approx(losses, abs=1e-5, rel=0)
    assert len(set(round(v, 4) for v in losses)) > 1  # the loss moved: a real comparison

    # checkpoints: the one-process layout, identical to the single run's up to summation order
    fsdp_last = load_file(str(tmp_path / "fsdp" / "checkpoints" / "last" / "model.safetensors"))
    single_last = load_file(str(tmp_path / "single" / "checkpoints" / "last" / "model.safetensors"))
    assert fsdp_last.keys() == single_last.keys()
    for key in fsdp_last:
        torch.testing.assert_close(fsdp_last[key], single_last[key], rtol=0, atol=1e-5, msg=key)
    meta = json.loads((tmp_path / "fsdp" / "checkpoints" / "last" / "trainer_state.json").read_text())
    assert meta["loop"]["step"] == 4
    assert (tmp_path / "fsdp" / "checkpoints" / "best" / "model.safetensors").exists()  # written after an eval

    # save -> load: the loaded checkpoint gives the sharded model's logits
    from coral_cli.generator.loading import load_policy

    policy, _ = load_policy(tmp_path / "fsdp" / "checkpoints" / "last", "cpu")
    policy.model.eval()
    with torch.no_grad():
        loaded = policy.logprobs(policy.model, _probe(policy))
    torch.testing.assert_close(loaded, r0["logits"], rtol=0, atol=0)

    # resumed at step 2 (model, AdamW moments, RNG, data position) ends exactly where the straight run ended
    resumed = load_file(str(tmp_path / "resumed" / "checkpoints" / "last" / "model.safetensors"))
    for key in fsdp_last:
        torch.testing.assert_close(resumed[key], fsdp_last[key], rtol=0, atol=0, msg=key)
    opt_a = load_file(str(tmp_path / "fsdp" / "checkpoints" / "last" / "optimizer.safetensors"))
    opt_b = load_file(str(tmp_path / "resumed" / "checkpoints" / "last" / "optimizer.safetensors"))
    single_opt = load_file(str(tmp_path / "single" / "checkpoints" / "last" / "optimizer.safetensors"))
    assert opt_a.keys() == single_opt.keys()  # the same optimizer file layout as one process
    for key in opt_a:
        if not key.startswith("rng."):
            torch.testing.assert_close(opt_b[key], opt_a[key], rtol=0, atol=0, msg=key)


def question(contexts, responses):
    """0.9 when the reply asks something (a plain-function reward)."""
    return [0.9 if "?" in r else 0.1 for r in responses]


def _coral_worker(rank: int, world: int, port: int, recipe: str, out: str) -> None:
    from coral_cli.config.schema import GenerateConfig
    from coral_cli.training.fsdp import gather_to_twin, gathered

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank), OMP_NUM_THREADS="1")
    torch.set_num_threads(1)
    # p_plus 0.8: in some batch one rank has no on-policy row and skips the sampler the other calls;
    # the length fit runs after sharding: every rank gathers the model, rank 0 samples alone, all get the fit
    cfg = resolve(recipe, {**OVERRIDES, "train.strategy": "fsdp", "train.max_steps": 3, "train.eval_every": 3,
                           "train.save_every": 0, "objective.loss": "coral", "objective.p_plus": 0.8,
                           "objective.sample_max_new_tokens": 5, "generate.strategy": "nucleus",
                           "generate.max_new_tokens": 6, "generator.eval_pairs": 4,
                           "objective.length_debias": "residual", "objective.length_debias_pairs": 8})
    trainer = generator_trainer(cfg, run_dir(out, "coral"), [], reward=question)
    torch.save(trainer.task.objective.length_debias.record(), os.path.join(out, f"debias{rank}.pt"))
    calls, sampler, loss = [], trainer.task.objective.samplers["nucleus"], trainer.task.loss
    sample = sampler.sample
    sampler.sample = lambda request: (calls.__setitem__(-1, calls[-1] + 1), sample(request))[1]
    trainer.task.loss = lambda batch: (calls.append(0), loss(batch))[1]
    assert trainer.fit().step == 3
    torch.save(calls, os.path.join(out, f"calls{rank}.pt"))
    policy, model = trainer.task.policy, trainer.task.model
    ids, mask = policy.prompts([[5, 6, 7], [8, 9]], torch.device("cpu"))
    g = GenerateConfig(strategy="nucleus", top_p=0.9, max_new_tokens=8)
    torch.manual_seed(7)
    with gathered(model):  # the sharded model generates (KV cache, no collective inside generate)
        sharded = policy.sample(model, ids, mask, g, num_return_sequences=2, bf16=False).ids
    gather_to_twin(model, trainer._twin)
    if rank == 0:
        torch.manual_seed(7)
        plain = policy.sample(trainer._twin, ids, mask, g, num_return_sequences=2, bf16=False).ids
        torch.save({"sharded": sharded, "plain": plain}, os.path.join(out, "gen.pt"))
    trainer.close()
    leave_process_group()


@pytest.mark.slow
def test_fsdp_coral_samples_on_policy_and_generates_like_the_unsharded_model(tmp_path):
    recipe = write_recipe(tmp_path)
    _spawn(_coral_worker, recipe, tmp_path, timeout=180)
    gen = torch.load(tmp_path / "gen.pt")
    assert torch.equal(gen["sharded"], gen["plain"])
    calls = [torch.load(tmp_path / f"calls{r}.pt") for r in (0, 1)]
    assert any(a != b for a, b in zip(*calls)), calls  # a rank sampled alone: no hang
    records = run_dir(tmp_path, "coral").read_metrics()
    assert any(r["event"] == "eval" and r.get("val_R3") is not None for r in records)
    assert [r["step"] for r in records if r["event"] == "step"] == [1, 2, 3]
    fits = [torch.load(tmp_path / f"debias{r}.pt") for r in (0, 1)]
    assert fits[0] == fits[1] and fits[0]["pairs"] == 16  # one fit, shared: 8 references and 8 samples
    assert json.loads((tmp_path / "coral" / "length_debias.json").read_text()) == fits[0]


def _lora_steps(model, rows: torch.Tensor, steps: int = 3) -> list[float]:
    """`steps` AdamW steps of the causal LM loss on `rows`; the losses."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=0.05, foreach=False)
    losses = []
    for _ in range(steps):
        loss = model(input_ids=rows, labels=rows).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(float(loss.detach()))
    return losses


def _lora_model():
    from coral_cli.config.schema import LoraConfig
    from coral_cli.generator.pretrained.lora import add_lora
    from tests.test_lora import _base

    return add_lora(_base("llama"), LoraConfig(enabled=True, r=4, alpha=8, dropout=0.0)).train()


def _lora_worker(rank: int, world: int, port: int, recipe: str, out: str) -> None:
    from coral_cli.training.fsdp import cpu_twin, gather_to_twin, shard_model
    from tests.test_lora import IDS

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      OMP_NUM_THREADS="1")
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo")
    model = _lora_model()
    twin = cpu_twin(model) if rank == 0 else None
    shard_model(model, torch.device("cpu"), bf16=True)  # bf16 stays off on a CPU: exact comparison
    assert sum(type(m).__name__ == "FSDPLlamaDecoderLayer" for m in model.modules()) == 2  # a group per layer
    losses = _lora_steps(model, IDS[rank : rank + 1])
    gather_to_twin(model, twin)
    if rank == 0:
        adapters = {k: v for k, v in twin.state_dict().items() if "lora_" in k}
        torch.save({"losses": losses, "adapters": adapters}, os.path.join(out, "lora.pt"))
    leave_process_group()


@pytest.mark.slow
def test_fsdp_trains_lora_adapters_like_one_process(tmp_path):
    from tests.test_lora import IDS

    _spawn(_lora_worker, "", tmp_path, timeout=120)
    sharded = torch.load(tmp_path / "lora.pt")
    model = _lora_model()
    losses = _lora_steps(model, IDS)  # both rows at once: the global batch (rows of equal length)
    own = {k: v for k, v in model.state_dict().items() if "lora_" in k}
    assert sharded["adapters"].keys() == own.keys() and own
    for key in own:
        torch.testing.assert_close(sharded["adapters"][key], own[key], rtol=0, atol=1e-5, msg=key)
    assert max(v.abs().max().item() for k, v in own.items() if "lora_B" in k) > 1e-3  # the adapters moved
    assert len(losses) == 3 and losses[0] != losses[-1]


def test_the_retriever_refuses_fsdp(tmp_path):
    from coral_cli.errors import ConfigError
    from coral_cli.tasks.train import retriever_trainer
    from tests.tiny import tiny_config

    cfg = tiny_config("bert", **{"retriever.train.strategy": "fsdp"})
    with pytest.raises(ConfigError, match="generator only"):
        retriever_trainer(cfg, run_dir(tmp_path, "r"), [])
