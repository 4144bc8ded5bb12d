"""The one question before a message is withdrawn: from everyone, or from the recipients
marked with space. y withdraws; n, escape and enter on the first row (the cursor starts on
"No") keep it. Answers a Withdrawal, or None to keep it."""

from __future__ import annotations

from dataclasses import dataclass

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import OptionList

from tui.safe_text import one_line
from tui.widgets.recipient_choices import ALL, NO, Choice, RecipientChoices
from tui.widgets.safe_static import SafeStatic

__all__ = ["Choice", "WithdrawScreen", "Withdrawal"]


@dataclass(frozen=True)
class Withdrawal:
    recipients: tuple[str, ...] | None  # the addresses to withdraw it from; None: everyone

HINT = "space marks a recipient; y then withdraws it from those marked only."


class WithdrawScreen(ModalScreen[Withdrawal | None]):
    BINDINGS = [
        Binding("y", "withdraw", "Withdraw", id="withdraw.yes"),
        Binding("n,escape", "keep", "No", id="withdraw.no"),
        Binding("space", "mark", "Mark recipient", id="withdraw.mark"),
    ]

    def __init__(self, subject: str, choices: list[Choice]) -> None:
        super().__init__()
        self.subject, self.choices = subject, choices

    def compose(self) -> ComposeResult:
        with Vertical(id="withdraw-box"):
            yield SafeStatic(f"Withdraw \u201c{one_line(self.subject, 80) or '(no subject)'}\u201d?",
                             id="withdraw-question")
            yield SafeStatic("Those you withdraw it from can no longer open it or its files, and notifications "
                             "not yet sent to them are cancelled. You and the others keep your copies.",
                             id="withdraw-explained")
            yield RecipientChoices(self.choices, id="withdraw-choices")
            yield SafeStatic(HINT, id="withdraw-hint")

    def on_mount(self) -> None:
        self.query_one(RecipientChoices).focus()

    @property
    def _list(self) -> RecipientChoices:
        return self.query_one(RecipientChoices)

    @on(OptionList.OptionSelected)
    def _chosen(self, event: OptionList.OptionSelected) -> None:
        if event.option_index == NO:
            self.dismiss(None)
        elif event.option_index == ALL:
            self.action_withdraw()
        else:
            self.action_mark()  # enter on a recipient marks it, as space does

    def action_mark(self) -> None:
        listing = self._list
        choice = listing.choice_at(listing.highlighted)
        hint = self.query_one("#withdraw-hint", SafeStatic)
        if choice is not None and choice.withdrawn:
            hint.show(f"{one_line(choice.email, 120)} was withdrawn before; {HINT}")
        elif not listing.toggle(listing.highlighted):
            hint.show(f"Move to a recipient first (j or down); {HINT}")
        else:
            hint.show(HINT)

    def action_withdraw(self) -> None:
        chosen = self._list.chosen
        self.dismiss(Withdrawal(tuple(chosen) if chosen else None))

    def action_keep(self) -> None:
        self.dismiss(None)
