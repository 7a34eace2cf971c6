"""`coral evaluate`: the paper's metrics in one command (table, or JSON for CI), quality gates,
and `coral evaluate compare` for side-by-side reports.

Exit codes: 0 all gates passed; 1 a --fail-under/--fail-over gate failed; 2 usage or input error.
"""

from __future__ import annotations

import json as jsonlib
import math
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.markup import escape

from coral_cli.commands.console import err, out, print_json
from coral_cli.commands.options import Device, Json, check_finite, check_out_file
from coral_cli.errors import ConfigError, CoralError

app = typer.Typer(help="Evaluate generated responses: Avg. Len, BLEU, METEOR, Dist-n, MAUDE, R3.",
                  invoke_without_command=True)

Gate = Annotated[Optional[list[str]], typer.Option(help="name=value[,name=value]: exit 1 if a metric is below.")]


@app.callback()
def evaluate(
    ctx: typer.Context,
    predictions: Annotated[Optional[Path], typer.Option("--predictions", "-p", help="coral generate JSONL, or a text file.")] = None,
    references: Annotated[Optional[Path], typer.Option(help="Line-aligned reference texts.")] = None,
    contexts: Annotated[Optional[Path], typer.Option(help="Line-aligned contexts (JSON list or ' [SEP] '-joined).")] = None,
    metrics: Annotated[Optional[str], typer.Option(help="Comma list of: avg_len, bleu, meteor, distinct, maude, r3, self-bleu. [default: all the inputs allow]")] = None,
    bleu: Annotated[str, typer.Option(help="sacrebleu, nltk-corpus or nltk-sentence (see README).")] = "sacrebleu",
    evaluator: Annotated[Optional[list[str]], typer.Option(help="name=DIR of a MAUDE evaluator retriever (repeatable).")] = None,
    reward_checkpoint: Annotated[Optional[str], typer.Option(help="The training reward: report its mean R3, warn on reuse.")] = None,
    margin: Annotated[float, typer.Option(help="m for the reported R3 = f_R - m.", min=0.0, max=1.0)] = 0.0,
    references_as_predictions: Annotated[bool, typer.Option("--references-as-predictions", help="Score the references themselves (the paper's Ground Truth row).")] = False,
    fail_under: Gate = None,
    fail_over: Annotated[Optional[list[str]], typer.Option(help="name=value[,...]: exit 1 if a metric is above.")] = None,
    device: Device = None,
    json: Json = False,
    out_file: Annotated[Optional[Path], typer.Option("--out", "-o", help="Also write the JSON report to this file.")] = None,
) -> None:
    """Score predictions against references and with retriever evaluators."""
    if ctx.invoked_subcommand:
        return
    if predictions is None:
        raise CoralError("no predictions given", "pass --predictions FILE (e.g. the --out of 'coral generate')")
    from coral_cli.device import pick_device
    from coral_cli.metrics.predictions import attach_contexts, attach_references, read_predictions
    from coral_cli.metrics.report import check_gate_names, check_gates, default_families, metric_names
    from coral_cli.metrics.bootstrap import items_path, write_items
    from coral_cli.metrics.report import evaluate as run_evaluation

    chosen = _families(metrics, bleu)
    check_finite(margin=margin)
    check_out_file(out_file, "report.json")
    under, over = parse_gates(fail_under), parse_gates(fail_over)
    evaluators = dict(_pair(e, "--evaluator esim=runs/esim/checkpoints/best") for e in evaluator or [])
    ps = read_predictions(predictions)
    if references:
        attach_references(ps, references)
    if contexts:
        attach_contexts(ps, contexts)
    if references_as_predictions:
        if ps.references is None:
            raise CoralError("--references-as-predictions needs references", "pass --references FILE")
        ps.predictions, ps.samples = list(ps.references), [[r] for r in ps.references]
        ps.source["references_as_predictions"] = True
    chosen = chosen or default_families(ps)
    check_gate_names({**under, **over}, metric_names(chosen, evaluators, reward_checkpoint))
    with err.status("scoring"):
        report = run_evaluation(ps, chosen, bleu, evaluators, reward_checkpoint, margin, pick_device(device or "auto"))
    items = report.pop("items")
    report["gates"] = check_gates(report, under, over)
    for warning in report["warnings"]:
        err.print(f"[yellow]warning:[/] {escape(warning)}", soft_wrap=True)
    if out_file:
        from coral_cli.errors import output_error
        from coral_cli.textio import write_text

        scores = items_path(out_file)  # per-context scores: `coral evaluate compare --bootstrap`
        try:  # first, and dropped if the report fails: a report never sits beside another report's scores
            write_items(scores, items)
        except OSError as exc:
            raise output_error(exc, scores) from None
        try:
            write_text(out_file, jsonlib.dumps(report, indent=2, ensure_ascii=False) + "\n")
        except CoralError:
            scores.unlink(missing_ok=True)
            raise
    if json:
        print_json(report)
    else:
        _render(report)
    failed = [g for g in report["gates"] if not g["passed"]]
    for g in failed:
        sign = "<" if g["fail"] == "under" else ">"
        err.print(f"[red]gate failed:[/] {g['metric']} = {g['value']:.4f} {sign} {g['threshold']}")
    if failed:
        raise typer.Exit(1)


