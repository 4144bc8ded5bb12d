"""Widgets that show untrusted text: they accept plain strings and pass them through the
one safe-text function, so no caller can hand them markup by accident."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from tui.safe_text import safe_text


class SafeStatic(Static):
    """A Static whose content is always data, never markup."""

    def __init__(self, text: str = "", **kw) -> None:
        super().__init__(safe_text(text), markup=False, **kw)

    def show(self, text: str) -> None:
        new = safe_text(text)
        old = self.content
        # The same text again changes nothing on the screen, and an update lays out the whole
        # screen again: compose shows its labels and status after every key typed.
        if isinstance(old, Text) and old == new and old.style == new.style:
            return
        self.update(new)
