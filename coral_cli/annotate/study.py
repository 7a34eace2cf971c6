"""A study folder: `manifest.json` (which file is which hidden system, sha256, n, seed, mode,
context ids) and `items.jsonl` (what annotators judge), made from `coral generate` outputs.

The CORAL paper's human evaluation (§5.2) rates replies to 100 random DailyDialog test contexts;
pairwise mode compares every pair of systems per context as ACUTE-Eval does (Li et al. 2019),
blind. Systems hide behind "system 1..k" labels here and behind "Reply A / B" on screen; each
annotator sees the items in an order, and the replies in positions, drawn from the study seed
and a hash of the annotator's name, so orders differ across annotators and a resume repeats them.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import random
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coral_cli.errors import ConfigError, DataError, OutputError
from coral_cli.textio import read_text

MODES = ("likert", "pairwise")
ASPECTS = ("engagement", "relevance", "fluency")  # §5.2, each rated 0 / 1 / 2
SCALE = (0, 1, 2)
REFERENCE = "reference"
MANIFEST, ITEMS, ANNOTATIONS = "manifest.json", "items.jsonl", "annotations"
VERSION = 1
_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}")


@dataclass(frozen=True)
class Source:
    """One prediction file, keyed by context id: (context turns, reply, reference or None)."""

    path: Path
    rows: dict[str, tuple[list[str], str, str | None]]


@dataclass
class Study:
    folder: Path
    manifest: dict[str, Any]
    items: list[dict[str, Any]]

    @property
    def mode(self) -> str:
        return self.manifest["mode"]

    def annotations(self, annotator: str) -> Path:
        return self.folder / ANNOTATIONS / f"{check_annotator(annotator)}.jsonl"

    def system_names(self) -> dict[str, str]:
        """'system 2' -> its file's name, for the researcher's report only."""
        return {s["system"]: s["name"] for s in self.manifest["systems"]}


def check_annotator(name: str) -> str:
    """An annotator name is one safe path component: [A-Za-z0-9_.-], not starting with '.'."""
    if not _NAME.fullmatch(name or ""):
        raise ConfigError(f"bad annotator name {name!r}",
                          "use letters, digits, '_', '-' or '.', not starting with '.' (at most 64), e.g. --annotator ann1")
    return name


def read_source(path: Path) -> Source:
    """`coral generate` JSON lines: id, context (list of turns), response, reference."""
    if not path.is_file():
        raise DataError(f"predictions file not found: {path}", "pass the --out file of 'coral generate'")
    rows: dict[str, tuple[list[str], str, str | None]] = {}
    fix = 'each line must be {"id": ..., "context": ["turn", ...], "response": "text"} (the output of coral generate)'
    for lineno, line in enumerate(read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{lineno}: invalid JSON ({exc.msg})", fix) from None
        ctx = row.get("context") if isinstance(row, dict) else None
        ctx = [ctx] if isinstance(ctx, str) else ctx
        ok = isinstance(ctx, list) and ctx and all(isinstance(t, str) for t in ctx)
        if not ok or not isinstance(row.get("response"), str) or not isinstance(row.get("reference", ""), (str, type(None))):
            raise DataError(f"{path}:{lineno}: needs a 'context' list of strings and a 'response' string", fix)
        key = str(row.get("id", lineno))
        if key in rows:
            raise DataError(f"{path}:{lineno}: duplicate id {key!r}", "each context id must appear once")
        rows[key] = (ctx, row["response"], row.get("reference"))
    if not rows:
        raise DataError(f"no predictions in {path}", fix)
    return Source(path, rows)


def common_ids(sources: list[Source]) -> list[str]:
    """Ids every file has, in the first file's order; the same id must carry the same context."""
    first = sources[0]
    ids = [k for k in first.rows if all(k in s.rows for s in sources[1:])]
    for s in sources[1:]:
        bad = next((k for k in ids if s.rows[k][0] != first.rows[k][0]), None)
        if bad is not None:
            raise DataError(f"{s.path}: context of id {bad!r} differs from {first.path}",
                            "compare predictions generated on the same split (same contexts, same ids)")
    if not ids:
        raise DataError(f"{sources[-1].path} shares no context id with {first.path}",
                        "compare predictions generated on the same split")
    return ids


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def system_pairs(k: int) -> list[tuple[int, int]]:
    """Every unordered pair of the k systems (ACUTE-Eval compares each pair on each context)."""
    return list(itertools.combinations(range(k), 2))


