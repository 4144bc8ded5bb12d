"""The message list: Textual's line API (a ScrollView that renders only the visible rows),
fed page by page through keyset cursors, with only a bounded number of pages in memory.
The terminal cursor follows the highlighted row, so braille displays follow it too."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone

from rich.segment import Segment
from textual import work
from textual.binding import Binding
from textual.geometry import Offset, Size
from textual.message import Message as TextualMessage
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from tui.pen_client import Page, PenError, Summary
from tui.safe_text import one_line

PageLoader = Callable[[str | None, int], Awaitable[Page]]


def row_text(s: Summary, width: int, now: datetime | None = None) -> str:
    """One row: markers as letters (U unread, A attachment), sender, subject, date."""
    now = now or datetime.now(timezone.utc)
    local = s.sent_at.astimezone() if s.sent_at else None
    if local is None:
        when = ""
    elif local.date() == now.astimezone().date():
        when = local.strftime("%H:%M")
    elif local.year == now.astimezone().year:
        when = local.strftime("%d %b")
    else:
        when = local.strftime("%Y-%m-%d")
    marks = ("U" if s.unread else "-") + ("A" if s.attachment_count else "-")
    who = one_line(s.sender.name or s.sender.email)
    sender_w = max(8, min(24, width // 4))
    who = who[:sender_w].ljust(sender_w)
    subject_w = max(1, width - 17 - sender_w)
    subject = one_line(s.subject) or "(no subject)"
    if len(subject) > subject_w:
        subject = subject[: max(0, subject_w - 1)] + "\u2026"
    return f"  {marks} {who} {subject.ljust(subject_w)} {when.rjust(10)}"[:width]


class MessageList(ScrollView, can_focus=True):
    """Rows of message summaries; asks its loader for pages as the view needs them."""

    PAGE_SIZE = 100
    MAX_PAGES = 12  # pages kept in memory; others are fetched again when scrolled back to

    BINDINGS = [
        Binding("down,j", "cursor_down", "Next", show=False, id="list.down"),
        Binding("up,k", "cursor_up", "Previous", show=False, id="list.up"),
        Binding("pagedown,ctrl+f", "page_down", "Page down", show=False, id="list.page_down"),
        Binding("pageup,ctrl+u", "page_up", "Page up", show=False, id="list.page_up"),
        Binding("home,g", "first", "First message", show=False, id="list.first"),
        Binding("end,G", "last", "Last message", show=False, id="list.last"),
        Binding("enter", "open", "Open", id="list.open"),
    ]

    COMPONENT_CLASSES = {"message-list--cursor", "message-list--unread", "message-list--loading"}

    DEFAULT_CSS = """
    MessageList { height: 1fr; overflow-x: hidden; }
    MessageList > .message-list--cursor { background: $accent 40%; text-style: bold; }
    MessageList:focus > .message-list--cursor { background: $accent; color: $text; text-style: bold; }
    MessageList > .message-list--unread { text-style: bold; }
    MessageList > .message-list--loading { color: $text-muted; }
    """

    cursor: reactive[int] = reactive(0, always_update=True)

    class Highlighted(TextualMessage):
        def __init__(self, summary: Summary | None) -> None:
            super().__init__()
            self.summary = summary

    class Opened(TextualMessage):
        def __init__(self, summary: Summary) -> None:
            super().__init__()
            self.summary = summary

    class LoadFailed(TextualMessage):
        def __init__(self, error: PenError) -> None:
            super().__init__()
            self.error = error

    def __init__(self, loader: PageLoader | None = None, **kw) -> None:
        super().__init__(**kw)
        self.loader = loader
        self.total = 0
        self._pages: OrderedDict[int, tuple[Summary, ...]] = OrderedDict()
        # After a reload that keeps the cursor, the rows shown until their fresh page comes:
        # the list never flashes "loading" because new mail arrived.
        self._stale: dict[int, tuple[Summary, ...]] = {}
        self._cursors: list[str | None] = [None]  # the cursor that starts page i
        self._loading: set[int] = set()
        self._generation = 0
        self._started = False  # nothing is fetched before the first reset()
        self.loaded_once = False

    # ------------------------------------------------------------ data

    def reset(self, loader: PageLoader | None = None, keep_cursor: bool = False) -> None:
        """Start again from the first page (a new folder, a search, new mail)."""
        if loader is not None:
            self.loader = loader
        self._started = True
        self._generation += 1
        self._stale = dict(self._pages) if keep_cursor else {}
        self._pages.clear()
        self._cursors = [None]
        self._loading.clear()
        if not keep_cursor:
            self.cursor = 0
            self.scroll_to(y=0, animate=False)
        self._request(0)

    def summary_at(self, index: int) -> Summary | None:
        number = index // self.PAGE_SIZE
        page = self._pages.get(number) or self._stale.get(number)
        if page is None:
            return None
        offset = index % self.PAGE_SIZE
        return page[offset] if offset < len(page) else None

    @property
    def highlighted(self) -> Summary | None:
        return self.summary_at(self.cursor) if self.total else None

    def replace(self, summary: Summary) -> None:
        """Show a changed summary (read state, say) without reloading."""
        for number, page in self._pages.items():
            for i, s in enumerate(page):
                if s.id == summary.id:
                    self._pages[number] = page[:i] + (summary,) + page[i + 1:]
                    self.refresh()
                    return

    def _request(self, number: int) -> None:
        if not self._started or number in self._pages or number in self._loading or self.loader is None:
            return
        # Keyset paging reaches page N only through the pages before it.
        known = len(self._cursors) - 1
        if number > known:
            number = known
        if number in self._loading or number in self._pages and number < known:
            return
        self._loading.add(number)
        self._fetch(number, self._cursors[number], self._generation)

    @work(group="message-list", exit_on_error=False)
    async def _fetch(self, number: int, cursor: str | None, generation: int) -> None:
        try:
            page = await self.loader(cursor, self.PAGE_SIZE)
        except PenError as exc:
            if generation == self._generation:
                self._loading.discard(number)
                self.post_message(self.LoadFailed(exc))
            return
        if generation != self._generation:
            return
        self._loading.discard(number)
        self._pages[number] = page.items
        self._pages.move_to_end(number)
        self._stale.pop(number, None)
        while len(self._pages) > self.MAX_PAGES:
            oldest = next(iter(self._pages))
            if oldest == number:
                break
            self._pages.pop(oldest)
        if len(self._cursors) == number + 1 and page.next_cursor:
            self._cursors.append(page.next_cursor)
        self.total = page.total
        first = not self.loaded_once
        self.loaded_once = True
        self.virtual_size = Size(self.size.width, self.total)
        self.cursor = min(self.cursor, max(0, self.total - 1))
        self.refresh()
        if first or number == self.cursor // self.PAGE_SIZE:
            self.post_message(self.Highlighted(self.highlighted))
        self._want_visible()

    def _want_visible(self) -> None:
        """Ask for the pages that the visible rows and the cursor need."""
        if not self.total and self.loaded_once:
            return
        top = int(self.scroll_offset.y)
        bottom = top + max(1, self.size.height)
        wanted = {top // self.PAGE_SIZE, (bottom - 1) // self.PAGE_SIZE, self.cursor // self.PAGE_SIZE}
        for number in sorted(wanted):
            if number * self.PAGE_SIZE < max(self.total, 1):
                self._request(number)

    # ------------------------------------------------------------ drawing

    def render_line(self, y: int) -> Strip:
        index = int(self.scroll_offset.y) + y
        width = self.scrollable_content_region.width
        base = self.rich_style
        if index >= self.total:
            if index == 0 and self.loaded_once:
                return Strip([Segment("  (no messages here)".ljust(width)[:width], base)])
            return Strip.blank(width, base)
        summary = self.summary_at(index)
        if summary is None:
            self.call_later(self._want_visible)
            style = base + self.get_component_rich_style("message-list--loading")
            text = "  .. loading"
        else:
            text = row_text(summary, width)
            style = base
            if summary.unread:
                style += self.get_component_rich_style("message-list--unread")
        if index == self.cursor:
            style += self.get_component_rich_style("message-list--cursor")
            text = ">" + text[1:]  # a text marker, not colour alone
            if self.has_focus:
                region = self.content_region
                self.app.cursor_position = Offset(region.x, region.y + y)
        return Strip([Segment(text.ljust(width)[:width], style)])

    def on_resize(self) -> None:
        self.virtual_size = Size(self.size.width, self.total)
        self._place_terminal_cursor()

    def watch_scroll_y(self, old: float, new: float) -> None:
        super().watch_scroll_y(old, new)
        self._want_visible()
        self._place_terminal_cursor()

    def watch_cursor(self, old: int, new: int) -> None:
        if self.total:
            self.scroll_to_region_of(new)
        self.refresh()
        self._want_visible()
        self._place_terminal_cursor()
        if old != new:
            self.post_message(self.Highlighted(self.highlighted))

    def scroll_to_region_of(self, index: int) -> None:
        top = int(self.scroll_offset.y)
        height = max(1, self.size.height)
        if index < top:
            self.scroll_to(y=index, animate=False, immediate=True)
        elif index >= top + height:
            self.scroll_to(y=index - height + 1, animate=False, immediate=True)

    def _place_terminal_cursor(self) -> None:
        """Screen readers and braille displays follow the terminal cursor, not colour."""
        if not self.has_focus or not self.is_mounted:
            return
        region = self.content_region
        row = self.cursor - int(self.scroll_offset.y)
        if 0 <= row < region.height:
            self.app.cursor_position = Offset(region.x, region.y + row)

    def on_focus(self) -> None:
        self.call_after_refresh(self._place_terminal_cursor)
        self.refresh()

    def on_blur(self) -> None:
        self.refresh()

    # ------------------------------------------------------------ keys

    def _move(self, delta: int) -> None:
        if self.total:
            self.cursor = max(0, min(self.total - 1, self.cursor + delta))

    def action_cursor_down(self) -> None:
        self._move(1)

    def action_cursor_up(self) -> None:
        self._move(-1)

    def action_page_down(self) -> None:
        self._move(max(1, self.size.height - 1))

    def action_page_up(self) -> None:
        self._move(-max(1, self.size.height - 1))

    def action_first(self) -> None:
        self._move(-self.cursor)

    def action_last(self) -> None:
        self._move(self.total)

    def action_open(self) -> None:
        summary = self.highlighted
        if summary is not None:
            self.post_message(self.Opened(summary))

    def on_click(self, event) -> None:
        index = int(self.scroll_offset.y) + event.y
        if 0 <= index < self.total:
            self.cursor = index