@app.command("compare")
def compare(
    reports: Annotated[list[Path], typer.Argument(help="JSON reports of 'coral evaluate --json'.")],
    markdown: Annotated[bool, typer.Option("--markdown", help="Print a Markdown table.")] = False,
    bootstrap: Annotated[int, typer.Option(help="Paired bootstrap resamples over the test contexts: a 95 % interval "
                                                "and p-value for each difference (0 = off; needs the reports' "
                                                ".items.json, written by 'coral evaluate --out').", min=0)] = 0,
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap resamples.")] = 0,
    length_matched: Annotated[bool, typer.Option("--length-matched", help="Also each per-item score's difference "
                                                 "within buckets of reply length, and adjusted for length by OLS "
                                                 "(needs the reports' .items.json; intervals with --bootstrap N).")] = False,
    json: Json = False,
) -> None:
    """Side-by-side metrics of several reports, with deltas against the first (and with
    --bootstrap N, paired-bootstrap intervals and p-values: * marks p < 0.05; with
    --length-matched, the differences with reply length held apart)."""
    from coral_cli.metrics.bootstrap import MIN_RESAMPLES
    from coral_cli.metrics.report import higher_is_better

    if 0 < bootstrap < MIN_RESAMPLES:
        raise ConfigError(f"--bootstrap {bootstrap} is too few resamples for a 95 % interval or a p-value",
                          f"pass --bootstrap 1000 (at least {MIN_RESAMPLES}), or 0 to compare without them")
    loaded = [_load_report(p) for p in reports]
    _warn_different_test_sets(reports, loaded)
    tests: list[dict[str, Any]] = [{} for _ in reports]
    items: list[dict[str, Any]] = []
    if bootstrap or length_matched:
        from coral_cli.metrics.bootstrap import read_items

        items = [read_items(p) for p in reports]
    if bootstrap:
        from coral_cli.metrics.bootstrap import paired_bootstrap

        with err.status(f"bootstrap: {bootstrap} paired resamples"):
            tests = [{}] + [paired_bootstrap(items[0], b, bootstrap, seed) for b in items[1:]]
    names = list(dict.fromkeys(k for r in loaded for k in r["metrics"]))
    stems = [p.stem for p in reports]  # runs/<row>/test-eval.json: name each by its folder when stems repeat
    header = ["metric"] + (stems if len(set(stems)) == len(stems) else [f"{p.parent.name}/{p.stem}" for p in reports])
    lengths = _length_matched(items, names, bootstrap, seed) if length_matched else None
    if json:
        print_json({"reports": [str(p) for p in reports], "columns": header[1:],
                    "metrics": {n: [r["metrics"].get(n) for r in loaded] for n in names},
                    "bootstrap": {"resamples": bootstrap, "seed": seed, "alpha": 0.05,
                                  "vs_first": [{"report": str(p), **({"tests": t} if t else {})}
                                               for p, t in zip(reports[1:], tests[1:])]} if bootstrap else None,
                    "length": [r.get("length") for r in loaded],
                    **({"length_matched": {**lengths, "vs_first": [{"report": str(p), **m} for p, m in
                                                                   zip(reports[1:], lengths["vs_first"])]}}
                       if lengths else {})})
        return
    rows = []
    for name in names:
        base = loaded[0]["metrics"].get(name)
        cells = [name]
        for i, r in enumerate(loaded):
            v = r["metrics"].get(name)
            cell = "-" if v is None else f"{v:.4f}"
            if i and v is not None and base is not None:
                cell += f" ({v - base:+.4f})"
                t = tests[i].get(name)
                if t:
                    ci = f" [{t['ci'][0]:+.4f}, {t['ci'][1]:+.4f}]" if t["ci"] else ""
                    ar = " (AR)" if t["p_from"] == "randomisation" else ""
                    cell += f"{ci} p={t['p']:.3f}{ar}" + ("*" if t["significant"] else "")
            cells.append(cell)
        rows.append(cells)
    from coral_cli.commands.evaluate_length import length_rows, render_length_matched

    rows += length_rows(loaded)  # no arrow, no delta: a diagnostic, not a score
    if markdown:
        typer.echo("| " + " | ".join(header) + " |")
        typer.echo("|" + "---|" * len(header))
        for row in rows:
            typer.echo("| " + " | ".join(row) + " |")
        if bootstrap:
            typer.echo(f"\n(difference vs the first) [95 % paired-bootstrap interval, {bootstrap} resamples over "
                       f"the test contexts (and seeds)] p-value; * p < 0.05. {_AR_NOTE.format(bootstrap)}")
        if lengths:
            render_length_matched(header[1:], lengths["vs_first"], lengths["corpus_level"], bootstrap, True)
        return
    from rich.table import Table

    title = "coral evaluate compare (deltas vs the first" + (f"; [95 % interval] p, {bootstrap} paired resamples, "
                                                           f"* p < 0.05; {_AR_NOTE.format(bootstrap)})" if bootstrap else ")")
    table = Table(title=title, title_justify="left")
    for h in header:
        table.add_column(h, justify="left" if h == "metric" else "right")
    for row in rows:
        arrow = "" if row[0] not in names else " ↑" if higher_is_better(row[0]) else " ↓"
        table.add_row(row[0] + arrow, *row[1:])
    out.print(table)
    if lengths:
        render_length_matched(header[1:], lengths["vs_first"], lengths["corpus_level"], bootstrap, False)


