"""A one-key question before something that cannot be undone, the same everywhere (deleting
for good, discarding a draft, signing out with a draft open, sending without a subject):
y does it; n, escape and enter (the cursor starts on "No") keep things as they are; q and
ctrl+q quit penmail from it, as from any screen."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import OptionList
from textual.widgets.option_list import Option

from tui.widgets.cursor_list import CursorOptionList
from tui.widgets.safe_static import SafeStatic

__all__ = ["ConfirmScreen"]


class ConfirmScreen(ModalScreen[bool]):
    """Answers True only for y (or enter on the "Yes" row)."""

    BINDINGS = [
        Binding("y", "answer(True)", "Yes", id="confirm.yes"),
        Binding("n,escape", "answer(False)", "No", id="confirm.no"),
        Binding("q", "app.quit", "Quit", id="confirm.quit"),
    ]

    def __init__(self, question: str, yes: str = "Yes") -> None:
        super().__init__()
        self.question, self.yes = question, yes

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-box"):
            yield SafeStatic(self.question, id="confirm-question")
            yield CursorOptionList(Option("No, keep it (n, enter)", id="no"),
                                   Option(f"{self.yes} (y)", id="yes"), id="confirm-choices")

    def on_mount(self) -> None:
        choices = self.query_one(OptionList)
        choices.highlighted = 0
        choices.focus()

    @on(OptionList.OptionSelected)
    def _chosen(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id == "yes")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)
