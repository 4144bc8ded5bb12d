"""Fields of the compose screen: address fields that complete from the address book and
check what was typed, and a subject field that refuses a line break instead of cutting it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from textual import events
from textual.message import Message
from textual.suggester import Suggester
from textual.widgets import Input

from tui.compose import AddressBook, parse_address_list, validate_subject
from tui.pen_client import Address
# The parser's own splitting, so that a draft keeps "Lee, Ann" <ann@x.example> as one address.
from tui.compose import _split_list as split_addresses

_SEPARATORS = ",;"


def split_last(value: str) -> tuple[str, str]:
    """("bob@x.example, ", "ca") for "bob@x.example, ca": what stays, and the address being typed."""
    cut = max(value.rfind(c) for c in _SEPARATORS) + 1
    head, tail = value[:cut], value[cut:]
    stripped = tail.lstrip()
    return head + tail[: len(tail) - len(stripped)], stripped


class AddressSuggester(Suggester):
    """Completes the address being typed (the one after the last comma) from the book.

    Input shows the part of the suggestion past what was typed, so only completions that
    begin with the typed text are offered: the whole "Name <email>" when the name starts
    with it, else the address.
    """

    def __init__(self, book: Callable[[], AddressBook | None]) -> None:
        # No cache: the book grows while the screen is open.
        super().__init__(use_cache=False, case_sensitive=True)
        self._book = book

    async def get_suggestion(self, value: str) -> str | None:
        book = self._book()
        head, typed = split_last(value)
        if book is None or not typed:
            return None
        low = typed.lower()
        for candidate in book.complete(typed, limit=20):
            email = candidate[candidate.rfind("<") + 1 : -1] if candidate.endswith(">") else candidate
            if candidate.lower().startswith(low):
                return head + typed + candidate[len(typed):]
            if email.lower().startswith(low):
                return head + typed + email[len(typed):]
        return None


class AddressField(Input):
    """A comma-separated list of addresses, completed from the book (right arrow accepts)."""

    def __init__(self, value: str, book: Callable[[], AddressBook | None], **kw: Any) -> None:
        super().__init__(value, suggester=AddressSuggester(book), compact=True, select_on_focus=False, **kw)

    def addresses(self) -> tuple[list[Address], list[str]]:
        """The parsed addresses, and one sentence per address that is not one."""
        return parse_address_list(self.value)

    def items(self) -> list[str]:
        """What was typed, one string an address (as a draft keeps them)."""
        return split_addresses(self.value)


class SubjectField(Input):
    """The subject: a pasted line break is refused with a sentence, never silently cut."""

    class Refused(Message):
        def __init__(self, field: "SubjectField", reason: str) -> None:
            super().__init__()
            self.field, self.reason = field, reason

    def __init__(self, value: str, **kw: Any) -> None:
        super().__init__(value, compact=True, select_on_focus=False, **kw)

    def _on_paste(self, event: events.Paste) -> None:
        # Runs before Input's own handler, which would keep the first line only.
        problem = validate_subject(event.text or "")
        if problem is not None:
            event.prevent_default()
            event.stop()
            self.post_message(self.Refused(self, problem))
