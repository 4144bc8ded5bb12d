"""Read-only text (a message body, the help): a TextArea that takes vim keys beside the
arrows. Its cursor is the terminal's, so a screen reader follows the line being read."""

from __future__ import annotations

from textual.widgets import TextArea

from tui.widgets.vim_keys import VIM_ONLY, moving_bindings


class ReadingText(TextArea):
    BINDINGS = moving_bindings("text.", ("Next line", "Previous line", "Top", "Bottom"), keys=VIM_ONLY,
                               actions=("cursor_down", "cursor_up", "text_start", "text_end"),
                               id_names=("down", "up", "top", "bottom"))

    def __init__(self, text: str = "", **kw) -> None:
        kw.setdefault("soft_wrap", True)
        super().__init__(text, read_only=True, show_line_numbers=False, **kw)

    def action_text_start(self) -> None:
        self.move_cursor((0, 0))

    def action_text_end(self) -> None:
        self.move_cursor(self.document.end)
