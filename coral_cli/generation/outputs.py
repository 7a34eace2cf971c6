"""The output of `coral generate`: JSON lines plus a `<out>.config.json` sidecar."""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

from coral_cli import __version__
from coral_cli.config.schema import GenerateConfig
from coral_cli.textio import write_text


def output_rows(requests: list[dict[str, Any]], results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """id, context, reference (when known), response (the first, or the reranker's best), responses,
    logprobs, and when reranked: scores, reranked_by."""
    rows = []
    for req, res in zip(requests, results):
        row = {"id": req["id"], "context": req["context"]}
        if req.get("reference") is not None:
            row["reference"] = req["reference"]
        row.update(response=res["responses"][res.get("best", 0)], responses=res["responses"], logprobs=res["logprobs"])
        row.update({k: res[k] for k in ("scores", "reranked_by") if k in res})  # from `rerank`
        rows.append(row)
    return rows


def write_generation(out: Path | None, requests: list[dict[str, Any]], results: list[dict[str, Any]],
                     g: GenerateConfig, checkpoint: Path, source: dict[str, Any], seconds: float) -> None:
    """JSON lines to `out` (atomically) or stdout; the sidecar records how they were made."""
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in output_rows(requests, results))
    if out is None:
        sys.stdout.write(text)
        return
    write_text(out, text)
    sidecar = {
        "checkpoint": str(checkpoint), "generate": dataclasses.asdict(g), **source, "count": len(requests),
        "seconds": round(seconds, 2), "coral_version": __version__, "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    write_text(Path(f"{out}.config.json"), json.dumps(sidecar, indent=2))
