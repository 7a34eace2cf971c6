"""`coral chat`: chat with a generator in a Textual app (or `--plain` JSON lines for scripts)."""

from __future__ import annotations

import json as jsonlib
from pathlib import Path
from typing import Annotated, Optional

import typer

from coral_cli.commands.options import Device, check_finite


def chat(
    checkpoint: Annotated[Optional[Path], typer.Option("--checkpoint", "-c", help="A generator checkpoint folder, or a pretrained LM as it is (smollm2, a folder, .gguf, hub name). Default: the newest generator checkpoint under runs/, else smollm2.")] = None,
    reward_checkpoint: Annotated[Optional[Path], typer.Option(help="A retriever checkpoint for f_R / R3.")] = None,
    context_file: Annotated[Optional[Path], typer.Option(help="Start from these utterances (lines, JSON list or __eou__).")] = None,
    n: Annotated[int, typer.Option("-n", help="Candidates per turn.", min=1, max=16)] = 4,
    strategy: Annotated[str, typer.Option(help="nucleus, beam or greedy.")] = "nucleus",
    top_p: Annotated[float, typer.Option(help="Nucleus mass.", min=0.0, max=1.0)] = 0.9,
    temperature: Annotated[float, typer.Option(help="Sampling temperature.", min=0.01)] = 1.0,
    max_new_tokens: Annotated[int, typer.Option(help="Longest reply in tokens.", min=1)] = 32,
    margin: Annotated[float, typer.Option(help="m in R3 = f_R - m.", min=0.0, max=1.0)] = 0.0,
    rerank: Annotated[bool, typer.Option("--rerank/--no-rerank", help="Reply with the best candidate by R3.")] = True,
    transcript: Annotated[Path, typer.Option(help="Where ctrl+s saves the transcript (JSON lines).")] = Path("chat-transcript.jsonl"),
    plain: Annotated[bool, typer.Option("--plain", help="Read user turns from stdin, write JSON lines (no TUI).")] = False,
    device: Device = None,
) -> None:
    """Chat with a generator; see candidates with f_R, R3 and log-probs; inspect tokens."""
    from coral_cli.chat.loading import check_checkpoints, default_checkpoint, load_session, read_context_file
    from coral_cli.chat.session import ChatSettings
    from coral_cli.commands.console import err
    from coral_cli.device import pick_device
    from coral_cli.errors import CoralError

    if strategy not in ("nucleus", "beam", "greedy"):
        raise CoralError(f"unknown strategy '{strategy}'", "use nucleus, beam or greedy")
    check_finite(top_p=top_p, temperature=temperature, margin=margin)
    if checkpoint is None:
        checkpoint, which = default_checkpoint()
        err.print(which, markup=False)
    check_checkpoints(checkpoint, reward_checkpoint)
    history = read_context_file(context_file) if context_file else []
    settings = ChatSettings(n, strategy, top_p, temperature, max_new_tokens, margin, rerank)
    dev = pick_device(device or "auto")

    def load():
        return load_session(checkpoint, reward_checkpoint, dev, settings, history)

    if plain:
        _plain(load())
        return
    from coral_cli.tui.chat_app import ChatApp

    ChatApp(load, transcript).run()


def _plain(session) -> None:
    from coral_cli.chat.commands import apply_command
    from coral_cli.errors import CoralError
    from coral_cli.textio import stdin_lines

    for line in stdin_lines():
        text = line.strip()
        if not text:
            continue
        if text.startswith("/"):
            try:
                result = {"command": text, "result": apply_command(session, text) or "help"}
            except ValueError as exc:
                result = {"command": text, "error": str(exc)}
            typer.echo(jsonlib.dumps(result))
            continue
        try:
            session.say(text)
        except CoralError as exc:
            typer.echo(jsonlib.dumps({"user": text, "error": exc.message}))
            continue
        row = session.transcript()[-1]
        typer.echo(jsonlib.dumps({k: row[k] for k in ("turn", "user", "reply", "chosen", "candidates", "seen_context")},
                                 ensure_ascii=False))