def _length_matched(items: list[dict[str, Any]], names: list[str], resamples: int, seed: int) -> dict[str, Any]:
    """`metrics.length_control.length_matched` of every report against the first."""
    from coral_cli.metrics.length_control import length_matched, not_length_matched, per_item_metrics

    with err.status("length-matched differences" + (f": {resamples} paired resamples" if resamples else "")):
        vs_first = [length_matched(items[0], b, resamples, seed) for b in items[1:]]
    return {"resamples": resamples, "seed": seed, "alpha": 0.05,
            "buckets": "deciles of both rows' pooled reply lengths (words), fixed in the resamples",
            "corpus_level": not_length_matched(names, per_item_metrics(items[0])), "vs_first": vs_first}


_AR_NOTE = ("(AR): p-value by paired approximate randomisation ({} rounds), for the corpus metrics BLEU and "
            "Dist-n; Dist-n has no interval (no resampling scheme with verified coverage)")


def _warn_different_test_sets(paths: list[Path], loaded: list[dict[str, Any]]) -> None:
    """Deltas between reports of different test contexts mix model and test set: say so, once per
    report (by the prediction count, and the contexts' and references' sha1 where reports carry it)."""
    n0, h0 = _test_set(loaded[0])
    for path, report in zip(paths[1:], loaded[1:]):
        n, h = _test_set(report)
        why = (f"{n0} vs {n} predictions" if None not in (n0, n) and n != n0
               else "different contexts or references" if None not in (h0, h) and h != h0 else None)
        if why:
            err.print(f"[yellow]warning:[/] {escape(str(path))} and {escape(str(paths[0]))} score different test "
                      f"contexts ({why}): their deltas mix model and test set", soft_wrap=True)


