"""Each annotator's answers: an append-only JSON-lines log, one record per answer or undo.

A record is one `write` of one line, flushed and fsynced, so a kill loses at most the answer being
typed and never corrupts the ones before; a torn last line (a crash inside that write) is ignored
on reading. Undo appends {"undo": ITEM}; replaying the log gives the current answers, and the
next item is the first unanswered one in the annotator's fixed order, so quitting and running
again resumes where the annotator left off.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coral_cli.annotate.study import ASPECTS, SCALE, Study, annotator_order, check_annotator
from coral_cli.errors import DataError, output_error

CHOICES = {"a": 0, "b": 1, "t": None}  # pairwise keys: Reply A, Reply B, tie


def append_record(path: Path, record: dict[str, Any]) -> None:
    """Append one JSON line with a single write, then fsync."""
    data = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise output_error(exc, path) from None


def replay(path: Path) -> dict[str, dict[str, Any]]:
    """item -> its current answer, in answering order (undo records applied)."""
    answers: dict[str, dict[str, Any]] = {}
    if not path.is_file():
        return answers
    text = path.read_bytes().decode("utf-8", errors="replace")
    lines = text.split("\n")
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if lineno == len(lines):  # no newline after it: a write torn by a crash
                break
            raise DataError(f"{path}:{lineno}: damaged answer record", "remove that line (answers after it are kept)") from None
        if "undo" in record:
            answers.pop(record["undo"], None)
        else:
            answers.pop(record["item"], None)  # a re-answer moves the item to the end
            answers[record["item"]] = record
    return answers


def parse_answer(mode: str, text: str) -> dict[str, Any]:
    """Likert: three digits 0-2 (engagement relevance fluency), e.g. "2 1 2" or "212".
    Pairwise: a, b or t, optionally followed by a reason after a space. ValueError says why not."""
    text = text.strip()
    if mode == "likert":
        digits = text.replace(" ", "").replace(",", "")
        if len(digits) != len(ASPECTS) or any(d not in "".join(map(str, SCALE)) for d in digits):
            raise ValueError(f"expected three ratings 0-2 ({' '.join(ASPECTS)}), e.g. '2 1 2'; got {text!r}")
        return {"ratings": dict(zip(ASPECTS, (int(d) for d in digits)))}
    key, _, reason = text.partition(" ")
    if key.lower() not in CHOICES:
        raise ValueError(f"expected a, b or t (tie), optionally followed by a reason; got {text!r}")
    return {"key": key.lower(), "reason": reason.strip()}


@dataclass(frozen=True)
class Task:
    """One item as this annotator sees it: replies in `positions` order (Reply A, Reply B)."""

    index: int
    item: dict[str, Any]
    positions: list[int]

    @property
    def shown_systems(self) -> list[str]:
        return [self.item["systems"][p] for p in self.positions]

    @property
    def shown_replies(self) -> list[str]:
        return [self.item["replies"][p] for p in self.positions]


class Session:
    """One annotator working through a study: next task, answer, undo; every change logged."""

    def __init__(self, study: Study, annotator: str) -> None:
        self.study, self.annotator = study, check_annotator(annotator)
        self.path = study.annotations(annotator)
        self.order = [Task(i, study.items[i], pos) for i, pos in annotator_order(study, annotator)]
        self.answers = replay(self.path)

    @property
    def total(self) -> int:
        return len(self.order)

    @property
    def done(self) -> int:
        return sum(1 for t in self.order if t.item["item"] in self.answers)

    def pending(self) -> list[Task]:
        return [t for t in self.order if t.item["item"] not in self.answers]

    def current(self) -> Task | None:
        return next(iter(self.pending()), None)

    def position(self, task: Task) -> int:
        """1-based place of `task` in this annotator's order."""
        return next(i for i, t in enumerate(self.order, start=1) if t.index == task.index)

    def answer(self, task: Task, parsed: dict[str, Any]) -> dict[str, Any]:
        """Record a `parse_answer` result for `task`; returns the record written."""
        record: dict[str, Any] = {"item": task.item["item"], "annotator": self.annotator,
                                  "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
        if self.study.mode == "likert":
            record.update(system=task.shown_systems[0], ratings=parsed["ratings"])
        else:
            pick = CHOICES[parsed["key"]]
            record.update(shown=task.shown_systems, key=parsed["key"],
                          choice="tie" if pick is None else task.shown_systems[pick], reason=parsed.get("reason", ""))
        append_record(self.path, record)
        self.answers.pop(record["item"], None)
        self.answers[record["item"]] = record
        return record

    def undo(self) -> str | None:
        """Remove the last answer (an undo record is appended); returns its item or None."""
        if not self.answers:
            return None
        item = next(reversed(self.answers))
        append_record(self.path, {"undo": item, "annotator": self.annotator, "time": time.strftime("%Y-%m-%dT%H:%M:%S")})
        del self.answers[item]
        return item
