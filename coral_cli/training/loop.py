"""The training loop shared by retriever and generator training.

One step reads top to bottom: collate a batch -> the task's loss (an objective returning
(loss, stats)) -> backward -> clip -> AdamW step with warmup + linear decay (paper §4.1), then
`_after_step` (check, log, evaluate, save) returns why to stop, or None.
Validation drives early stopping (and, with `stop_on_collapse`, stops on the task's collapse
alarms) and `best/`; `last/` is written atomically each epoch (or every
`save_epochs`, and every `save_every` steps) with the optimizer, RNG and data position, so `resume=True` continues
exactly where the run stopped.
"""

from __future__ import annotations

import contextlib
import gc
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import torch

from coral_cli.atomic import atomic_directory
from coral_cli.config.schema import TrainConfig
from coral_cli.device import autocast_dtype
from coral_cli.errors import AssetError, CoralError
from coral_cli.runs import RunDir
from coral_cli.training.distributed import DistInfo, any_rank, broadcast, global_index, shard, unwrap
from coral_cli.training.fsdp import (cpu_twin, full_optimizer_state, gather_to_twin, gathered,
                                     load_full_optimizer_state, scatter_from_twin, shard_model)
from coral_cli.training.events import EvalEnd, Listener, Saved, StepEnd, TrainEnd, TrainStart
from coral_cli.training.state import LoopState, check_resumable, load_state, save_state


class Task(Protocol):
    """The parts that differ between what is trained (retriever, generator)."""

    model: torch.nn.Module
    metric: str  # validation metric that drives early stopping and best/
    higher_is_better: bool

    def batches(self, epoch: int) -> Sequence[Any]:
        """The epoch's batch specs (deterministic for a given epoch)."""

    def collate(self, spec: Any, epoch: int, index: int) -> Any:
        """Spec -> tensors on the device; randomness seeded by (epoch, index), `index` counting the
        epoch's batches over all ranks (`global_index`), so ranks draw different samples."""

    def loss(self, batch: Any) -> tuple[torch.Tensor, dict[str, torch.Tensor | float]]:
        """Scalar loss and detached stats (tensors stay on the device until logged)."""

    def evaluate(self) -> dict[str, Any]:
        """Validation metrics, including `metric`; a non-empty 'collapse' list (alarm sentences)
        stops the run under `stop_on_collapse`."""

    def save_model(self, folder: Path) -> None:
        """Write a loadable model checkpoint into `folder`."""

    def load_model(self, folder: Path) -> None:
        """Load weights written by `save_model` (for resume)."""


class TrainingDiverged(CoralError):
    """A non-finite loss or reward: names the batch; the last checkpoint stays intact."""


