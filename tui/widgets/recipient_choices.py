"""The choices of the withdraw question: "No" (first, and highlighted), "everyone" (or the
recipients marked), then one row per recipient that space marks. Every row says its state
in words and characters: ">" on the highlighted row, "[x]" on a marked recipient, and
"(withdrawn)" on one withdrawn before, which cannot be marked again. Rows are safe Text."""

from __future__ import annotations

from dataclasses import dataclass

from textual.widgets.option_list import Option

from tui.safe_text import one_line, safe_text
from tui.widgets.cursor_list import MarkedOptionList

NO, ALL = 0, 1  # the rows before the recipients


@dataclass(frozen=True)
class Choice:
    """A recipient the message can be withdrawn from: address, name, to/cc/bcc."""

    email: str
    name: str | None
    kind: str
    withdrawn: bool = False

    def text(self) -> str:
        who = f"{one_line(self.name, 60)} <{one_line(self.email, 120)}>" if self.name else one_line(self.email, 120)
        return f"{who} ({one_line(self.kind, 4)})" + (" (withdrawn)" if self.withdrawn else "")


class RecipientChoices(MarkedOptionList):
    def __init__(self, choices: list[Choice], **kw) -> None:
        super().__init__(markup=False, **kw)
        self.choices = choices
        self.marked: set[str] = set()  # the e-mail addresses marked

    def on_mount(self) -> None:
        self.set_options(Option(safe_text(self._row(i))) for i in range(self._row_count()))
        self.highlighted = NO
        self._mark()

    @property
    def chosen(self) -> list[str]:
        """The marked recipients, in the order listed."""
        return [c.email for c in self.choices if c.email in self.marked]

    def choice_at(self, index: int | None) -> Choice | None:
        if index is None or not 0 <= index - 2 < len(self.choices):
            return None
        return self.choices[index - 2]

    def toggle(self, index: int | None) -> bool:
        """Mark or unmark the recipient on that row; False when the row is none (or one
        withdrawn already)."""
        choice = self.choice_at(index)
        if choice is None or choice.withdrawn:
            return False
        self.marked.symmetric_difference_update({choice.email})
        self._mark()
        return True

    def _row(self, index: int) -> str:
        cursor = ">" if index == self.highlighted else " "
        if index == NO:
            return f"{cursor} No, keep it (n, enter)"
        if index == ALL:
            n = len(self.marked)
            return f"{cursor} " + (f"Withdraw it from the {n} marked (y)" if n else "Withdraw it from everyone (y)")
        choice = self.choices[index - 2]
        box = "   " if choice.withdrawn else ("[x]" if choice.email in self.marked else "[ ]")
        return f"{cursor} {box} {choice.text()}"

    def _row_count(self) -> int:
        return 2 + len(self.choices)
