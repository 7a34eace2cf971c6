"""The trainer's step loop under gradient accumulation and DDP, on a task whose gradient is known by
hand: loss = mean(w * x) over a batch, so dL/dw = mean(x) whatever w is. Two gloo ranks on CPU
check that ranks agree on divergence, draw different batch RNGs, and sync once per optimizer step."""

import multiprocessing
import os
import socket
import sys
from pathlib import Path

import pytest
import torch

from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook

from coral_cli.config.schema import TrainConfig
from coral_cli.runs import run_dir
from coral_cli.training.distributed import DistInfo, all_reduce_mean
from coral_cli.training.loop import Trainer, TrainingDiverged

CPU = torch.device("cpu")
LR = 0.01


class MeanTask:
    """Batches are lists of numbers x; loss = mean(w * x), NaN for the local batches in `nan_at`."""

    metric, higher_is_better = "score", True

    def __init__(self, plan: list[list[list[float]]], nan_at: tuple[int, ...] = ()) -> None:
        self.model = torch.nn.Linear(1, 1, bias=False)
        self.forward_model: torch.nn.Module = self.model  # the trainer's DDP wrapper when distributed
        self.plan, self.nan_at = plan, nan_at  # plan[epoch] = the epoch's batches (the last repeats)
        self.indexes: list[tuple[int, int]] = []  # (epoch, index) of every collate call
        self.local = 0

    def batches(self, epoch: int) -> list[list[float]]:
        return self.plan[min(epoch, len(self.plan) - 1)]

    def collate(self, spec: list[float], epoch: int, index: int) -> torch.Tensor:
        self.indexes.append((epoch, index))
        self.local += 1
        return torch.tensor(spec).unsqueeze(1)  # (B, 1)

    def loss(self, batch: torch.Tensor) -> tuple[torch.Tensor, dict]:
        loss = self.forward_model(batch).mean()
        if self.local - 1 in self.nan_at:
            loss = loss * float("nan")
        return loss, {}

    def evaluate(self) -> dict:
        return {"score": 0.0}

    def save_model(self, folder: Path) -> None:
        torch.save(self.model.state_dict(), folder / "model.pt")

    def load_model(self, folder: Path) -> None:
        self.model.load_state_dict(torch.load(folder / "model.pt"))


def _config(**kw) -> TrainConfig:
    base = dict(lr=LR, warmup_steps=0, grad_clip=0.0, max_epochs=1, log_every=1, patience=0, bf16=False)
    return TrainConfig(**{**base, **kw})


def _record(trainer: Trainer) -> list[tuple[float, float]]:
    """(dL/dw, lr) seen by each optimizer step."""
    seen: list[tuple[float, float]] = []
    weight = trainer.task.model.weight
    trainer.optimizer.register_step_pre_hook(
        lambda opt, args, kwargs: seen.append((float(weight.grad), opt.param_groups[0]["lr"])))
    return seen


def _singles(n: int) -> list[list[float]]:
    return [[float(i + 1)] for i in range(n)]  # batch i holds the number i + 1


def test_a_final_partial_accumulation_group_is_the_mean_of_its_own_micro_batches(tmp_path):
    task = MeanTask([[[1.0, 3.0], [2.0], [4.0, 6.0, 8.0]]])
    trainer = Trainer(task, _config(grad_accum=2), run_dir(tmp_path, "r"), CPU)
    seen = _record(trainer)
    trainer.fit()
    grads = [g for g, _ in seen]
    assert grads == pytest.approx([(2.0 + 2.0) / 2, 6.0])  # the last group holds 1 batch: not 6 / 2


def test_the_schedule_ends_at_the_last_step_when_epochs_have_different_batch_counts(tmp_path):
    task = MeanTask([_singles(3), _singles(5)])  # epoch 0: 3 batches, epoch 1: 5
    trainer = Trainer(task, _config(max_epochs=2), run_dir(tmp_path, "r"), CPU)
    seen = _record(trainer)
    assert trainer.fit().step == 8
    assert [lr for _, lr in seen] == pytest.approx([LR * (8 - s) / 8 for s in range(8)])  # 0 after step 8


def test_the_schedule_total_counts_accumulated_steps_per_epoch_and_stops_at_max_steps(tmp_path):
    task = MeanTask([_singles(3), _singles(5), _singles(7)])  # 2 + 3 + 4 steps, capped at 8
    trainer = Trainer(task, _config(max_epochs=3, grad_accum=2, max_steps=8), run_dir(tmp_path, "r"), CPU)
    seen = _record(trainer)
    assert trainer.fit().step == 8
    assert [lr for _, lr in seen] == pytest.approx([LR * (8 - s) / 8 for s in range(8)])