def _test_set(report: dict[str, Any]) -> tuple[Any, Any]:
    counts, source = report.get("counts"), report.get("source")
    return (counts.get("predictions") if isinstance(counts, dict) else None,
            source.get("test_set_sha1") if isinstance(source, dict) else None)


def _render(report: dict[str, Any]) -> None:
    from rich.table import Table

    out.print(f"[bold]coral evaluate[/]: {report['source'].get('predictions')}")
    table = Table()
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in report["metrics"].items():
        table.add_row(name, f"{value:.4f}")
    out.print(table)
    c = report["counts"]
    out.print(f"{c['predictions']} predictions, {c['with_reference']} with references, {c['with_context']} with contexts")
    from coral_cli.commands.evaluate_length import length_line

    line = length_line(report)  # reply length vs the references' and r(length, each learned score)
    if line:
        out.print(escape(line), soft_wrap=True)
    if "bleu" in report["settings"]:
        b = report["settings"]["bleu"]
        out.print(f"BLEU: {b['variant']} {b.get('signature', '')}".rstrip())
    for warning in report["warnings"]:  # again after the table, for whoever reads only stdout
        out.print(f"[yellow]warning: {escape(warning)}[/]", soft_wrap=True)


def _families(metrics: Optional[str], bleu: str) -> tuple[str, ...]:
    """The --metrics families asked for (empty: all the inputs allow); --bleu checked too."""
    from coral_cli.metrics.bleu import VARIANTS
    from coral_cli.metrics.report import METRIC_FAMILIES

    chosen = tuple(m.strip() for m in (metrics or "").split(",") if m.strip())
    unknown = [m for m in chosen if m not in METRIC_FAMILIES]
    if unknown:
        raise CoralError(f"unknown metric(s) {', '.join(unknown)}", f"choose from {', '.join(METRIC_FAMILIES)}")
    if bleu not in VARIANTS:
        raise CoralError(f"unknown BLEU variant '{bleu}'", f"choose from {', '.join(VARIANTS)}")
    return chosen


def parse_gates(values: Optional[list[str]]) -> dict[str, float]:
    """--fail-under / --fail-over values (METRIC=VALUE, comma lists, repeatable) -> {metric: threshold}."""
    gates: dict[str, float] = {}
    for item in values or []:
        for part in item.split(","):
            if part.strip():
                name, value = _pair(part, "--fail-under BLEU=0.01")
                gates[name] = _threshold(part, value)
    return gates


def _threshold(gate: str, value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not math.isfinite(number):  # float() accepts 'nan' and 'inf'; no gate can compare with them
        raise CoralError(f"gate '{gate}' needs a finite number", "write it as METRIC=VALUE, e.g. --fail-under BLEU=0.01")
    return number


def _pair(text: str, example: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name.strip() or not value.strip():
        raise CoralError(f"expected name=value, got '{text}'", f"e.g. {example}")
    return name.strip(), value.strip()


def _load_report(path: Path) -> dict[str, Any]:
    """A `coral evaluate --json` report: a JSON object whose "metrics" maps names to numbers."""
    from coral_cli.textio import read_text

    fix = "pass files written by 'coral evaluate --json' (or --out)"
    try:
        data = jsonlib.loads(read_text(path, fix=fix))
    except jsonlib.JSONDecodeError as exc:
        raise CoralError(f"{path}:{exc.lineno}: not a JSON report ({exc.msg})", fix) from None
    metrics = data.get("metrics") if isinstance(data, dict) else None
    if not isinstance(metrics, dict):
        raise CoralError(f"{path} is not a coral evaluate report (no \"metrics\" object)", fix)
    bad = [k for k, v in metrics.items() if isinstance(v, bool) or not isinstance(v, (int, float))]
    if bad:
        raise CoralError(f"{path}: metric '{bad[0]}' is not a number", fix)
    return data