def lr_factor(step: int, warmup: int, total: int) -> float:
    """Linear warmup to 1 over `warmup` steps, then linear decay to 0 at `total`."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    return max(0.0, (total - step) / max(1, total - warmup))


class Trainer:
    """Runs a `Task` under a `TrainConfig`, writing into a `RunDir`."""

    def __init__(self, task: Task, cfg: TrainConfig, run: RunDir, device: torch.device,
                 listeners: Sequence[Listener] = (), dist: DistInfo = DistInfo()) -> None:
        self.task, self.cfg, self.run, self.device, self.dist = task, cfg, run, device, dist
        self.listeners = list(listeners) if dist.is_main else []
        self.fsdp = dist.enabled and cfg.strategy == "fsdp"
        self._twin: torch.nn.Module | None = None  # FSDP: rank 0's unsharded CPU copy, for checkpoints
        if self.fsdp:  # sharded in place: the task's forward runs through FSDP2's hooks
            self._twin = cpu_twin(task.model) if dist.is_main else None
            shard_model(task.model, device, cfg.bf16)
        elif dist.enabled:  # gradients are averaged across ranks through the DDP wrapper's forward
            from torch.nn.parallel import DistributedDataParallel

            ids = [device.index] if device.type == "cuda" else None
            task.forward_model = DistributedDataParallel(getattr(task, "forward_model", task.model), device_ids=ids)
        if cfg.compile:  # the forward the loss uses; generation and saving use the module itself
            task.forward_model = torch.compile(getattr(task, "forward_model", task.model))
        groups: dict[tuple[bool, bool], list] = {}
        for name, p in task.model.named_parameters():
            if p.requires_grad:
                groups.setdefault((p.ndim >= 2, name.startswith("head.")), []).append(p)
        self.optimizer = torch.optim.AdamW(
            [{"params": params, "weight_decay": cfg.weight_decay if decay else 0.0,
              "lr_scale": cfg.head_lr_scale if head else 1.0} for (decay, head), params in sorted(groups.items())],
            lr=cfg.lr, fused=device.type in ("cpu", "cuda") and not self.fsdp,  # one kernel for all tensors, not ~10 ops per tensor
        )
        dtype = autocast_dtype(device) if cfg.bf16 else None
        self.autocast = (lambda: torch.autocast(device.type, dtype=dtype)) if dtype else contextlib.nullcontext
        self.state = LoopState()
        self._last_eval = -1

    def close(self) -> None:
        """Free the DDP wrapper while the process group still exists. Its reducer holds the group:
        freed after the group is destroyed, it would destroy gloo's group under the GIL while a gloo
        thread waits for the GIL to free a tensor, a hang (pytorch/pytorch#56297)."""
        if self.dist.enabled or self.cfg.compile:
            self.task.forward_model = unwrap(self.task.forward_model)
            gc.collect()

    def emit(self, event: Any) -> None:
        for listener in self.listeners:
            listener(event)

    def fit(self, resume: bool = False) -> LoopState:
        """Train until max_epochs, max_steps, early stopping or (`stop_on_collapse`) a validation
        whose replies collapsed; returns the final loop state.

        The run's lock is held throughout (the CLI and the table runner took it already). A fresh
        start drops what an earlier attempt logged; `resume` continues from last/ (`_resume`).
        """
        with self.run.lock():
            if resume:
                self._resume()
            elif self.dist.is_main:
                self.run.rewind_metrics(0)
            return self._loop()

    def _resume(self) -> None:
        """Load last/ (weights, optimizer, loop position, RNG) and drop the records logged after it.

        Without last/, a run that logged nothing starts from step 0 (nothing is lost); one that
        logged steps is an error rather than a silent restart. A raised max_steps / max_epochs
        lets a finished run train further.
        """
        cfg, last = self.cfg, self.run.checkpoint("last")
        if not check_resumable(self.run):
            if self.dist.is_main:
                self.run.rewind_metrics(0)
            return
        try:
            if self.fsdp:
                self._load_sharded(last)
                self.state, extra = load_state(last, _Recorder(self.task.model, self.optimizer))
            else:
                self.task.load_model(last)
                self.state, extra = load_state(last, self.optimizer)
            if extra and hasattr(self.task, "load_extra_state"):
                self.task.load_extra_state(extra)
        except Exception as exc:  # a truncated or foreign file
            why = exc.message.removeprefix(f"cannot resume from {last}: ") if isinstance(exc, AssetError) \
                else f"{type(exc).__name__}: {exc}"
            raise AssetError(f"cannot resume from {last}: {why}",
                             "the checkpoint is damaged; start the run again under another --name") from exc
        st = self.state
        if st.stopped in ("max_steps", "max_epochs") and st.epoch < cfg.max_epochs \
                and not (cfg.max_steps and st.step >= cfg.max_steps):
            st.stopped = ""  # the limit was raised: train further
        if st.stopped == "collapse" and not cfg.stop_on_collapse:  # the alarm was turned off: train on
            st.stopped = "max_steps" if cfg.max_steps and st.step >= cfg.max_steps else \
                "max_epochs" if st.epoch >= cfg.max_epochs else ""
        if self.dist.is_main:
            self.run.rewind_metrics(st.step)

    def _loop(self) -> LoopState:
        """Epochs until a stop reason: each runs its remaining steps, then the epoch's end
        (`_after_epoch`); a run stopped by max_steps is evaluated once more, and last/ is saved."""
        cfg, st = self.cfg, self.state
        steps_per_epoch = math.ceil(len(self._batches(0)) / cfg.grad_accum)
        self._total = self._planned_steps()  # the LR schedule's end
        self.emit(TrainStart(self._total, st.step, steps_per_epoch))
        self._window: dict[str, list] = {}  # per-batch loss and stats since the last log record
        self._where: list[tuple[int, int]] = []  # (epoch, batch) of each entry in `_window`
        self._tokens, self._t0 = 0, time.perf_counter()
        while not st.stopped:
            stop = self._run_epoch(self._batches(st.epoch)) or self._after_epoch()
            if stop == "max_steps" and self._last_eval != st.step:
                self._evaluate()
            if stop or st.epoch % cfg.save_epochs == 0:
                self._save_last()
        best = self.run.checkpoint("best")
        self.emit(TrainEnd(st.step, st.stopped, st.best, best if best.exists() else None))
        self._log({"event": "end", "step": st.step, "reason": st.stopped, "best": st.best, "metric": self.task.metric})
        return st

    def _run_epoch(self, specs: Sequence[Any]) -> str | None:
        """The epoch's remaining batches: forward and backward each, an optimizer step at the end of
        each accumulation group, then `_after_step`. Returns why training stops, or None when the
        epoch ran to its end."""
        st = self.state
        self.task.model.train()
        for i in range(st.batch_in_epoch, len(specs)):
            group = accumulation_group(i, len(specs), self.cfg.grad_accum)
            self._accumulate(specs[i], i, group)
            st.batch_in_epoch = i + 1
            if st.batch_in_epoch < group.stop:
                continue
            self._optimizer_step(self._total)
            if stop := self._after_step(epoch_done=st.batch_in_epoch == len(specs)):
                return stop
        return None

    def _after_step(self, epoch_done: bool) -> str | None:
        """After optimizer step `state.step`: check the window for NaN, log, evaluate and save when
        due. Returns why training stops (early_stopping, collapse, max_steps), or None."""
        cfg, st = self.cfg, self.state
        max_steps = bool(cfg.max_steps and st.step >= cfg.max_steps)
        due = st.step % cfg.log_every == 0 or (cfg.save_every and st.step % cfg.save_every == 0) \
            or (cfg.eval_every and st.step % cfg.eval_every == 0) or epoch_done or max_steps
        if due:  # the one host sync: check and log the window before anything is saved
            self._check(self._window)
        if st.step % cfg.log_every == 0:
            self._log_window()
        if cfg.eval_every and st.step % cfg.eval_every == 0:
            self._evaluate()  # may stop: early_stopping, collapse
        if max_steps and not st.stopped:
            st.stopped = "max_steps"
        if st.stopped:
            return st.stopped
        if cfg.save_every and st.step % cfg.save_every == 0:
            self._save_last()
        self.task.model.train()
        return None

    def _after_epoch(self) -> str | None:
        """The epoch ran out: move to the next one, evaluate if validation is per epoch. Returns why
        training stops (early_stopping, collapse, max_epochs), or None."""
        cfg, st = self.cfg, self.state
        st.epoch, st.batch_in_epoch = st.epoch + 1, 0
        if not cfg.eval_every:
            self._evaluate()
        if not st.stopped and st.epoch >= cfg.max_epochs:
            st.stopped = "max_epochs"
        return st.stopped or None

    def _accumulate(self, spec: Any, i: int, group: range) -> None:
        """Forward and backward of batch `i`; its loss and stats join the logging window."""
        loss, stats = self._micro_batch(spec, i, group)
        self._tokens += int(stats.pop("tokens", 0))
        for k, v in {"loss": loss, **stats}.items():
            self._window.setdefault(k, []).append(v)
        self._where.append((self.state.epoch, i))

    def _log_window(self) -> None:
        """One `step` record: the window's means, the learning rate and the throughput; then a new window."""
        st = self.state
        elapsed = time.perf_counter() - self._t0
        record = {k: _mean(v) for k, v in self._window.items()}
        record.update(lr=self.optimizer.param_groups[0]["lr"],
                      tokens_per_s=self._tokens * self.dist.world / max(elapsed, 1e-9))
        self._log({"event": "step", "step": st.step, "epoch": st.epoch, **record})
        self.emit(StepEnd(st.step, st.epoch, record))
        self._window, self._where, self._tokens, self._t0 = {}, [], 0, time.perf_counter()

    def _batches(self, epoch: int) -> Sequence[Any]:
        return shard(list(self.task.batches(epoch)), self.dist)

    def _planned_steps(self) -> int:
        """Optimizer steps of the whole run, the LR schedule's end: each epoch's own count (token-budget
        batches differ between epochs), up to max_steps."""
        cfg, total = self.cfg, 0
        for epoch in range(cfg.max_epochs):
            total += math.ceil(len(self._batches(epoch)) / cfg.grad_accum)
            if cfg.max_steps and total >= cfg.max_steps:
                return cfg.max_steps
        return total

    def _micro_batch(self, spec: Any, i: int, group: range) -> tuple[torch.Tensor, dict[str, Any]]:
        """Forward and backward of batch `i` of accumulation `group`; returns the detached loss and stats.

        The loss is divided by the group's real size (a final partial group is the mean over its own
        batches); under DDP only the group's last batch all-reduces the accumulated gradients."""
        skip_sync = self.dist.enabled and i != group[-1]
        if self.fsdp:
            self.task.model.set_requires_gradient_sync(not skip_sync)
        # FSDP with on-policy sampling: the step keeps the whole model gathered (see fsdp.gathered)
        gather = gathered(self.task.model) if getattr(self.task, "generates_in_step", False) else contextlib.nullcontext()
        with self.task.forward_model.no_sync() if skip_sync and not self.fsdp else contextlib.nullcontext(), gather:
            batch = self.task.collate(spec, self.state.epoch, global_index(i, self.dist))
            with self.autocast():
                loss, stats = self.task.loss(batch)
            (loss / len(group)).backward()
        return loss.detach(), stats

    def _log(self, record: dict[str, Any]) -> None:
        if self.dist.is_main:
            self.run.log(record)

    def _check(self, window: dict[str, list]) -> None:
        """Raise `TrainingDiverged` naming the first batch whose loss or reward was not finite; under
        DDP every rank raises when any rank saw one (a rank raising alone would hang the others)."""
        losses = window.get("loss", [])
        bad = torch.zeros(0, dtype=torch.bool, device=self.device)
        if losses:
            bad = ~torch.isfinite(torch.stack([v.float() for v in losses])).to(self.device)
            if "nonfinite_reward" in window:
                bad |= torch.stack([torch.as_tensor(v) for v in window["nonfinite_reward"]]).to(self.device) > 0
        if not any_rank(bad.any(), self.dist):
            return
        hint = ("check the reward checkpoint and the learning rate; the last checkpoint is intact "
                "(restart with --resume)")
        if not bool(bad.any()):
            raise TrainingDiverged(f"the loss or reward is NaN or inf on another rank around step {self.state.step} "
                                   "(that rank's error names the batch)", hint)
        first = int(bad.nonzero()[0, 0])
        epoch, batch = self._where[first]
        reward = "nonfinite_reward" in window and float(window["nonfinite_reward"][first]) > 0
        what = "the reward model returned NaN or inf" if reward else "the loss is NaN or inf"
        raise TrainingDiverged(f"{what} in batch {batch} of epoch {epoch} (around step {self.state.step})", hint)

    def _optimizer_step(self, total: int) -> None:
        cfg, st = self.cfg, self.state
        factor = lr_factor(st.step, cfg.warmup_steps, total)
        for group in self.optimizer.param_groups:
            group["lr"] = cfg.lr * factor * group["lr_scale"]
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.task.model.parameters(), cfg.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        st.step += 1

    def _evaluate(self) -> None:
        """Rank 0 evaluates and decides; every rank then shares its decision (stop, best)."""
        st = self.state
        self._last_eval = st.step
        metrics, improved = None, False
        with gathered(self.task.model):  # FSDP: rank 0 evaluates alone on the gathered model
            if self.dist.is_main:
                self.task.model.eval()
                with torch.no_grad(), self.autocast():
                    metrics = self.task.evaluate()
        if self.dist.is_main:
            value = float(metrics[self.task.metric])
            if not math.isfinite(value):
                improved = False
            elif st.best is None:
                improved = True
            else:
                improved = value > st.best if self.task.higher_is_better else value < st.best
            if improved:
                st.best, st.bad_evals = value, 0
                if not self.fsdp:
                    with atomic_directory(self.run.checkpoint("best")) as tmp:
                        self.task.save_model(tmp)
            else:
                st.bad_evals += 1
                if self.cfg.patience and st.bad_evals >= self.cfg.patience:
                    st.stopped = "early_stopping"
            if self.cfg.stop_on_collapse and metrics.get("collapse"):  # the task's collapse alarms
                st.stopped = "collapse"
            self._log({"event": "eval", "step": st.step, "epoch": st.epoch, "improved": improved, **metrics})
            self.emit(EvalEnd(st.step, st.epoch, metrics, improved))
        st.best, st.bad_evals, st.stopped, improved = broadcast((st.best, st.bad_evals, st.stopped, improved),
                                                                 self.dist)
        if improved and self.fsdp:  # gathering the full state is a collective: every rank takes part
            gather_to_twin(self.task.model, self._twin)
            if self.dist.is_main:
                with atomic_directory(self.run.checkpoint("best")) as tmp, self._on_twin():
                    self.task.save_model(tmp)

    def _save_last(self) -> None:
        optimizer: Any = self.optimizer
        if self.fsdp:  # the full model and optimizer state, gathered to rank 0 (a collective)
            gather_to_twin(self.task.model, self._twin)
            optimizer = _Recorder(self.task.model, self.optimizer, full_optimizer_state(self.task.model, self.optimizer))
        if not self.dist.is_main:
            return
        path = self.run.checkpoint("last")
        with atomic_directory(path) as tmp, self._on_twin():
            self.task.save_model(tmp)
            extra = self.task.extra_state() if hasattr(self.task, "extra_state") else None
            save_state(tmp, optimizer, self.state, extra)
        self.emit(Saved(self.state.step, path))

    def _load_sharded(self, folder: Path) -> None:
        """FSDP resume: rank 0 reads `folder` into its unsharded twin, then every rank takes its shard."""
        if self.dist.is_main:
            with self._on_twin():
                self.task.load_model(folder)
        scatter_from_twin(self.task.model, self._twin)

    @contextlib.contextmanager
    def _on_twin(self) -> Any:
        """Under FSDP on rank 0: the task's model (and its policy's) is the unsharded twin for a while,
        so `save_model` / `load_model` write and read the one-process checkpoint layout unchanged."""
        twin, task = self._twin, self.task
        if twin is None:
            yield
            return
        policy = getattr(task, "policy", None)
        model = task.model
        task.model = twin
        if policy is not None:
            policy.model = twin
        try:
            yield
        finally:
            task.model = model
            if policy is not None:
                policy.model = model


class _Recorder:
    """Stands in for the optimizer in `save_state` / `load_state` under FSDP: hands over the full
    state gathered beforehand, and loads a read one into the sharded optimizer on every rank."""

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, full: dict | None = None) -> None:
        self.model, self.optimizer, self.full = model, optimizer, full

    def state_dict(self) -> dict:
        return self.full or {}

    def load_state_dict(self, state: dict) -> None:
        load_full_optimizer_state(self.model, self.optimizer, state)


def accumulation_group(i: int, n: int, grad_accum: int) -> range:
    """The batches (of an epoch's `n`) that share batch `i`'s optimizer step: runs of `grad_accum`,
    the epoch's last run possibly shorter."""
    start = i - i % grad_accum
    return range(start, min(start + grad_accum, n))


def _mean(values: list) -> float:
    """Mean over the logging window, ignoring NaN entries (e.g. r3_pos of a batch without positives)."""
    if values and torch.is_tensor(values[0]):
        return float(torch.stack([v.float() for v in values]).nanmean())
    finite = [v for v in values if v == v]
    return float(sum(finite) / max(1, len(finite))) if finite else float("nan")
