"""DSTC7-Ubuntu (track 1, subtask 1) in the two forms the paper's data comes in.

- The CORAL authors' src/tgt form: `src-<split>.txt` holds contexts whose utterances are
  joined by ' [SEP] ', `tgt-<split>.txt` the line-aligned responses.
- The official DSTC7 JSON: examples with `messages-so-far`, `options-for-correct-answers`
  and 100 `options-for-next` candidates, read both as pairs and as 1-of-100 retrieval examples.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from coral_cli.errors import DataError
from coral_cli.textio import read_text

SRC_SEP = " [SEP] "
SPLIT_ALIASES = {"validation": ("valid", "validation", "dev"), "train": ("train",), "test": ("test",)}


@dataclass(frozen=True)
class Pair:
    """One context-response example; `dialogue_id`/`turn` locate it in its dialogue."""

    dialogue_id: str
    turn: int
    context: list[str]
    response: str


@dataclass(frozen=True)
class RetrievalExample:
    """A context with its candidate responses; `label` indexes the correct one."""

    example_id: str
    context: list[str]
    candidates: list[str]
    label: int


def find_ubuntu_files(folder: Path, split: str) -> tuple[str, list[Path]]:
    """('srctgt', [src, tgt]) or ('json', [file]) for `split` in `folder` or a direct sub-folder."""
    folders = [folder] + sorted(p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []
    for base in folders:
        for alias in SPLIT_ALIASES[split]:
            src, tgt = base / f"src-{alias}.txt", base / f"tgt-{alias}.txt"
            if src.is_file() and tgt.is_file():
                return "srctgt", [src, tgt]
            js = base / f"ubuntu_{alias}_subtask_1.json"
            if js.is_file():
                return "json", [js]
    raise DataError(
        f"no DSTC7-Ubuntu data for split '{split}' in {folder}",
        f"point --data-dir at a folder with src-{SPLIT_ALIASES[split][0]}.txt + "
        f"tgt-{SPLIT_ALIASES[split][0]}.txt or ubuntu_{SPLIT_ALIASES[split][0]}_subtask_1.json",
    )


def read_src_tgt(src: Path, tgt: Path) -> list[Pair]:
    """Pairs from line-aligned src/tgt files; a dialogue continues while src[i+1] == src[i] [SEP] tgt[i]."""
    src_lines = _read_lines(src)
    tgt_lines = _read_lines(tgt)
    if len(src_lines) != len(tgt_lines):
        raise DataError(
            f"{src} has {len(src_lines)} lines but {tgt} has {len(tgt_lines)}",
            "src and tgt files must be line-aligned (one context per response)",
        )
    pairs: list[Pair] = []
    chain, prev = -1, None
    for i, (ctx, resp) in enumerate(zip(src_lines, tgt_lines), start=1):
        if not ctx.strip():
            raise DataError(f"{src}:{i}: empty context", "every src line needs at least one utterance")
        if not resp.strip():
            raise DataError(f"{tgt}:{i}: empty response", "every tgt line needs a response")
        if prev is None or ctx != prev:
            chain += 1
        context = [u.strip() for u in ctx.split("[SEP]")]
        pairs.append(Pair(f"ubuntu-{chain}", len(context), context, resp.strip()))
        prev = f"{ctx}{SRC_SEP}{resp}"
    return pairs


def read_dstc7_json(path: Path) -> list[RetrievalExample]:
    """1-of-N retrieval examples from the official DSTC7 track-1 JSON."""
    try:
        data = json.loads(read_text(path))
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg})", "check the file is complete") from None
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a JSON list of examples", "use the official DSTC7 track-1 file")
    return [_dstc7_example(path, i, ex) for i, ex in enumerate(data)]


def dstc7_pairs(examples: list[RetrievalExample]) -> list[Pair]:
    """The (context, correct answer) pair of each retrieval example."""
    return [Pair(ex.example_id, len(ex.context), ex.context, ex.candidates[ex.label]) for ex in examples]


def _dstc7_example(path: Path, index: int, ex: object) -> RetrievalExample:
    where = f"{path}: example {index}"
    try:
        ex_id = str(ex["example-id"])  # type: ignore[index]
        where = f"{path}: example {index} (example-id {ex_id})"
        context = [m["utterance"].strip() for m in ex["messages-so-far"]]  # type: ignore[index]
        correct = ex.get("options-for-correct-answers") or []  # type: ignore[union-attr]
        options = ex["options-for-next"]  # type: ignore[index]
    except (KeyError, TypeError, AttributeError) as exc:
        raise DataError(f"{where}: missing field {exc}",
                        "each example needs example-id, messages-so-far and options-for-next") from None
    if not correct:
        raise DataError(f"{where}: no options-for-correct-answers",
                        "use the file with answers (the official test answers are released separately)")
    if not context:
        raise DataError(f"{where}: empty messages-so-far", "every example needs a context")
    answer = correct[0]
    ids = [o.get("candidate-id") for o in options]
    candidates = [o["utterance"].strip() for o in options]
    if answer.get("candidate-id") in ids:
        label = ids.index(answer["candidate-id"])
    else:  # the answer is not among the options: put it first
        candidates, label = [answer["utterance"].strip()] + candidates, 0
    return RetrievalExample(ex_id, context, candidates, label)


def _read_lines(path: Path) -> list[str]:
    lines = read_text(path).split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines
