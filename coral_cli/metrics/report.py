"""`coral evaluate`: every metric of the paper's Table 1 in one JSON report with the exact
settings that produced it (BLEU signature, tokenisation, WordNet, evaluator checkpoints) and the
package versions, so a number in CI can be traced and repeated."""

from __future__ import annotations

import difflib
import hashlib
import json
from importlib import metadata
from typing import Any

from coral_cli import __version__
from coral_cli.errors import CoralError
from coral_cli.metrics import maude
from coral_cli.metrics.bleu import bleu_item_stats, bleu_scores, self_bleu
from coral_cli.metrics.collapse import check_collapse
from coral_cli.metrics.length_control import learned_scores, length_summary, length_warnings
from coral_cli.metrics.lexical import average_length, distinct_n, words
from coral_cli.metrics.meteor import meteor_items
from coral_cli.metrics.predictions import PredictionSet

LOWER_IS_BETTER = {"self-BLEU"}  # every other metric is better when higher
METRIC_FAMILIES = ("avg_len", "bleu", "meteor", "distinct", "maude", "r3", "self-bleu")


def higher_is_better(name: str) -> bool:
    return name not in LOWER_IS_BETTER


def default_families(ps: PredictionSet) -> tuple[str, ...]:
    """Every family the inputs allow: reference metrics only with references, self-BLEU only with
    several samples for some context."""
    return tuple(m for m in METRIC_FAMILIES if (ps.references is not None or m not in ("bleu", "meteor"))
                 and (m != "self-bleu" or _several_samples(ps)))


def _several_samples(ps: PredictionSet) -> bool:
    return any(len(s) > 1 for s in ps.samples)


def scored_set_sha1(ps: PredictionSet) -> str | None:
    """sha1 of the contexts and references scored (None without either): `evaluate compare` warns
    when two reports' fingerprints differ, since their differences would mix model and test set."""
    if ps.contexts is None and ps.references is None:
        return None
    data = json.dumps([ps.contexts, ps.references], ensure_ascii=False)
    return hashlib.sha1(data.encode("utf-8")).hexdigest()


def metric_names(families: tuple[str, ...], evaluators: dict[str, str], reward_checkpoint: str | None) -> list[str]:
    """The metrics `evaluate` can report for these families, known before any scoring."""
    per_family = {"avg_len": ["avg_len"], "distinct": ["Dist-1", "Dist-2"], "meteor": ["METEOR"],
                  "bleu": [f"BLEU-{n}" for n in range(1, 5)] + ["BLEU"], "self-bleu": ["self-BLEU"],
                  "maude": [f"MAUDE-{name}" for name in evaluators], "r3": ["R3"] if reward_checkpoint else []}
    return [name for family in families for name in per_family[family]]


def check_gate_names(gates: dict[str, float], known: list[str]) -> None:
    """A gate on a metric the report will not have is an error before the (slow) scoring."""
    for name in gates:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise CoralError(f"gate on unknown metric '{name}'", f"{hint}metrics in this report: {', '.join(known)}")


REPORT_KEYS = ("metrics", "counts", "settings", "source", "collapse", "length", "warnings", "gates", "versions")


