"""`coral annotate`: blind human evaluation of `coral generate` outputs: the CORAL paper's §5.2
Likert study (engagement, relevance, fluency; 0/1/2) or ACUTE-Eval-style pairwise A/B.

Exit codes: 0 done; 1 a report --fail-under gate failed; 2 usage or input error.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from coral_cli.commands.console import err, out, print_json
from coral_cli.commands.options import Json

app = typer.Typer(help="Human evaluation: blind Likert ratings (paper §5.2) or pairwise A/B (ACUTE-Eval).",
                  no_args_is_help=True)

StudyDir = Annotated[Path, typer.Argument(help="The study folder.")]
Annotator = Annotated[str, typer.Option("--annotator", "-a", help="Your name: letters, digits, _ . - (one path component).")]


@app.command("new")
def new(
    study: StudyDir,
    predictions: Annotated[list[Path], typer.Option("--predictions", "-p", help="A 'coral generate' JSONL, once per system.")],
    n: Annotated[int, typer.Option("-n", help="Contexts to draw (the paper rates 100).", min=1)] = 100,
    seed: Annotated[int, typer.Option(help="Seed of the context draw and of every annotator's order.")] = 0,
    mode: Annotated[str, typer.Option(help="likert (§5.2: three aspects, 0/1/2) or pairwise (A / B / tie).")] = "likert",
    include_references: Annotated[bool, typer.Option("--include-references", help="Add the human reference as one more hidden system.")] = False,
    annotator: Annotated[Optional[list[str]], typer.Option("--annotator", "-a", help="Planned annotators (repeatable; recorded in the manifest).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing study folder (and its annotations).")] = False,
) -> None:
    """Make a study folder: n seeded contexts every file shares, systems behind hidden labels."""
    from coral_cli.annotate.study import make_study

    s = make_study(study, predictions, n, seed, mode, include_references, annotator, force)
    m = s.manifest
    err.print(f"study {escape(str(study))}: {m['mode']}, {m['n']} contexts, {len(m['systems'])} systems, "
              f"{m['items']} items per annotator" + (f" ({m['pairs']})" if m["pairs"] else ""), soft_wrap=True)
    err.print(f"next: coral annotate run {escape(str(study))} --annotator NAME", soft_wrap=True)


@app.command("run")
def run(
    study: StudyDir,
    annotator: Annotator,
    plain: Annotated[bool, typer.Option("--plain", help="Print each item as text and read one answer per line from stdin.")] = False,
    answers: Annotated[Optional[Path], typer.Option("--answers", help="With --plain: read the answers from this file instead.")] = None,
) -> None:
    """Annotate (the Textual screen, or --plain for scripts); quit any time and run again to resume."""
    from coral_cli.annotate.answers import Session
    from coral_cli.annotate.study import load_study

    session = Session(load_study(study), annotator)
    if plain or answers is not None:
        _plain(session, _answer_lines(answers))
        return
    from coral_cli.tui.annotate_app import AnnotateApp

    AnnotateApp(session).run()
    err.print(f"{session.done} of {session.total} answered; saved in {escape(str(session.path))}", soft_wrap=True)


@app.command("show")
def show(
    study: StudyDir,
    annotator: Annotator,
    next_: Annotated[int, typer.Option("--next", "-k", help="How many of the next unanswered items to print.", min=1)] = 1,
) -> None:
    """Print the next unanswered items' screens (no answers read): for batch annotation by scripts."""
    from coral_cli.annotate.answers import Session
    from coral_cli.annotate.screen import screen
    from coral_cli.annotate.study import load_study

    session = Session(load_study(study), annotator)
    for task in session.pending()[:next_]:
        typer.echo(screen(session, task).text() + "\n")
    if not session.pending():
        err.print(f"all {session.total} items answered")


@app.command("report")
def report(
    study: StudyDir,
    fail_under: Annotated[Optional[list[str]], typer.Option(help="name=value[,name=value]: exit 1 if a number is below (e.g. win_rate=0.5).")] = None,
    resamples: Annotated[int, typer.Option(help="Bootstrap resamples over contexts for the 95 % intervals (0 = none).", min=0)] = 1000,
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap.")] = 0,
    json: Json = False,
) -> None:
    """Means per aspect or win rates (with length control), sign tests, Krippendorff's alpha."""
    from coral_cli.annotate.study import load_study
    from coral_cli.annotate.study_report import build_report
    from coral_cli.commands.evaluate import parse_gates
    from coral_cli.metrics.report import check_gates

    under = parse_gates(fail_under)
    r = build_report(load_study(study), resamples, seed)
    r["gates"] = check_gates(r, under, {})
    if json:
        print_json(r)
    else:
        _render(r)
    failed = [g for g in r["gates"] if not g["passed"]]
    for g in failed:
        err.print(f"[red]gate failed:[/] {escape(g['metric'])} = {g['value']:.4f} < {g['threshold']}")
    if failed:
        raise typer.Exit(1)


