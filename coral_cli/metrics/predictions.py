"""What `coral evaluate` reads: `coral generate` JSON lines, or line-aligned plain-text files of
predictions, references and (for the reference-free metrics) contexts."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from coral_cli.errors import DataError

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
    if path.suffix == ".jsonl":
        return _read_jsonl(path)
    return PredictionSet(_lines(path), source={"predictions": str(path)})


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
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{lineno}: invalid JSON ({exc.msg})", "use the output of 'coral generate'") from None
        responses = row.get("responses") or ([row["response"]] if isinstance(row, dict) and "response" in row else None)
        if not isinstance(row, dict) or not responses or not all(isinstance(r, str) for r in responses):
            raise DataError(f"{path}:{lineno}: no 'response' string", "each line needs \"response\" (or \"responses\")")
        preds.append(row.get("response", responses[0]))
        samples.append(list(responses))
        refs.append(row.get("reference"))
        ctxs.append(row.get("context"))
    if not preds:
        raise DataError(f"{path}: no predictions", "the file is empty")
    has_refs = [r is not None for r in refs]
    if any(has_refs) and not all(has_refs):
        raise DataError(f"{path}:{has_refs.index(False) + 1}: missing 'reference' while other lines have one",
                        "give every line a reference, or none and pass --references FILE")
    ctxs = [[c] if isinstance(c, str) else c for c in ctxs]
    return PredictionSet(preds, refs if all(has_refs) else None, ctxs if all(c for c in ctxs) else None, samples,
                         {"predictions": str(path)})


def _lines(path: Path) -> list[str]:
    if not path.is_file():
        raise DataError(f"file not found: {path}", "check the path")
    text = path.read_text(encoding="utf-8")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line.strip() for line in lines]


def _aligned(ps: PredictionSet, items: list, path: Path, what: str) -> None:
    if len(items) != len(ps):
        raise DataError(f"{path} has {len(items)} {what} but there are {len(ps)} predictions",
                        "the files must be line-aligned, one line per example")
