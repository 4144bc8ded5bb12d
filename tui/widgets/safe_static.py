"""Widgets that show untrusted text: they accept plain strings and pass them through the
one safe-text function, so no caller can hand them markup by accident."""

from __future__ import annotations

from textual.widgets import Static

from tui.safe_text import safe_text


class SafeStatic(Static):
    """A Static whose content is always data, never markup."""

    def __init__(self, text: str = "", **kw) -> None:
        super().__init__(safe_text(text), markup=False, **kw)
        self._shown = (text, self.content)

    def show(self, text: str) -> None:
        # The same text again (the title, the status line and the legend are set again on
        # every reload and sign-in) changes nothing: no new layout, no new frame.
        if self._shown[0] == text and self.content is self._shown[1]:
            return
        self.update(safe_text(text))
        self._shown = (text, self.content)
