"""The reader's list of the conversation a message is part of: the thread's messages the
user holds, oldest first, the one being read said in words. Rows are safe Text (never
markup); the highlighted row carries a ">" and the terminal cursor, as every list does."""

from __future__ import annotations

from textual.widgets.option_list import Option

from tui.pen_client import Summary
from tui.safe_text import one_line, safe_text
from tui.text.format import gone_mark, short_date
from tui.widgets.cursor_list import MarkedOptionList
from tui.widgets.message_rows import fit, who_text
from tui.widgets.vim_keys import moving_bindings


def thread_row(s: Summary, *, reading: bool, marked: bool, me: str | None = None) -> str:
    flag = "U" if s.unread and not reading else "-"  # the one being read is read (marked so as it opens)
    subject = gone_mark(s, me) + (one_line(s.subject, 200) or "(no subject)")
    where = "this message" if reading else s.folder
    when = short_date(s.sent_at)
    return f"{'>' if marked else ' '} {flag} {when:>10}  {fit(who_text(s, me), 20)}  {subject}  ({where})"


class ThreadList(MarkedOptionList):
    """One thread's messages; ``highlighted_summary`` is the one enter opens."""

    BINDINGS = moving_bindings("thread.", ("Next in thread", "Previous in thread", "First in thread",
                                           "Last in thread"))

    def __init__(self, **kw) -> None:
        super().__init__(markup=False, **kw)
        self.summaries: tuple[Summary, ...] = ()
        self.reading = ""  # the id of the message the reader shows
        self.me: str | None = None

    def show_thread(self, summaries: tuple[Summary, ...], reading: str, me: str | None = None) -> None:
        self.summaries, self.reading, self.me = tuple(summaries), reading, me
        self.set_options(Option(safe_text(self._row(i))) for i in range(len(self.summaries)))
        here = [i for i, s in enumerate(self.summaries) if s.id == reading]
        self.highlighted = here[0] if here else (0 if self.summaries else None)
        self._mark()

    @property
    def highlighted_summary(self) -> Summary | None:
        if self.highlighted is None or not 0 <= self.highlighted < len(self.summaries):
            return None
        return self.summaries[self.highlighted]

    def _row(self, index: int) -> str:
        s = self.summaries[index]
        return thread_row(s, reading=s.id == self.reading, marked=index == self.highlighted, me=self.me)

    def _row_count(self) -> int:
        return len(self.summaries)
