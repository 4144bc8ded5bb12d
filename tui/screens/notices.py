"""N (any screen): the notices said so far, newest first, the cursor on the newest, each
with its time and its severity in a word (not colour alone). Every row's text goes through
tui/safe_text.py: a notice may carry a server's words."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets.option_list import Option

from tui.notices import Notice
from tui.safe_text import one_line, safe_text
from tui.widgets.cursor_list import CursorOptionList
from tui.widgets.footer import KeyFooter
from tui.widgets.safe_static import SafeStatic


def notice_row(notice: Notice) -> str:
    title = one_line(notice.title, 80)
    text = one_line(notice.text, 500)
    return f"{notice.at:%H:%M:%S}  {notice.severity_word:<7}  {title + ': ' if title else ''}{text}"


class NoticesScreen(Screen[None]):
    BINDINGS = [
        Binding("escape,q", "close", "Close", id="notices.close"),
        Binding("f1,question_mark", "app.help", "Help", id="notices.help"),
    ]

    def __init__(self, notices: list[Notice]) -> None:
        super().__init__()
        self.notices = notices  # newest first

    def compose(self) -> ComposeResult:
        with Vertical(id="notices-box"):
            n = len(self.notices)
            yield SafeStatic(f"Notices: {n} said so far, newest first (escape closes)" if n else
                             "Notices: none yet (escape closes)", id="notices-title")
            yield CursorOptionList(*[Option(safe_text(notice_row(notice))) for notice in self.notices]
                                   or [Option(safe_text("Nothing has been said yet."), disabled=True)],
                                   id="notices-list")
        yield KeyFooter()

    def on_mount(self) -> None:
        listing = self.query_one(CursorOptionList)
        if self.notices:
            listing.highlighted = 0
        listing.focus()

    def action_close(self) -> None:
        self.dismiss(None)
