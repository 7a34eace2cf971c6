"""What `coral evaluate` reads: `coral generate` JSON lines, or line-aligned plain-text files of
predictions, references and (for the reference-free metrics) contexts."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from coral_cli.errors import DataError
from coral_cli.textio import read_text

CONTEXT_SEPARATORS = (" [SEP] ", " __eou__ ")


@dataclass
class PredictionSet:
    """Aligned lists; `samples[i]` holds every response for context i (self-BLEU)."""

    predictions: list[str]
    references: list[str] | None = None
    contexts: list[list[str]] | None = None
    samples: list[list[str]] = field(default_factory=list)
    source: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.predictions)


def read_predictions(path: Path) -> PredictionSet:
    """`.jsonl` from `coral generate` (response/responses, reference, context), else plain text."""
    if not path.is_file():
        raise DataError(f"predictions file not found: {path}", "pass the --out file of 'coral generate' or a text file")
    ps = _read_jsonl(path) if path.suffix == ".jsonl" else PredictionSet(_lines(path), source={"predictions": str(path)})
    if not ps.predictions:
        raise DataError(f"no predictions in {path}", "pass the --out file of 'coral generate' or a text file, one per line")
    return ps


def attach_references(ps: PredictionSet, path: Path) -> None:
    refs = _lines(path)
    _aligned(ps, refs, path, "references")
    ps.references = refs
    ps.source["references"] = str(path)


def attach_contexts(ps: PredictionSet, path: Path) -> None:
    """One context per line: JSON list of utterances, or utterances joined by ' [SEP] ' / ' __eou__ '."""
    contexts = []
    for lineno, line in enumerate(_lines(path), start=1):
        if line.startswith("["):
            try:
                contexts.append([str(u) for u in json.loads(line)])
                continue
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{lineno}: invalid JSON list ({exc.msg})", "one JSON list of utterances per line") from None
        for sep in CONTEXT_SEPARATORS:
            line = line.replace(sep.strip(), "\x1f")
        contexts.append([u.strip() for u in line.split("\x1f") if u.strip()])
    _aligned(ps, contexts, path, "contexts")
    ps.contexts = contexts
    ps.source["contexts"] = str(path)


def _read_jsonl(path: Path) -> PredictionSet:
    preds, refs, ctxs, samples = [], [], [], []
    for lineno, line in enumerate(read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        row = _jsonl_row(path, lineno, line)
        responses = row.get("responses") or [row.get("response")]
        if not _strings(responses) or not isinstance(row.get("response", ""), str):
            raise DataError(f"{path}:{lineno}: no 'response' string", "each line needs \"response\" (or \"responses\")")
        preds.append(row.get("response", responses[0]))
        samples.append(list(responses))
        refs.append(row.get("reference"))
        ctxs.append(row.get("context"))
    has_refs = [r is not None for r in refs]
    if any(has_refs) and not all(has_refs):
        raise DataError(f"{path}:{has_refs.index(False) + 1}: missing 'reference' while other lines have one",
                        "give every line a reference, or none and pass --references FILE")
    ctxs = [[c] if isinstance(c, str) else c for c in ctxs]
    return PredictionSet(preds, refs if all(has_refs) else None, ctxs if all(c for c in ctxs) else None, samples,
                         {"predictions": str(path)})


def _jsonl_row(path: Path, lineno: int, line: str) -> dict:
    """One line as a JSON object whose optional 'reference' / 'context' have the right types."""
    fix = 'each line must be {"response": "text", "reference": "text", "context": ["utterance", ...]}'
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}:{lineno}: invalid JSON ({exc.msg})", "use the output of 'coral generate'") from None
    if not isinstance(row, dict):
        raise DataError(f"{path}:{lineno}: expected a JSON object, got {type(row).__name__}", fix)
    if row.get("reference") is not None and not isinstance(row["reference"], str):
        raise DataError(f"{path}:{lineno}: 'reference' must be a string", fix)
    ctx = row.get("context")
    if ctx is not None and not isinstance(ctx, str) and not _strings(ctx):
        raise DataError(f"{path}:{lineno}: 'context' must be a list of strings", fix)
    return row


def _strings(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _lines(path: Path) -> list[str]:
    if not path.is_file():
        raise DataError(f"file not found: {path}", "check the path")
    lines = read_text(path).split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line.strip() for line in lines]


def _aligned(ps: PredictionSet, items: list, path: Path, what: str) -> None:
    if len(items) != len(ps):
        raise DataError(f"{path} has {len(items)} {what} but there are {len(ps)} predictions",
                        "the files must be line-aligned, one line per example")
