"""What an annotator sees for one item, as plain text: the same lines in `--plain` mode and in
the Textual screen, and never a system or file name (blind, as in §5.2 and ACUTE-Eval)."""

from __future__ import annotations

from dataclasses import dataclass

from coral_cli.annotate.answers import Session, Task
from coral_cli.annotate.study import ASPECTS

SPEAKERS = ("A", "B")
LIKERT_QUESTION = ("Rate the reply on each aspect: 0 = bad, 1 = fair, 2 = good.\n"
                   "  engagement: is it interesting, does it make you want to go on talking?\n"
                   "  relevance:  does it fit the conversation so far?\n"
                   "  fluency:    is it natural, grammatical English?")
LIKERT_ANSWERS = f"answer: three digits 0-2 for {', '.join(ASPECTS)} (e.g. 2 1 2)"
PAIRWISE_QUESTION = "Which would you rather get as the next turn?"
PAIRWISE_ANSWERS = "answer: a (Reply A), b (Reply B) or t (tie), optionally followed by a reason (e.g. a more on topic)"


@dataclass(frozen=True)
class Screen:
    """The parts of one item's screen; `text()` joins them the way `--plain` prints them."""

    header: str
    context: list[str]  # "A: turn", "B: turn", ...
    replies: list[str]  # "Reply: ..." or "Reply A: ...", "Reply B: ..."
    question: str
    answers: str

    def text(self) -> str:
        return "\n".join([self.header, "Context:", *(f"  {t}" for t in self.context), "", *self.replies, "",
                          self.question, self.answers])


def screen(session: Session, task: Task) -> Screen:
    """Context turns by speaker (A, B alternating from the first), then the reply or replies."""
    context = [f"{SPEAKERS[i % 2]}: {turn}" for i, turn in enumerate(task.item["context"])]
    replies = task.shown_replies
    if session.study.mode == "likert":
        shown, question, answers = [f"Reply: {replies[0]}"], LIKERT_QUESTION, LIKERT_ANSWERS
    else:
        shown = [f"Reply {label}: {r}" for label, r in zip("AB", replies)]
        question, answers = PAIRWISE_QUESTION, PAIRWISE_ANSWERS
    header = f"item {session.position(task)} of {session.total} ({session.done} answered)"
    return Screen(header, context, shown, question, answers)