def _answer_lines(path: Optional[Path]) -> Iterable[str]:
    from coral_cli.textio import read_text, stdin_lines

    if path is None:
        return stdin_lines()
    return iter(read_text(path, fix="pass a text file with one answer per line").splitlines())


def _plain(session, lines: Iterable[str]) -> None:
    """Screen, answer, next; 'u' undoes the last answer, 'q' or EOF stops (answers are saved as given)."""
    from coral_cli.annotate.answers import parse_answer
    from coral_cli.annotate.screen import screen

    lines = iter(lines)
    while (task := session.current()) is not None:
        typer.echo(screen(session, task).text())
        while True:
            typer.echo("> ", nl=False)
            line = next(lines, None)
            if line is None or line.strip().lower() == "q":
                typer.echo("")
                err.print(f"stopped: {session.done} of {session.total} answered; run again to resume")
                return
            if line.strip().lower() == "u":
                undone = session.undo()
                typer.echo("undone the last answer" if undone else "nothing to undo")
                break
            try:
                session.answer(task, parse_answer(session.study.mode, line))
            except ValueError as exc:
                typer.echo(f"invalid answer: {exc}")
                continue
            break
        typer.echo("")
    typer.echo(f"all {session.total} items answered")


def _ci(ci) -> str:
    return f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else ""


def _render(r: dict) -> None:
    from rich.table import Table

    out.print(f"[bold]coral annotate report[/]: {escape(r['study'])} ({r['mode']}, {r['n']} contexts; "
              f"annotators: {escape(', '.join(f'{k} ({v})' for k, v in r['annotators'].items()))})", soft_wrap=True)
    words = Table(title="mean reply length (words)", title_justify="left")
    words.add_column("system")
    words.add_column("words", justify="right")
    for s in r["systems"]:
        words.add_row(escape(s["name"]), f"{s['mean_words']:.2f}")
    out.print(words)
    if r["mode"] == "likert":
        table = Table(title="mean rating 0-2 [95 % bootstrap interval over contexts]", title_justify="left")
        for h in ("system", "answers", "engagement", "relevance", "fluency"):
            table.add_column(h, justify="left" if h == "system" else "right")
        for name, e in r["likert"].items():
            table.add_row(escape(name), str(e["answers"]),
                          *("-" if e[a]["mean"] is None else f"{e[a]['mean']:.3f}{_ci(e[a]['ci'])}"
                            for a in ("engagement", "relevance", "fluency")))
        out.print(table)
    else:
        table = Table(title="A vs B: win rate (ties = 1/2) [95 % bootstrap interval over contexts]",
                      title_justify="left")
        for h in ("A", "B", "win/tie/loss", "win rate", "contexts won/lost", "sign test p", "LC win rate"):
            table.add_column(h, justify="left" if h in ("A", "B") else "right")
        for p in r["pairwise"]:
            if p["judgments"] == 0:
                table.add_row(escape(p["a"]), escape(p["b"]), "0/0/0", "-", "-", "-", "-")
                continue
            table.add_row(escape(p["a"]), escape(p["b"]), f"{p['wins']}/{p['ties']}/{p['losses']}",
                          f"{p['win_rate']:.3f}{_ci(p.get('win_rate_ci'))}",
                          f"{p['contexts_won']}/{p['contexts_lost']}", f"{p['sign_test_p']:.4f}",
                          f"{p['lc_win_rate']:.3f}{_ci(p.get('lc_win_rate_ci'))}")
        out.print(table)
    for key, a in r["alpha"].items():
        value = "n/a (needs two annotators on the same items)" if a["alpha"] is None else f"{a['alpha']:.3f}"
        out.print(f"Krippendorff's alpha ({a['metric']}) {key}: {value} over {a['items']} items")
    out.print("per annotator:")
    for who, numbers in r["per_annotator"].items():
        if r["mode"] == "likert":
            cells = "; ".join(f"{escape(name)} " + " ".join(
                f"{a[:3]} {e[a]['mean']:.2f}" for a in ("engagement", "relevance", "fluency") if e[a]["mean"] is not None)
                for name, e in numbers.items())
        else:
            cells = "; ".join(f"{escape(p['a'])} vs {escape(p['b'])} {p['wins']}/{p['ties']}/{p['losses']}"
                              + (f" win rate {p['win_rate']:.3f}" if p["win_rate"] is not None else "") for p in numbers)
        out.print(f"  {escape(who)}: {cells}", soft_wrap=True)
