"""`coral chat`: a Textual app to chat with a generator and inspect its rewards live.

Conversation on the left; on the right the candidates of the last turn (f_R, R3 = f_R - margin,
mean token log-prob; best by R3 first) and an inspector with per-token probabilities. Generation
and scoring run in a worker thread so the UI never freezes.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Footer, Header, Input, Label, ListItem, ListView, LoadingIndicator, Static

from coral_cli.chat.commands import apply_command
from coral_cli.chat.session import Candidate, ChatSession

HELP = "/n N  /strategy greedy|beam|nucleus  /top_p P  /temp T  /max N  /margin M  /rerank on|off"


def token_heat(candidate: Candidate) -> Text:
    """Word pieces coloured by probability: red (unlikely) -> green (likely)."""
    text = Text()
    for piece, p in candidate.tokens:
        red, green = int(255 * (1 - p)), int(255 * p)
        text.append(piece + " ", style=f"rgb({red},{green},80)")
    return text


class ChatApp(App):
    """Chat with a coral generator; candidates and rewards on the side."""

    CSS_PATH = "chat.tcss"
    TITLE = "coral chat"
    BINDINGS = [
        Binding("ctrl+r", "regenerate", "Regenerate"),
        Binding("ctrl+z", "undo", "Undo turn"),
        Binding("ctrl+l", "clear", "Clear"),
        Binding("ctrl+s", "save", "Save"),
        Binding("ctrl+n", "next_candidate", "Next cand."),
        Binding("ctrl+p", "prev_candidate", "Prev cand."),
        Binding("ctrl+q", "quit", "Quit"),
    ]

    def __init__(self, load: Callable[[], ChatSession], transcript: Path) -> None:
        super().__init__()
        self.load, self.transcript_path = load, transcript
        self.session: ChatSession | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="body"):
            yield VerticalScroll(id="conversation")
            with Vertical(id="side"):
                yield ListView(id="candidates")
                yield Static("select a candidate to inspect its tokens", id="inspect")
        yield Static("loading models…", id="status")
        yield Input(placeholder="say something (or /help)", id="input", disabled=True)
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#conversation").mount(LoadingIndicator(id="loading"))
        self.start()

    @work(thread=True, exclusive=True)
    def start(self) -> None:
        try:
            session = self.load()
        except Exception as exc:  # shown in the app; the CLI already checked the checkpoints
            self.call_from_thread(self.notify, f"cannot load models: {exc}", severity="error", timeout=30)
            return
        self.call_from_thread(self._loaded, session)

    def _loaded(self, session: ChatSession) -> None:
        self.session = session
        self.query_one("#loading").remove()
        for utt in session.prefix:
            self._add_message(utt, "context")
        box = self.query_one("#input", Input)
        box.disabled = False
        box.focus()
        self._status()

    # ---- input -------------------------------------------------------------------------
    @on(Input.Submitted, "#input")
    def submitted(self, event: Input.Submitted) -> None:
        text = event.value.strip()
        event.input.value = ""
        if not text or self.session is None:
            return
        if text.startswith("/"):
            try:
                message = apply_command(self.session, text)
            except ValueError as exc:
                self.notify(str(exc), severity="warning")
                return
            self.notify(message or HELP)
            self._show_candidates()
            self._status()
            return
        self._add_message(text, "user")
        self._generate(lambda: self.session.say(text))

    @work(thread=True, exclusive=True, group="generate")
    def _generate(self, action: Callable[[], Any]) -> None:
        self.call_from_thread(self._busy, True)
        try:
            action()
        except Exception as exc:  # keep the session; tell the user
            self.call_from_thread(self.notify, f"generation failed: {exc}", severity="error")
            self.call_from_thread(self._rebuild)
        else:
            self.call_from_thread(self._rebuild)
        finally:
            self.call_from_thread(self._busy, False)

    # ---- actions -----------------------------------------------------------------------
    def action_regenerate(self) -> None:
        if self.session and self.session.turns:
            self._generate(self.session.regenerate)

    def action_undo(self) -> None:
        if self.session:
            self.session.undo()
            self._rebuild()

    def action_clear(self) -> None:
        if self.session:
            self.session.clear()
            self._rebuild()

    def action_next_candidate(self) -> None:
        self._pick(+1)

    def action_prev_candidate(self) -> None:
        self._pick(-1)

    def action_save(self) -> None:
        if not self.session:
            return
        rows = self.session.transcript()
        self.transcript_path.parent.mkdir(parents=True, exist_ok=True)
        self.transcript_path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        self.notify(f"saved {len(rows)} turns to {self.transcript_path}")

    @on(ListView.Selected, "#candidates")
    def selected(self, event: ListView.Selected) -> None:
        if self.session and self.session.turns and event.list_view.index is not None:
            self.session.choose(event.list_view.index)
            self._rebuild()

    @on(ListView.Highlighted, "#candidates")
    def highlighted(self, event: ListView.Highlighted) -> None:
        self._inspect(event.list_view.index)

    # ---- rendering ---------------------------------------------------------------------
    def _pick(self, step: int) -> None:
        if not (self.session and self.session.turns and self.session.turns[-1].candidates):
            return
        turn = self.session.turns[-1]
        self.session.choose((turn.chosen + step) % len(turn.candidates))
        self._rebuild()

    def _busy(self, busy: bool) -> None:
        self.query_one("#input", Input).disabled = busy
        if not busy:
            self.query_one("#input", Input).focus()
        self._status("generating…" if busy else None)

    def _add_message(self, text: str, kind: str) -> None:
        who = {"user": "you", "model": "coral", "context": "context"}[kind]
        widget = Static(f"[b]{who}:[/b] {text}", classes=kind)
        conversation = self.query_one("#conversation", VerticalScroll)
        conversation.mount(widget)
        conversation.scroll_end(animate=False)

    def _rebuild(self) -> None:
        conversation = self.query_one("#conversation", VerticalScroll)
        conversation.remove_children()
        for utt in self.session.prefix:
            self._add_message(utt, "context")
        for turn in self.session.turns:
            self._add_message(turn.user, "user")
            if turn.candidates:
                self._add_message(turn.reply, "model")
        self._show_candidates()
        self._status()

    def _show_candidates(self) -> None:
        view = self.query_one("#candidates", ListView)
        view.clear()
        if not self.session.turns:
            self.query_one("#inspect", Static).update("")
            return
        turn = self.session.turns[-1]
        for i, c in enumerate(turn.candidates):
            mark = "▶" if i == turn.chosen else " "
            scores = f"R3 {c.r3:+.3f} f_R {c.f_r:.3f} " if c.r3 is not None else ""
            view.append(ListItem(Label(f"{mark} {i + 1}. {scores}lp {c.logprob:.2f} │ {c.text}")))
        view.index = turn.chosen
        self._inspect(turn.chosen)

    def _inspect(self, index: int | None) -> None:
        if not (self.session and self.session.turns) or index is None:
            return
        turn = self.session.turns[-1]
        if not 0 <= index < len(turn.candidates):
            return
        c = turn.candidates[index]
        body = Text.assemble(("model saw: ", "bold"), (turn.seen_context[-200:] + "\n", "dim"), ("tokens: ", "bold"))
        body.append_text(token_heat(c))
        if c.f_r is not None:
            body.append(f"\nf_R {c.f_r:.4f}   R3 {c.r3:+.4f}   mean log-prob {c.logprob:.3f}")
        self.query_one("#inspect", Static).update(body)

    def _status(self, message: str | None = None) -> None:
        s = self.session.settings if self.session else None
        text = message or (f"N {s.n} · {s.strategy} · top-p {s.top_p} · temp {s.temperature} · max {s.max_new_tokens} "
                           f"· margin {s.margin} · rerank {'on' if s.rerank else 'off'} · /help" if s else "")
        self.query_one("#status", Static).update(text)
