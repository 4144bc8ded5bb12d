"""An OptionList for keyboard and screen-reader users: vim keys beside the arrows, and the
terminal cursor on the highlighted row (braille displays and screen readers follow the
terminal cursor; Textual's OptionList does not set it)."""

from __future__ import annotations

from textual.geometry import Offset
from textual.strip import Strip
from textual.widgets import OptionList

from tui.safe_text import safe_text
from tui.widgets.vim_keys import moving_bindings


class CursorOptionList(OptionList):
    BINDINGS = moving_bindings("list.option_")

    def render_line(self, y: int) -> Strip:
        strip = super().render_line(y)
        if self.has_focus and self.highlighted is not None:
            if self._index_to_line.get(self.highlighted) == int(self.scroll_offset.y) + y:
                region = self.content_region
                self.app.cursor_position = Offset(region.x, region.y + y)
        return strip

    def _place_terminal_cursor(self) -> None:
        if not self.has_focus or not self.is_mounted or self.highlighted is None:
            return
        line = self._index_to_line.get(self.highlighted)
        if line is None:
            return
        row = line - int(self.scroll_offset.y)
        region = self.content_region
        if 0 <= row < region.height:
            self.app.cursor_position = Offset(region.x, region.y + row)

    def watch_highlighted(self, highlighted: int | None) -> None:
        super().watch_highlighted(highlighted)
        self.call_after_refresh(self._place_terminal_cursor)

    def on_focus(self) -> None:
        self.call_after_refresh(self._place_terminal_cursor)

    def watch_scroll_y(self, old: float, new: float) -> None:
        super().watch_scroll_y(old, new)
        self._place_terminal_cursor()


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
        self._place_terminal_cursor()

    def watch_highlighted(self, highlighted: int | None) -> None:
        super().watch_highlighted(highlighted)
        if self._row_count():
            self._mark()