def evaluate(ps: PredictionSet, metrics: tuple[str, ...], bleu_variant: str, evaluators: dict[str, str],
             reward_checkpoint: str | None, margin: float, device: Any) -> dict[str, Any]:
    """Compute the requested metric families; those that need what is missing are an error.
    The collapse alarms (`metrics.collapse`) and the length check (`metrics.length_control`) always
    run: they are cheap and catch what BLEU and learned evaluators hide.
    The report's "items" holds the per-context numbers a paired bootstrap resamples
    (`metrics.bootstrap`); callers write it to its side file and keep it out of the summary."""
    out: dict[str, Any] = {}
    items: dict[str, Any] = {"count": len(ps), "responses": list(ps.predictions),
                             "references": list(ps.references) if ps.references else None}
    settings: dict[str, Any] = {"words": "lowercase + whitespace"}
    collapse, warnings = check_collapse(ps.predictions, ps.references)
    refs_needed = {"bleu", "meteor"} & set(metrics)
    if refs_needed and ps.references is None:
        raise CoralError(f"{', '.join(sorted(refs_needed))} need references",
                         "pass --references FILE, predictions with a 'reference', or --metrics without them")
    if "self-bleu" in metrics and not _several_samples(ps):
        source = ps.source.get("predictions", "the predictions")
        raise CoralError(f"self-BLEU needs several samples per context, but {source} has one reply per context",
                         "generate with 'coral generate -n 5' (JSONL \"responses\"), or leave self-bleu out of --metrics")
    if "avg_len" in metrics:
        out["avg_len"] = average_length(ps.predictions)
        items["avg_len"] = [len(words(p)) for p in ps.predictions]
    if "distinct" in metrics:
        out["Dist-1"], out["Dist-2"] = distinct_n(ps.predictions, 1), distinct_n(ps.predictions, 2)
    if "bleu" in metrics:
        scores, settings["bleu"] = bleu_scores(ps.predictions, ps.references, bleu_variant)
        out.update(scores)
        items["bleu"] = {"variant": bleu_variant, "stats": bleu_item_stats(ps.predictions, ps.references, bleu_variant)}
    if "meteor" in metrics:
        items["METEOR"], settings["meteor"] = meteor_items(ps.predictions, ps.references)
        out["METEOR"] = sum(items["METEOR"]) / max(1, len(ps))
    if "self-bleu" in metrics:
        out["self-BLEU"] = self_bleu(ps.samples)
    scored = {k for k in ("maude", "r3") if k in metrics and (evaluators if k == "maude" else reward_checkpoint)}
    if scored and ps.contexts is None:
        raise CoralError("MAUDE and R3 need the contexts", "use 'coral generate' output or pass --contexts FILE")
    reward_sha = maude.fingerprint(reward_checkpoint) if reward_checkpoint else None
    if "maude" in scored:
        settings["evaluators"] = {}
        for name, path in evaluators.items():
            info = maude.describe(path)
            settings["evaluators"][name] = info
            items[f"MAUDE-{name}"] = maude.item_rewards(path, ps.contexts, ps.predictions, device)
            out[f"MAUDE-{name}"] = sum(items[f"MAUDE-{name}"]) / max(1, len(ps))
            if reward_sha and info["sha1"] == reward_sha:
                warnings.append(f"evaluator '{name}' is the very checkpoint that served as the training reward: "
                                "its score measures the training objective, not quality (use an independently "
                                "trained evaluator)")
    if "r3" in scored:
        items["R3"] = [f - margin for f in maude.item_rewards(reward_checkpoint, ps.contexts, ps.predictions, device)]
        out["R3"] = sum(items["R3"]) / max(1, len(ps))
        settings["reward"] = {**maude.describe(reward_checkpoint), "margin": margin}
    length = length_summary(ps.predictions, ps.references, {k: items[k] for k in learned_scores(items)})
    warnings += length_warnings(length)
    return {
        "metrics": out,
        "counts": {"predictions": len(ps), "with_reference": len(ps) if ps.references else 0,
                   "with_context": len(ps) if ps.contexts else 0,
                   "samples_per_context": max((len(s) for s in ps.samples), default=1)},
        "settings": settings,
        "source": {**ps.source, "test_set_sha1": scored_set_sha1(ps)},
        "collapse": collapse,
        "length": length,  # reply length vs the references', r(length, each learned score): `length_control`
        "warnings": warnings,
        "gates": [],
        "versions": versions(),
        "items": items,
    }


def check_gates(report: dict[str, Any], under: dict[str, float], over: dict[str, float]) -> list[dict[str, Any]]:
    """--fail-under name=value (fails when lower), --fail-over (fails when higher)."""
    gates = []
    for op, table in (("under", under), ("over", over)):
        for name, threshold in table.items():
            if name not in report["metrics"]:
                raise CoralError(f"gate on unknown metric '{name}'",
                                 f"metrics in this report: {', '.join(report['metrics']) or 'none'}")
            value = report["metrics"][name]
            passed = value >= threshold if op == "under" else value <= threshold
            gates.append({"metric": name, "fail": op, "threshold": threshold, "value": value, "passed": passed})
    return gates


def versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"coral": __version__}
    for pkg in ("sacrebleu", "nltk", "torch", "transformers"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    return out