def test_all_reduce_mean_is_the_identity_in_one_process():
    t = torch.tensor([1.0, 2.0])
    assert all_reduce_mean(t) is t


# --- two gloo ranks -------------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank(rank: int, port: int, out: str, scenario: str) -> None:
    """One rank of a 2-rank job; exits 2 on a `CoralError` like the CLI edge, writes what it saw."""
    os.environ.update(OMP_NUM_THREADS="1", RANK=str(rank), WORLD_SIZE="2")  # only rank 0 locks the run
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    torch.manual_seed(0)
    if scenario == "nan":  # rank 1's second batch is NaN
        task, cfg = MeanTask([_singles(8)], nan_at=(1,) if rank == 1 else ()), _config()
    else:  # 10 batches -> 5 per rank -> accumulation groups of 2, 2 and 1 micro-batches
        task, cfg = MeanTask([_singles(10)]), _config(grad_accum=2)
    trainer = Trainer(task, cfg, run_dir(out, "run"), CPU, dist=DistInfo(rank, 2, rank))
    syncs = [0]

    def counting_allreduce(state, bucket):
        syncs[0] += 1
        return allreduce_hook(state, bucket)

    trainer.task.forward_model.register_comm_hook(None, counting_allreduce)
    seen = _record(trainer)
    code, error = 0, ""
    try:
        trainer.fit()
    except TrainingDiverged as exc:
        code, error = 2, exc.message
    mean = all_reduce_mean(torch.tensor([float(rank)])) if scenario != "nan" else None
    trainer.close()
    torch.distributed.destroy_process_group()
    torch.save({"grads": [g for g, _ in seen], "syncs": syncs[0], "indexes": task.indexes, "error": error,
                "mean": mean}, os.path.join(out, f"rank{rank}.pt"))
    sys.exit(code)


def _run_two_ranks(tmp_path, scenario: str, timeout: float = 90.0) -> tuple[list[int], list[dict]]:
    """Exit codes and saved results of both ranks; a rank still running after `timeout` fails the test."""
    ctx, port = multiprocessing.get_context("spawn"), _free_port()
    procs = [ctx.Process(target=_rank, args=(r, port, str(tmp_path), scenario)) for r in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout)
    hung = [r for r, p in enumerate(procs) if p.is_alive()]
    for p in procs:
        if p.is_alive():
            p.kill()
            p.join()
    assert not hung, f"ranks {hung} hung"
    results = [torch.load(tmp_path / f"rank{r}.pt") if (tmp_path / f"rank{r}.pt").exists() else {} for r in range(2)]
    return [p.exitcode for p in procs], results


@pytest.mark.slow
def test_a_nan_on_one_rank_stops_every_rank_with_exit_2(tmp_path):
    codes, results = _run_two_ranks(tmp_path, "nan")
    assert codes == [2, 2]
    assert "batch 1 of epoch 0" in results[1]["error"]  # the rank that saw it names the batch
    assert "on another rank around step 2" in results[0]["error"]
    assert [len(r["grads"]) for r in results] == [2, 2]  # both stopped after the step that diverged


@pytest.mark.slow
def test_ranks_draw_their_own_batch_rng_and_sync_once_per_accumulated_step(tmp_path):
    codes, (r0, r1) = _run_two_ranks(tmp_path, "accum")
    assert codes == [0, 0]
    # collate's index (the batch RNG's seed) is the global batch index: rank 0 holds the even batches
    assert r0["indexes"] == [(0, 0), (0, 2), (0, 4), (0, 6), (0, 8)]
    assert r1["indexes"] == [(0, 1), (0, 3), (0, 5), (0, 7), (0, 9)]
    assert r0["syncs"] == r1["syncs"] == 3  # one all-reduce per optimizer step, not per micro-batch
    # each step's gradient is the mean over its global batches 1..4, 5..8, then the partial 9..10
    assert r0["grads"] == r1["grads"] == pytest.approx([2.5, 6.5, 9.5])
    assert float(r0["mean"]) == float(r1["mean"]) == 0.5


def test_one_process_sees_the_local_batch_index(tmp_path):
    task = MeanTask([_singles(4)])
    Trainer(task, _config(grad_accum=2), run_dir(tmp_path, "r"), CPU).fit()
    assert task.indexes == [(0, 0), (0, 1), (0, 2), (0, 3)]
