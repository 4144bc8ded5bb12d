"""Read-only text (a message body, the help): a TextArea that takes vim keys beside the
arrows. Its cursor is the terminal's, so a screen reader follows the line being read."""

from __future__ import annotations

from textual.binding import Binding
from textual.widgets import TextArea


class ReadingText(TextArea):
    BINDINGS = [
        Binding("j", "cursor_down", "Next line", show=False, id="text.down"),
        Binding("k", "cursor_up", "Previous line", show=False, id="text.up"),
        Binding("g", "text_start", "Top", show=False, id="text.top"),
        Binding("G", "text_end", "Bottom", show=False, id="text.bottom"),
    ]

    def __init__(self, text: str = "", **kw) -> None:
        kw.setdefault("soft_wrap", True)
        super().__init__(text, read_only=True, show_line_numbers=False, **kw)

    def action_text_start(self) -> None:
        self.move_cursor((0, 0))

    def action_text_end(self) -> None:
        self.move_cursor(self.document.end)
