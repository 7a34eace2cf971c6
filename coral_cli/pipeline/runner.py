"""Run a table recipe like `make`: each stage trains (or resumes, or is skipped when finished),
then every row is generated and evaluated unless its outputs are newer than what they were made
from; one after another here, or side by side as separate processes (`run_side_by_side`).
Nothing is lost to an interruption: training resumes from last/, and predictions and reports are
written atomically, so a half-written file never counts as done."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coral_cli.atomic import atomic_write_text
from coral_cli.config import parse_assignment, resolve
from coral_cli.config.drift import config_drift
from coral_cli.config.schema import CoralConfig
from coral_cli.errors import ConfigError
from coral_cli.generator.loading import adopt_init_architecture, is_lm_spec, load_policy
from coral_cli.pipeline.parallel import Launch, run_tasks
from coral_cli.pipeline.paths import GROUND_TRUTH, checkpoint_of, predictions_path, report_path, run_of
from coral_cli.pipeline.results import build_results, write_results
from coral_cli.pipeline.schedule import PHASES, table_tasks
from coral_cli.pipeline.spec import StageSpec, TableSpec
from coral_cli.runs import RunDir
from coral_cli.training.state import STATE_FILE, has_state

Notify = Callable[[str, str], None]  # (stage, message)
TrainView = Callable[[StageSpec, CoralConfig], AbstractContextManager[list[Any]]]
CountView = Callable[[str, int], AbstractContextManager[Callable[[int], None]]]  # (title, total) -> advance(n)


@dataclass(frozen=True)
class StageState:
    """'done' (finished training), 'interrupted' (resumable), 'new', or 'external' (a given checkpoint)."""

    state: str
    detail: str = ""


def stage_config(spec: TableSpec, stage: StageSpec, extra_sets: tuple[str, ...] = ()) -> CoralConfig:
    """The stage's recipe < the table's `set` < the stage's `set` < the run command's --set; the
    runs folder and the reward checkpoint are the table's."""
    overrides: dict[str, Any] = dict(parse_assignment(s) for s in (*spec.sets, *stage.sets, *extra_sets))
    overrides["runtime.runs_dir"] = str(spec.runs_dir)
    if stage.reward:
        overrides["objective.reward_checkpoint"] = str(checkpoint_of(spec, spec.stage(stage.reward)))
    return adopt_init_architecture(resolve(stage.recipe, overrides))


def stage_state(spec: TableSpec, stage: StageSpec) -> StageState:
    if stage.checkpoint is not None:
        return StageState("external", str(stage.checkpoint))
    if stage.generator:
        return StageState("external", f"{stage.generator}'s model"
                          + (f", best of {stage.candidates}" if stage.rerank_with else ""))
    run = run_of(spec, stage)
    records = run.read_metrics()
    if records and records[-1].get("event") == "end" and checkpoint_of(spec, stage).exists():
        return StageState("done", f"{records[-1].get('reason')} at step {records[-1].get('step')}")
    if has_state(run.checkpoint("last")):
        try:
            step = json.loads((run.checkpoint("last") / STATE_FILE).read_text(encoding="utf-8"))["loop"]["step"]
        except (OSError, ValueError, KeyError):
            step = "?"
        return StageState("interrupted", f"resumes from step {step}")
    return StageState("new")


def check_stage_names(spec: TableSpec, flag: str, names: tuple[str, ...]) -> None:
    """A typo in --only or --restart would otherwise select nothing and run nothing, silently."""
    known = [s.name for s in spec.stages] + ([GROUND_TRUTH] if spec.ground_truth else [])
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ConfigError(f"{flag} names unknown stage(s) {', '.join(unknown)}", f"stages: {', '.join(known)}")


