"""`coral annotate run`: a Textual screen for one annotator (the CORAL paper's §5.2 Likert study
or ACUTE-Eval-style pairwise A/B).

It shows exactly the lines of `coral_cli.annotate.screen` (also what `--plain` prints): the
context by speaker, the reply or the two replies (never a system name), the question. Likert:
press 0 / 1 / 2 three times (engagement, relevance, fluency). Pairwise: a / b / t; tab moves to
the optional reason first. u or backspace undoes the last answer, q quits; every answer is
already on disk, so running again resumes.
"""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import Footer, Header, Input, ProgressBar, Static

from coral_cli.annotate.answers import Session
from coral_cli.annotate.screen import screen
from coral_cli.annotate.study import ASPECTS


class AnnotateApp(App):
    """One annotator, one item at a time; answers appended to STUDY/annotations/NAME.jsonl."""

    CSS_PATH = "annotate.tcss"
    TITLE = "coral annotate"
    AUTO_FOCUS = None  # keys go to the bindings; tab reaches the reason box
    BINDINGS = [
        Binding("0", "rate(0)", "0 bad"),
        Binding("1", "rate(1)", "1 fair"),
        Binding("2", "rate(2)", "2 good"),
        Binding("a", "choose('a')", "Reply A"),
        Binding("b", "choose('b')", "Reply B"),
        Binding("t", "choose('t')", "Tie"),
        Binding("u", "undo", "Undo"),
        Binding("backspace", "undo", "Undo", show=False),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(self, session: Session) -> None:
        super().__init__()
        self.session = session
        self.ratings: list[int] = []  # the Likert digits typed so far for the current item

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Only the keys of this study's mode are live (and listed in the footer)."""
        likert = self.session.study.mode == "likert"
        if action == "rate":
            return likert
        if action == "choose":
            return not likert
        return True

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(id="header")
        yield ProgressBar(total=self.session.total, show_eta=False, id="progress")
        with VerticalScroll(id="body"):
            yield Static(id="context")
            yield Static(classes="reply", id="reply-0")
            yield Static(classes="reply", id="reply-1")
            yield Static(id="question")
            yield Static(id="answers")
            yield Static(id="chosen")
        yield Input(placeholder="optional reason (tab here, enter to return), then a / b / t", id="reason")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#reason").display = self.session.study.mode == "pairwise"
        self.query_one("#body").can_focus = False  # tab goes straight to the reason box
        likert = self.session.study.mode == "likert"
        self.sub_title = "0 1 2 for each aspect in turn" if likert else "a / b / t (tie); tab: reason"
        self.show()

    # ---- rendering ---------------------------------------------------------------------
    def show(self) -> None:
        """Draw the current item (or the end screen), from the same `Screen` as --plain."""
        s = self.session
        self.query_one("#progress", ProgressBar).update(progress=s.done)
        task = s.current()
        if task is None:
            self.query_one("#header", Static).update(Text(f"all {s.total} items answered: press q to quit, u to undo"))
            for wid in ("#context", "#reply-0", "#reply-1", "#question", "#answers", "#chosen"):
                self.query_one(wid, Static).update("")
            return
        view = screen(s, task)
        self.query_one("#header", Static).update(Text(view.header))
        self.query_one("#context", Static).update(Text("\n".join(["Context:", *view.context])))
        for k in range(2):
            box = self.query_one(f"#reply-{k}", Static)
            box.display = k < len(view.replies)
            box.update(Text(view.replies[k] if k < len(view.replies) else ""))
        self.query_one("#question", Static).update(Text(view.question))
        self.query_one("#answers", Static).update(Text(view.answers))
        typed = "  ".join(f"{a} {r}" for a, r in zip(ASPECTS, self.ratings))
        if s.study.mode == "likert":
            typed = f"{typed}  → {ASPECTS[len(self.ratings)]}: 0 / 1 / 2".strip()
        self.query_one("#chosen", Static).update(Text(typed))

    def shown_text(self) -> str:
        """Everything the screen shows as text (tests check it is blind)."""
        parts = [str(w.render()) for w in self.query(Static) if w.display]
        return "\n".join(parts + [self.title, self.sub_title])

    # ---- actions -----------------------------------------------------------------------
    def action_rate(self, value: int) -> None:
        task = self.session.current()
        if task is None or self.session.study.mode != "likert":
            return
        self.ratings.append(value)
        if len(self.ratings) == len(ASPECTS):
            self.session.answer(task, {"ratings": dict(zip(ASPECTS, self.ratings))})
            self.ratings = []
        self.show()

    def action_choose(self, key: str) -> None:
        task = self.session.current()
        if task is None or self.session.study.mode != "pairwise":
            return
        reason = self.query_one("#reason", Input)
        self.session.answer(task, {"key": key, "reason": reason.value.strip()})
        reason.value = ""
        self.show()

    def action_undo(self) -> None:
        if self.ratings:  # a half-rated Likert item: drop the last digit first
            self.ratings.pop()
        elif self.session.undo() is None:
            self.notify("nothing to undo")
        self.show()

    @on(Input.Submitted, "#reason")
    def reason_done(self) -> None:
        self.set_focus(None)
