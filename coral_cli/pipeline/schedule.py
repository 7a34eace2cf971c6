"""A table's work as a dependency graph, so independent stages can run side by side (`[table]
jobs`): a stage's training waits for its reward, its generation for its model (and its
reranker), its evaluation for the table's evaluators and its reward."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from coral_cli.pipeline.paths import GROUND_TRUTH
from coral_cli.pipeline.spec import TableSpec

PHASES = ("train", "generate", "evaluate")
Key = tuple[str, str]  # (stage name, phase)


@dataclass(frozen=True)
class Task:
    """One phase of one stage; `needs` are the keys that must have finished first."""

    stage: str
    phase: str
    needs: frozenset[Key] = frozenset()

    @property
    def key(self) -> Key:
        return (self.stage, self.phase)

    def __str__(self) -> str:
        return f"{self.stage} ({self.phase})"


def table_tasks(spec: TableSpec, only: Collection[str] = ()) -> list[Task]:
    """Every task of the table (or of the `only` stages) in table order. A need outside the
    selection counts as met: with --only, an earlier run made it (or the task says it is missing)."""
    trained = {s.name for s in spec.stages}
    evaluators = {(name, "train") for name in spec.evaluators.values()}
    tasks: list[Task] = []
    for s in spec.stages:
        if only and s.name not in only:
            continue
        reward = {(s.reward, "train")} if s.reward else set()
        tasks.append(Task(s.name, "train", frozenset(reward)))
        if s.kind != "generator":
            continue
        model = {(s.name, "train")} | ({(s.generator, "train")} if s.generator else set())
        ranker = {(s.rerank_with, "train")} if s.rerank_with in trained else set()
        tasks.append(Task(s.name, "generate", frozenset(model | ranker)))
        tasks.append(Task(s.name, "evaluate", frozenset({(s.name, "generate")} | evaluators | reward)))
    if spec.ground_truth and (not only or GROUND_TRUTH in only):
        tasks.append(Task(GROUND_TRUTH, "evaluate", frozenset(evaluators)))
    present = {t.key for t in tasks}
    return [Task(t.stage, t.phase, frozenset(t.needs & present)) for t in tasks]


def dependents(tasks: list[Task]) -> dict[Key, int]:
    """How many tasks wait, directly or not, on each task: the scheduler starts the ones that
    unblock the most work first (a reward before the rows that train against it)."""
    direct: dict[Key, set[Key]] = {t.key: set() for t in tasks}
    for t in tasks:
        for need in t.needs:
            direct[need].add(t.key)
    waiting: dict[Key, set[Key]] = {}

    def close(key: Key) -> set[Key]:
        if key not in waiting:
            waiting[key] = set(direct[key])
            for child in direct[key]:
                waiting[key] |= close(child)
        return waiting[key]

    for t in tasks:
        close(t.key)
    return {k: len(v) for k, v in waiting.items()}


def next_task(tasks: list[Task], done: Collection[Key], started: Collection[Key]) -> Task | None:
    """The ready task (all needs done, not yet started) that most tasks wait on; ties go to table order."""
    ready = [t for t in tasks if t.key not in started and t.needs <= set(done)]
    if not ready:
        return None
    weight = dependents(tasks)
    order = {t.key: i for i, t in enumerate(tasks)}
    return max(ready, key=lambda t: (weight[t.key], -order[t.key]))