def check_stage_sets(spec: TableSpec, extra_sets: tuple[str, ...] = ()) -> None:
    """Every stage's recipe with the table's and its own `set` (and --set) is a valid config: a
    typo in the last stage's `set` is reported, with every other one, before the first stage
    trains rather than after it. (A seed repeat adds only runtime.seed to its stage's.)"""
    problems: dict[str, list[str]] = {}  # message -> the stages it is about (a bad --set is every stage's)
    for stage in spec.stages:
        if stage.seed_of:
            continue
        recipe, sets = _recipe_and_sets(spec, stage)
        try:
            resolve(recipe, dict(parse_assignment(s) for s in (*spec.sets, *sets, *extra_sets)))
        except ConfigError as exc:
            problems.setdefault(exc.message, []).append(f"'{stage.name}'")
    if problems:
        lines = "\n".join(f"  - stage{'s' * (len(names) > 1)} {', '.join(names)}: " + message.replace("\n", "\n    ")
                          for message, names in problems.items())
        raise ConfigError(f"invalid settings in table recipe {spec.path}:\n{lines}",
                          "fix the stage's `set` (or its recipe, or --set); 'coral config show' lists every key")


def _recipe_and_sets(spec: TableSpec, stage: StageSpec) -> tuple[Path | None, tuple[str, ...]]:
    """The recipe a stage's config starts from and its own `set`s: a `generator` row's are its
    model stage's, with its own on top (as `TableRunner._config` builds them)."""
    if stage.generator:
        recipe, sets = _recipe_and_sets(spec, spec.stage(stage.generator))
        return recipe, (*sets, *stage.sets)
    return stage.recipe, stage.sets


