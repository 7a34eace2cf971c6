"""DDP on CPU with 2 processes (gloo): ranks stay identical and match one process on the same
global batch (2 ranks x 1 batch == 1 process x 2 accumulated batches)."""

import os
import socket

import torch
import torch.multiprocessing as mp
import pytest
from safetensors.torch import load_file, save_file
from torch.nn.parallel import DistributedDataParallel

from coral_cli.config import resolve
from coral_cli.runs import run_dir
from coral_cli.tasks.train import generator_trainer
from coral_cli.training.distributed import leave_process_group
from tests.tiny_generator import write_recipe

OVERRIDES = {"train.max_steps": 6, "train.max_batch_size": 4, "train.batch_tokens": 4096, "train.eval_every": 6,
             "train.log_every": 2, "train.warmup_steps": 2, "generator.dropout": 0.0}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, recipe: str, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank), OMP_NUM_THREADS="1")
    torch.set_num_threads(1)
    cfg = resolve(recipe, {**OVERRIDES, "runtime.device": "cpu"})
    trainer = generator_trainer(cfg, run_dir(out, "ddp"), [])
    state = trainer.fit()
    assert state.step == 6
    save_file({k: v.contiguous() for k, v in trainer.task.model.state_dict().items() if "embed_tokens" not in k
               and "lm_head" not in k}, os.path.join(out, f"rank{rank}.safetensors"))
    # the DDP wrapper goes before the group: the other order hung here once (pytorch/pytorch#56297)
    assert isinstance(trainer.task.forward_model, DistributedDataParallel)
    trainer.close()
    assert trainer.task.forward_model is trainer.task.model
    leave_process_group()
    assert not torch.distributed.is_initialized()


@pytest.mark.slow
def test_two_cpu_ranks_match_one_process_on_the_same_global_batch(tmp_path):
    recipe = write_recipe(tmp_path)
    mp.start_processes(_worker, args=(2, _free_port(), recipe, str(tmp_path)), nprocs=2, join=True, start_method="spawn")
    r0, r1 = load_file(str(tmp_path / "rank0.safetensors")), load_file(str(tmp_path / "rank1.safetensors"))
    for key in r0:
        torch.testing.assert_close(r0[key], r1[key], rtol=0, atol=0, msg=key)  # ranks never drift apart

    cfg = resolve(recipe, {**OVERRIDES, "train.grad_accum": 2, "runtime.device": "cpu"})
    single = generator_trainer(cfg, run_dir(tmp_path, "single"), [])
    initial = {k: v.clone() for k, v in single.task.model.state_dict().items()}
    single.fit()
    reference = single.task.model.state_dict()
    for key in r0:  # equal up to float summation order (one AdamW step moves weights by ~lr = 3e-3)
        torch.testing.assert_close(r0[key], reference[key], rtol=0, atol=1e-5, msg=key)
    assert max((r0[k] - initial[k]).abs().max().item() for k in r0) > 1e-3  # training did move them
    # rank 0 alone wrote the run folder: logs, evaluations and checkpoints
    records = run_dir(tmp_path, "ddp").read_metrics()
    assert [r["step"] for r in records if r["event"] == "step"] == [2, 4, 6]
    assert (tmp_path / "ddp" / "checkpoints" / "last" / "model.safetensors").exists()


def _retriever_worker(rank: int, world: int, port: int, out: str) -> None:
    from coral_cli.tasks.train import retriever_trainer
    from tests.tiny import tiny_config

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank), OMP_NUM_THREADS="1")
    torch.set_num_threads(1)
    cfg = tiny_config("bert", **{"retriever.train.max_steps": 4, "retriever.train.log_every": 2,
                                 "retriever.train.eval_every": 4, "retriever.dropout": 0.0, "runtime.device": "cpu",
                                 "data.max_pairs": 32})
    trainer = retriever_trainer(cfg, run_dir(out, "ddp-retriever"), [])
    initial = {k: v.clone() for k, v in trainer.task.model.state_dict().items()}
    assert trainer.fit().step == 4
    moved = {k: v for k, v in trainer.task.model.state_dict().items() if not torch.equal(v, initial[k])}
    save_file({k: v.contiguous() for k, v in moved.items()}, os.path.join(out, f"retriever-rank{rank}.safetensors"))
    trainer.close()
    leave_process_group()


@pytest.mark.slow
def test_retriever_training_under_torchrun_averages_gradients_and_only_rank_0_writes(tmp_path):
    mp.start_processes(_retriever_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True,
                       start_method="spawn")
    r0 = load_file(str(tmp_path / "retriever-rank0.safetensors"))
    r1 = load_file(str(tmp_path / "retriever-rank1.safetensors"))
    assert r0 and set(r0) == set(r1)  # training moved the weights, the same ones on both ranks
    for key in r0:  # each rank saw other batches: equal weights mean DDP averaged the gradients
        torch.testing.assert_close(r0[key], r1[key], rtol=0, atol=0, msg=key)
    records = run_dir(tmp_path, "ddp-retriever").read_metrics()
    assert [r["step"] for r in records if r["event"] == "step"] == [2, 4]  # one writer, no duplicates
    assert [r["event"] for r in records].count("end") == 1


def _causal_worker(rank: int, world: int, port: int, base: str, out: str) -> None:
    from coral_cli.tasks.train import generator_trainer

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank), OMP_NUM_THREADS="1")
    torch.set_num_threads(1)
    cfg = resolve(None, {"generator.pretrained": base, "generator.lora.enabled": True, "generator.lora.r": 4,
                         "objective.loss": "ce", "data.max_pairs": 16, "data.max_context_tokens": 48,
                         "data.max_response_tokens": 12, "generator.eval_pairs": 4, "train.max_steps": 3,
                         "train.lr": 1e-3, "train.warmup_steps": 1, "train.log_every": 1, "train.batch_tokens": 1024,
                         "train.max_batch_size": 4, "runtime.device": "cpu"})
    trainer = generator_trainer(cfg, run_dir(out, "ddp-causal"), [])
    assert trainer.fit().step == 3
    lora = {k: v.contiguous() for k, v in trainer.task.model.state_dict().items() if "lora_" in k}
    save_file(lora, os.path.join(out, f"causal-rank{rank}.safetensors"))
    trainer.close()
    leave_process_group()


@pytest.mark.slow
def test_lora_fine_tuning_of_a_causal_lm_under_torchrun(tmp_path):
    from tests.tiny_lm import save_tiny_llama

    base = save_tiny_llama(tmp_path / "tiny-llama")
    mp.start_processes(_causal_worker, args=(2, _free_port(), str(base), str(tmp_path)), nprocs=2, join=True,
                       start_method="spawn")
    r0 = load_file(str(tmp_path / "causal-rank0.safetensors"))
    r1 = load_file(str(tmp_path / "causal-rank1.safetensors"))
    assert r0 and any(k.endswith("lora_B.default.weight") and v.abs().sum() > 0 for k, v in r0.items())  # trained
    for key in r0:
        torch.testing.assert_close(r0[key], r1[key], rtol=0, atol=0, msg=key)
    records = run_dir(tmp_path, "ddp-causal").read_metrics()
    assert [r["step"] for r in records if r["event"] == "step"] == [1, 2, 3]
