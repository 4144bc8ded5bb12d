"""Fields of the compose screen: address fields that complete from the address book and
check what was typed, and a subject field that refuses a line break instead of cutting it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from textual import events
from textual.message import Message
from textual.suggester import Suggester
from textual.widgets import Input

from tui.compose import AddressBook, format_address, parse_address_list, validate_subject

# The parser's own splitting, so that a draft keeps "Lee, Ann" <ann@x.example> as one address.
from tui.compose import _split_list as split_addresses
from tui.pen_client import Address

_SEPARATORS = ",;"


def split_last(value: str) -> tuple[str, str]:
    """("bob@x.example, ", "ca") for "bob@x.example, ca": what stays, and the address being typed."""
    cut = max(value.rfind(c) for c in _SEPARATORS) + 1
    head, tail = value[:cut], value[cut:]
    stripped = tail.lstrip()
    return head + tail[: len(tail) - len(stripped)], stripped


# What asks the PEN for the people a prefix starts (the screen's, so that no widget does I/O):
# None when it cannot answer, and the local book is used alone.
Lookup = Callable[[str], Awaitable[list[Address] | None]]
DEBOUNCE_SECONDS = 0.15  # keys typed closer together than this ask the PEN once, for the last


class AddressSuggester(Suggester):
    """Completes the address being typed (the one after the last comma) from the PEN's people
    (members and the people of the user's messages) and the local book.

    Input shows the part of the suggestion past what was typed, so only completions that
    begin with the typed text are offered: the whole "Name <email>" when the name starts
    with it, else the address. Accepting one takes its stored case ("Linda Park", however
    it was typed). Runs in Input's worker: the PEN is asked after a pause in typing, never
    for a value that has changed since.
    """

    def __init__(self, book: Callable[[], AddressBook | None], lookup: Lookup | None = None,
                 current: Callable[[], str] | None = None) -> None:
        # No cache: the book grows while the screen is open.
        super().__init__(use_cache=False, case_sensitive=True)
        self._book = book
        self._lookup = lookup
        self._current = current
        self._asked: dict[str, list[Address]] = {}  # lower-case prefix -> the PEN's answer

    async def _remote(self, value: str, typed: str) -> list[Address] | None:
        if self._lookup is None:
            return None
        # "Omar Haddad <omar.h" is asked as its address part: the PEN matches a start of a word.
        typed = typed.rpartition("<")[2].strip() or typed
        key = typed.lower()
        if key in self._asked:
            return self._asked[key]
        await asyncio.sleep(DEBOUNCE_SECONDS)
        if self._current is not None and self._current() != value:
            return None  # typed on: the newer value asks
        found = await self._lookup(typed)
        if found is not None:  # no answer (no connection, say) is asked again at the next key
            if len(self._asked) > 200:
                self._asked.clear()
            self._asked[key] = found
        return found

    async def get_suggestion(self, value: str) -> str | None:
        head, typed = split_last(value)
        if not typed:
            return None
        book = self._book()
        remote = await self._remote(value, typed)
        stored = {a.email.lower(): a for a in remote or []}
        candidates = [format_address(stored.pop(c.email.lower(), c)) for c in book.complete_addresses(typed, 20)] \
            if book is not None else []
        candidates += [format_address(a) for a in stored.values()]
        low = typed.lower()
        for candidate in candidates:
            email = candidate[candidate.rfind("<") + 1 : -1] if candidate.endswith(">") else candidate
            if candidate.lower().startswith(low):
                return head + candidate
            if email.lower().startswith(low):
                return head + email
        return None


class AddressField(Input):
    """A comma-separated list of addresses, completed from the book (right arrow accepts)."""

    def __init__(self, value: str, book: Callable[[], AddressBook | None], lookup: Lookup | None = None,
                 **kw: Any) -> None:
        suggester = AddressSuggester(book, lookup, lambda: self.value)
        super().__init__(value, suggester=suggester, compact=True, select_on_focus=False, **kw)

    def addresses(self) -> tuple[list[Address], list[str]]:
        """The parsed addresses, and one sentence per address that is not one."""
        return parse_address_list(self.value)

    def items(self) -> list[str]:
        """What was typed, one string an address (as a draft keeps them)."""
        return split_addresses(self.value)


class SubjectField(Input):
    """The subject: a pasted line break is refused with a sentence, never silently cut."""

    class Refused(Message):
        def __init__(self, field: SubjectField, reason: str) -> None:
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