class TableRunner:
    """Runs the stages of `spec` in order; `notify` and `train_view` let a front end show progress."""

    def __init__(self, spec: TableSpec, notify: Notify, train_view: TrainView | None = None,
                 restart: tuple[str, ...] = (), extra_sets: tuple[str, ...] = (),
                 count_view: CountView | None = None) -> None:
        check_stage_names(spec, "--restart", restart)
        check_stage_sets(spec, extra_sets)  # before anything runs
        self.spec, self.notify, self.restart, self.extra_sets = spec, notify, restart, extra_sets
        self.train_view = train_view or (lambda stage, cfg: contextlib.nullcontext([]))
        self.count_view = count_view or (lambda title, total: contextlib.nullcontext(lambda n: None))

    def run(self, only: tuple[str, ...] = ()) -> dict[str, Any]:
        """Every stage (or `only` those), then the results table; returns the table."""
        check_stage_names(self.spec, "--only", only)
        for task in table_tasks(self.spec, only):  # in table order, so every need is met before it
            self.run_task(task.stage, task.phase)
        return self.results()

    def run_side_by_side(self, jobs: int, launch: Launch, only: tuple[str, ...] = ()) -> dict[str, Any]:
        """The same work as `run`, `jobs` tasks at a time, each in a process that `launch` starts
        (one that calls `run_task`); logs go to <runs_dir>/logs/."""
        check_stage_names(self.spec, "--only", only)
        tasks = table_tasks(self.spec, only)
        self.notify("table", f"{len(tasks)} tasks, {jobs} at a time")
        t0 = time.perf_counter()
        run_tasks(tasks, jobs, launch, self.spec.runs_dir / "logs", self.notify)
        self.notify("table", f"{len(tasks)} tasks finished in {(time.perf_counter() - t0) / 60:.1f} min")
        return self.results()

    def run_task(self, stage: str, phase: str) -> None:
        """One task of `table_tasks`: what `run` does for each, and a process started by
        `run_side_by_side` for one."""
        if phase not in PHASES:
            raise ConfigError(f"unknown phase '{phase}'", f"choose from {', '.join(PHASES)}")
        if stage == GROUND_TRUTH:
            if phase != "evaluate":
                raise ConfigError(f"the {GROUND_TRUTH} row is only evaluated, not '{phase}'", "use --phase evaluate")
            self.ground_truth()
            return
        check_stage_names(self.spec, "--only", (stage,))
        spec = self.spec.stage(stage)
        if phase != "train" and spec.kind != "generator":
            raise ConfigError(f"stage '{stage}' trains a {spec.kind}: it has no '{phase}' phase", "use --phase train")
        {"train": self.train, "generate": self.generate, "evaluate": self.evaluate}[phase](spec)

    def results(self) -> dict[str, Any]:
        """results.json and results.md from what the stages left on disk; returns the table."""
        results = build_results(self.spec)
        write_results(self.spec, results)
        return results

    def train(self, stage: StageSpec) -> None:
        if stage.checkpoint is not None:
            if not stage.checkpoint.is_dir() and not is_lm_spec(stage.checkpoint):
                raise ConfigError(f"stage '{stage.name}': checkpoint {stage.checkpoint} does not exist",
                                  "train it first, or give the stage a recipe instead")
            self.notify(stage.name, f"uses {stage.checkpoint}")
            return
        if stage.generator:
            self.notify(stage.name, f"uses the model of stage '{stage.generator}'")
            return
        run = run_of(self.spec, stage)
        if stage.reward and not checkpoint_of(self.spec, self.spec.stage(stage.reward)).exists():
            raise ConfigError(f"stage '{stage.name}' needs the reward of stage '{stage.reward}', which has no checkpoint yet",
                              f"run the table without --only, or with --only {stage.reward} first")
        with run.lock():  # before anything is read or written: no second process trains this stage
            self._train(stage, run)

    def _train(self, stage: StageSpec, run: RunDir) -> None:
        if stage.name in self.restart and run.clear():
            self.notify(stage.name, f"restart: removed {run.root}")
        cfg = stage_config(self.spec, stage, self.extra_sets)
        state = stage_state(self.spec, stage)
        if state.state != "new" and run.config_path.exists():
            self._refuse_changed(stage, run, cfg, extend=state.state == "interrupted")
        if state.state == "done":
            self.notify(stage.name, f"done ({state.detail}), skipped")
            return
        resume = state.state == "interrupted"
        self.notify(stage.name, f"{'resuming' if resume else 'training'} {stage.kind} -> {run.root}"
                    + (f" ({state.detail})" if resume else ""))
        command = "coral retriever train" if stage.kind == "retriever" else "coral coral train"
        run.create(cfg, command)
        with self.train_view(stage, cfg) as listeners:
            if stage.kind == "retriever":
                from coral_cli.tasks.train import train_retriever

                train_retriever(cfg, run, listeners, resume)
            else:
                from coral_cli.tasks.train import train_generator

                train_generator(cfg, run, listeners, resume)

    def _refuse_changed(self, stage: StageSpec, run: RunDir, cfg: CoralConfig, extend: bool) -> None:
        """A started stage continues only under the config it started with (`config_drift`: an
        interrupted one may raise its step or epoch limit, a finished one is not trained further),
        and its reward unchanged."""
        # the reward path follows the table's runs folder; whether its weights changed is checked by date
        drift = [d for d in config_drift(resolve(run.config_path), cfg, stage.kind, extend)
                 if not (stage.reward and d.startswith("objective.reward_checkpoint:"))]
        if stage.reward and _mtime(checkpoint_of(self.spec, self.spec.stage(stage.reward))) > _mtime(run.metrics_path):
            drift.append(f"reward '{stage.reward}' was retrained after this stage")
        if drift:
            raise ConfigError(
                f"stage '{stage.name}': {run.root} was trained with another config ({'; '.join(drift[:3])}"
                + (f"; +{len(drift) - 3} more" if len(drift) > 3 else "") + ")",
                f"pass --restart {stage.name} to retrain it, or undo the recipe change")

    def generate(self, stage: StageSpec) -> None:
        """The recipe's [generate] decoding for every pair of the split, in order; with
        `rerank_with`, `candidates` samples each and the ranker's best as the response."""
        from coral_cli.device import pick_device
        from coral_cli.generation.outputs import write_generation
        from coral_cli.generation.requests import split_requests
        from coral_cli.generation.responses import generate_for_contexts, rerank
        from coral_cli.rewards.checkpoint import load_reward

        checkpoint, out = checkpoint_of(self.spec, stage), predictions_path(self.spec, stage.name)
        if stage.generator and not checkpoint.exists() and not is_lm_spec(checkpoint):
            raise ConfigError(f"stage '{stage.name}' needs the model of stage '{stage.generator}', which has no "
                              f"checkpoint yet", f"run the table without --only, or with --only {stage.generator} first")
        cfg = self._config(stage)
        ranker = self._ranker(stage)
        if ranker is not None and cfg.generate.strategy == "greedy":
            raise ConfigError(f"stage '{stage.name}': reranking needs distinct candidates, but greedy decoding gives one",
                              "add set = [\"generate.strategy='nucleus'\"] to the stage")
        source = {"dataset": cfg.data.dataset, "split": self.spec.split,
                  **({"reranked_by": str(ranker)} if ranker else {})}
        # a pretrained LM by name: its decoding decides
        built_from = [p for p in (checkpoint, ranker) if p is not None and p.exists()]
        if _fresh(out, built_from) and _decoded_with(out, dataclasses.asdict(cfg.generate), source.get("reranked_by")):
            self.notify(stage.name, f"predictions up to date: {out}")
            return
        policy, meta = load_policy(checkpoint, pick_device(cfg.runtime.device))
        reward = load_reward(ranker, policy.device) if ranker else None  # fail before generating
        cfg.data.max_context_tokens = meta.get("data", {}).get("max_context_tokens", cfg.data.max_context_tokens)
        requests = split_requests(cfg.data, self.spec.split, policy)
        n = cfg.generate.num_return_sequences
        self.notify(stage.name, f"generating {len(requests)} responses ({cfg.generate.strategy})"
                    + (f", the best of {n} by {ranker}" if ranker else ""))
        t0 = time.perf_counter()
        with self.count_view(f"{stage.name}: generating", len(requests)) as advance:
            results = generate_for_contexts(policy, [r["context_ids"] for r in requests], cfg.generate, advance)
        if reward is not None:
            results = rerank(results, [r["context"] for r in requests], reward, str(ranker))
        write_generation(out, requests, results, cfg.generate, checkpoint, source, time.perf_counter() - t0)

    def _ranker(self, stage: StageSpec) -> Path | None:
        """The reranker of a `rerank_with` row: an earlier retriever stage's checkpoint, or a folder."""
        if not stage.rerank_with:
            return None
        names = {s.name for s in self.spec.stages}
        if stage.rerank_with in names:
            return checkpoint_of(self.spec, self.spec.stage(stage.rerank_with))
        return Path(stage.rerank_with)

    def evaluate(self, stage: StageSpec) -> None:
        """The paper's metrics, MAUDE with the table's evaluators, and R3 of the stage's own reward."""
        cfg = self._config(stage)
        reward = str(checkpoint_of(self.spec, self.spec.stage(stage.reward))) if stage.reward else None
        self._evaluate(stage.name, ("avg_len", "bleu", "meteor", "distinct", "maude", "r3"), reward,
                       cfg.objective.margin, cfg.runtime.device)

    def ground_truth(self) -> None:
        """The paper's Ground Truth row: the references scored as if they were predictions."""
        from coral_cli.data.sources import load_pairs

        first = next((s for s in self.spec.stages if s.kind == "generator"), self.spec.stages[0])
        cfg = self._config(first)
        out = predictions_path(self.spec, GROUND_TRUTH)
        if not out.exists():
            pairs = load_pairs(cfg.data, self.spec.split)
            rows = [{"id": f"{d}:{t}", "context": c, "reference": r, "response": r}
                    for d, t, c, r in zip(pairs["dialogue_id"], pairs["turn"], pairs["context"], pairs["response"])]
            atomic_write_text(out, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
        self._evaluate(GROUND_TRUTH, ("avg_len", "distinct", "maude"), None, 0.0, cfg.runtime.device)

    def _evaluate(self, name: str, families: tuple[str, ...], reward: str | None, margin: float, device: str) -> None:
        from coral_cli.device import pick_device
        from coral_cli.metrics.bootstrap import items_path, write_items
        from coral_cli.metrics.predictions import read_predictions
        from coral_cli.metrics.report import evaluate

        preds, out = predictions_path(self.spec, name), report_path(self.spec, name)
        evaluators = {}
        for col, st in self.spec.evaluators.items():
            path = checkpoint_of(self.spec, self.spec.stage(st))
            if path.exists():
                evaluators[col] = str(path)
            else:  # only with --only: the evaluator's stage has not run yet
                self.notify(name, f"warning: MAUDE-{col} left out: stage '{st}' has no checkpoint yet ({path})")
        inputs = [preds, *map(Path, evaluators.values()), *([Path(reward)] if reward else [])]
        if _fresh(out, inputs) and _same_settings(out, self.spec.bleu if "bleu" in families else None, evaluators) \
                and items_path(out).exists():
            self.notify(name, f"evaluation up to date: {out}")
            return
        self.notify(name, f"evaluating {preds.name} ({', '.join(families)})")
        t0 = time.perf_counter()
        report = evaluate(read_predictions(preds), families, self.spec.bleu, evaluators, reward, margin,
                          pick_device(device))
        report["seconds"] = round(time.perf_counter() - t0, 2)
        for warning in report["warnings"]:
            self.notify(name, f"warning: {warning}")
        write_items(items_path(out), report.pop("items"))  # first: the report's date vouches for both
        atomic_write_text(out, json.dumps(report, indent=2, ensure_ascii=False) + "\n")

    def _config(self, stage: StageSpec) -> CoralConfig:
        """The stage's config for generating and scoring: its data limited to the table's `max_pairs`
        of the split (training read the stage's own `data.max_pairs`)."""
        if stage.generator:  # another stage's model: that stage's config with this stage's sets on top
            base = self.spec.stage(stage.generator)
            cfg = self._config(dataclasses.replace(base, sets=(*base.sets, *stage.sets)))
        elif stage.recipe is None:  # a given checkpoint: defaults plus the table's settings
            overrides = dict(parse_assignment(s) for s in (*self.spec.sets, *stage.sets, *self.extra_sets))
            cfg = resolve(None, overrides)
        else:
            cfg = stage_config(self.spec, stage, self.extra_sets)
        cfg.data.max_pairs = self.spec.max_pairs
        if stage.candidates:
            cfg.generate.num_return_sequences = stage.candidates
        return cfg


def _fresh(target: Path, sources: list[Path]) -> bool:
    """`target` exists and is newer than every file in `sources` (files or checkpoint folders)."""
    if not target.exists():
        return False
    built = target.stat().st_mtime
    return all(_mtime(s) <= built for s in sources)


def _decoded_with(predictions: Path, generate: dict[str, Any], reranked_by: str | None = None) -> bool:
    """The predictions' sidecar records this [generate] section (and this reranker)."""
    try:
        sidecar = json.loads(Path(f"{predictions}.config.json").read_text(encoding="utf-8"))
        return sidecar["generate"] == generate and sidecar.get("reranked_by") == reranked_by
    except (OSError, ValueError, KeyError):
        return False


def _same_settings(report: Path, bleu: str | None, evaluators: dict[str, str]) -> bool:
    """The saved report used this BLEU variant and these evaluators (by weights, wherever they lie now)."""
    try:
        settings = json.loads(report.read_text(encoding="utf-8"))["settings"]
    except (OSError, ValueError, KeyError):
        return False
    from coral_cli.metrics.maude import fingerprint

    used = {k: v["sha1"] for k, v in settings.get("evaluators", {}).items()}
    return used == {k: fingerprint(v) for k, v in evaluators.items()} and (bleu is None or settings.get("bleu", {}).get("variant") == bleu)


def _mtime(path: Path) -> float:
    if path.is_dir():
        return max((p.stat().st_mtime for p in path.iterdir()), default=path.stat().st_mtime)
    return path.stat().st_mtime if path.exists() else float("inf")

