"""An OptionList for keyboard and screen-reader users: vim keys beside the arrows. The
terminal cursor goes on its highlighted row by the app's one rule (tui/terminal_cursor.py),
which Textual's OptionList does not follow by itself."""

from __future__ import annotations

from textual.widgets import OptionList

from tui.widgets.vim_keys import moving_bindings


class CursorOptionList(OptionList):
    BINDINGS = moving_bindings("list.option_")