def make_study(folder: Path, files: list[Path], n: int, seed: int, mode: str, include_references: bool = False,
               annotators: list[str] | None = None, force: bool = False) -> Study:
    """Draw n seeded contexts common to every file, write the study folder atomically and return it."""
    if mode not in MODES:
        raise ConfigError(f"unknown mode {mode!r}", f"choose from {', '.join(MODES)}")
    if n < 1:
        raise ConfigError(f"-n {n}: need at least one context", "pass e.g. -n 100 (the paper's §5.2 size)")
    for a in annotators or []:
        check_annotator(a)
    if folder.exists() and (not folder.is_dir() or (any(folder.iterdir()) and not force)):
        raise OutputError(f"{folder} already exists and is not empty",
                          "choose a new study folder, or pass --force to replace it (its annotations too)")
    if not files:
        raise ConfigError("no prediction files", "pass -p FILE once per system, e.g. -p coral.jsonl -p mle.jsonl")
    sources = [read_source(p) for p in files]
    ids = common_ids(sources)
    if n > len(ids):
        raise DataError(f"-n {n} but the files share only {len(ids)} contexts", f"pass -n {len(ids)} or fewer")
    drawn = random.Random(seed).sample(ids, n)
    systems = _systems(files, sources)
    replies = [[s.rows[k][1] for s in sources] for k in drawn]
    if include_references:
        missing = next((k for k in drawn if sources[0].rows[k][2] is None), None)
        if missing is not None:
            raise DataError(f"{files[0]}: id {missing!r} has no 'reference'",
                            "generate on a split with references, or drop --include-references")
        systems.append({"system": f"system {len(systems) + 1}", "name": REFERENCE, "file": None, "sha256": None})
        for row, k in zip(replies, drawn):
            row.append(sources[0].rows[k][2])
    if mode == "pairwise" and len(systems) < 2:
        raise ConfigError("pairwise mode needs two systems", "pass a second -p FILE or --include-references")
    items = _items(mode, drawn, [sources[0].rows[k][0] for k in drawn], replies, systems)
    manifest = {
        "version": VERSION, "mode": mode, "n": n, "seed": seed, "systems": systems, "context_ids": drawn,
        "aspects": list(ASPECTS) if mode == "likert" else None, "scale": list(SCALE) if mode == "likert" else None,
        "pairs": (f"all {len(system_pairs(len(systems)))} pairs of the {len(systems)} systems on every context"
                  if mode == "pairwise" else None),
        "items": len(items), "include_references": include_references, "annotators": list(annotators or []),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    _write(folder, manifest, items)
    return Study(folder, manifest, items)


def _systems(files: list[Path], sources: list[Source]) -> list[dict[str, Any]]:
    stems = [p.stem for p in files]
    names = stems if len(set(stems)) == len(stems) else [f"{p.parent.name}/{p.stem}" for p in files]
    names = names if len(set(names)) == len(names) else [str(p) for p in files]
    return [{"system": f"system {i + 1}", "name": name, "file": str(s.path), "sha256": sha256(s.path)}
            for i, (name, s) in enumerate(zip(names, sources))]


def _items(mode: str, ids: list[str], contexts: list[list[str]], replies: list[list[str]],
           systems: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Likert: one item per (context, system); pairwise: one per (context, pair of systems)."""
    groups = [(i,) for i in range(len(systems))] if mode == "likert" else system_pairs(len(systems))
    items = []
    for key, ctx, row in zip(ids, contexts, replies):
        for g in groups:
            items.append({"item": f"i{len(items) + 1:05d}", "id": key, "context": ctx,
                          "systems": [systems[i]["system"] for i in g], "replies": [row[i] for i in g]})
    return items


def _write(folder: Path, manifest: dict[str, Any], items: list[dict[str, Any]]) -> None:
    from coral_cli.atomic import atomic_directory

    try:
        with atomic_directory(folder) as tmp:
            (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
            (tmp / ITEMS).write_text("".join(json.dumps(it, ensure_ascii=False) + "\n" for it in items), encoding="utf-8")
            (tmp / ANNOTATIONS).mkdir()
    except OSError as exc:
        from coral_cli.errors import output_error

        raise output_error(exc, folder) from None


def load_study(folder: Path) -> Study:
    """A study made by `coral annotate new`."""
    fix = "pass a folder made by 'coral annotate new'"
    if not (folder / MANIFEST).is_file():
        raise DataError(f"{folder} is not a study folder (no {MANIFEST})", fix)
    try:
        manifest = json.loads(read_text(folder / MANIFEST, fix=fix))
        items = [json.loads(x) for x in read_text(folder / ITEMS, fix=fix).splitlines() if x.strip()]
    except json.JSONDecodeError as exc:
        raise DataError(f"{folder}: damaged study file ({exc.msg})", fix) from None
    if manifest.get("version") != VERSION or manifest.get("mode") not in MODES:
        raise DataError(f"{folder}/{MANIFEST} was written by another coral version", fix)
    return Study(folder, manifest, items)


def annotator_order(study: Study, annotator: str) -> list[tuple[int, list[int]]]:
    """(item index, positions of its replies) in the order this annotator sees them.

    Seeded by the study seed and a sha256 of the name (never Python's salted hash), so the same
    annotator always gets the same order and another annotator a different one.
    """
    digest = hashlib.sha256(f"{study.manifest['seed']}\x1f{check_annotator(annotator)}".encode()).hexdigest()
    rng = random.Random(int(digest[:16], 16))
    order = list(range(len(study.items)))
    rng.shuffle(order)
    out = []
    for i in order:
        positions = list(range(len(study.items[i]["replies"])))
        rng.shuffle(positions)
        out.append((i, positions))
    return out
