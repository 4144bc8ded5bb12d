"""An OptionList for keyboard and screen-reader users: vim keys beside the arrows. The
terminal cursor goes on its highlighted row by the app's one rule (tui/terminal/cursor.py),
which Textual's OptionList does not follow by itself."""

from __future__ import annotations

from textual.widgets import OptionList

from tui.safe_text import safe_text
from tui.widgets.vim_keys import moving_bindings


class CursorOptionList(OptionList):
    BINDINGS = moving_bindings("list.option_")


class MarkedOptionList(CursorOptionList):
    """A list whose rows are drawn again as the highlight moves: a ">" on the highlighted
    row, in the text (never colour alone). Subclasses give `_row(index)` and `_row_count()`."""

    def _row(self, index: int) -> str:
        raise NotImplementedError

    def _row_count(self) -> int:
        raise NotImplementedError

    def _mark(self) -> None:
        for i in range(min(self._row_count(), self.option_count)):
            self.replace_option_prompt_at_index(i, safe_text(self._row(i)))

    def watch_highlighted(self, highlighted: int | None) -> None:
        super().watch_highlighted(highlighted)
        if self._row_count():
            self._mark()
