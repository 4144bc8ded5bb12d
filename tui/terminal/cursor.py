"""Where the terminal cursor goes: one rule for every screen, read by the app each time the
screen is drawn (so after every layout change, with nothing to keep in step). Screen
readers and braille displays follow the terminal cursor, not colour.

The rule: the cursor is on the focused widget's own place. A field (Input, TextArea) puts
it at its text cursor, where the next character goes; a list puts it on its highlighted row (an OptionList, penmail's
message list, the notification table: each answers ``terminal_cursor()``). A widget with
no such place, or one not shown, leaves the cursor where it last was."""

from __future__ import annotations

import sys

from textual.geometry import Offset
from textual.widget import Widget
from textual.widgets import Input, OptionList


def text_area_class() -> type | None:
    """Textual's TextArea once something has imported it, else None: while none has, no
    widget is one. Its module (~5 ms) is left out of start-up: the first frame has none."""
    module = sys.modules.get("textual.widgets._text_area")
    return None if module is None else module.TextArea


def row_offset(widget: Widget, line: int | None) -> Offset | None:
    """The screen offset of ``line`` of the widget's content (scrolled), when it is shown."""
    if line is None:
        return None
    row = line - int(widget.scroll_offset.y)
    region = widget.content_region
    return Offset(region.x, region.y + row) if 0 <= row < region.height else None


def option_list_cursor(widget: OptionList) -> Offset | None:
    if widget.highlighted is None:
        return None
    return row_offset(widget, widget._index_to_line.get(widget.highlighted))


def input_cursor(widget: Input) -> Offset:
    """The cell where the next character typed goes. (Textual's own cursor_screen_offset is
    one cell further right when the cursor is at the end of the text: past what is typed.)"""
    region = widget.content_region
    cell = widget._position_to_cell(widget.cursor_position)
    return Offset(region.x + cell - int(widget.scroll_offset.x), region.y)


def terminal_cursor(widget: Widget | None) -> Offset | None:
    """Where the focused ``widget`` puts the terminal cursor, or None for no place of its own."""
    if widget is None or not widget.is_mounted or not widget.display or widget.content_region.area == 0:
        return None
    own = getattr(widget, "terminal_cursor", None)
    if callable(own):
        return own()
    if isinstance(widget, Input):
        return input_cursor(widget)
    text_area = text_area_class()
    if text_area is not None and isinstance(widget, text_area):
        return widget.cursor_screen_offset  # type: ignore[attr-defined]
    if isinstance(widget, OptionList):
        return option_list_cursor(widget)
    return None
