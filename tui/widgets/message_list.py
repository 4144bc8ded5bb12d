"""The message list: Textual's line API (a ScrollView that renders only the visible rows),
fed page by page through keyset cursors, with only a bounded number of pages in memory.
The terminal cursor follows the highlighted row, so braille displays follow it too.

Pages come from both ends of the folder: counted from the top (newest first, the chain of
cursors from page 0 down) and counted from the bottom (order "oldest": row index
total-1-k for the k-th oldest). Keyset paging reaches page N of a chain only through the
pages before it, so rows that neither chain reaches yet are walked to from the nearer end:
End fetches one page, from the bottom, and scrolling up from there continues that chain.

In the thread view each page row is a thread under its newest message; a thread the screen
expands shows its older messages (handed over by the screen: widgets fetch nothing of their
own) as rows under it. Rows on the screen ("rows") are then the page rows ("heads") with
the expanded threads' rows between them; at most MAX_EXPANDED threads are open at once.
Row text: tui/widgets/message_rows.py."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import replace as replaced

from rich.segment import Segment
from rich.style import Style
from textual import work
from textual.binding import Binding
from textual.geometry import Offset, Region, Size
from textual.message import Message as TextualMessage
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.worker import Worker

from tui.bulk import TAG_MARK
from tui.pen_client import Page, PenError, Summary
from tui.terminal.cursor import row_offset
from tui.widgets.message_rows import fit, row_text
from tui.widgets.vim_keys import moving_bindings

# loader(cursor, limit, order): a page of `limit` rows from `cursor`, order "newest" or "oldest".
PageLoader = Callable[[str | None, int, str], Awaitable[Page]]
TOP, BOTTOM = "newest", "oldest"  # a chain of pages, named by the order it is fetched in
PageKey = tuple[str, int]  # (chain, page number counted from that chain's end)


class MessageList(ScrollView, can_focus=True):
    """Rows of message summaries; asks its loader for pages as the view needs them."""

    PAGE_SIZE = 100
    MAX_PAGES = 12  # pages kept in memory, both chains together; others are fetched again
    MAX_EXPANDED = 8  # threads open at once; opening one more closes the one opened first

    BINDINGS = [
        *moving_bindings("list.", ("Next", "Previous", "First message", "Last message")),
        Binding("pagedown,ctrl+f", "page_down", "Page down", show=False, id="list.page_down"),
        Binding("pageup,ctrl+u", "page_up", "Page up", show=False, id="list.page_up"),
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
        # A search that found more than the PEN counts: `total` rows are its newest, reached from
        # the top only (the bottom chain would count from an end that is not there).
        self.open_ended = False
        # Least recently used first; a bottom page holds its rows oldest first.
        self._pages: OrderedDict[PageKey, tuple[Summary, ...]] = OrderedDict()
        # After a reload that keeps the cursor, the rows shown until their fresh page comes:
        # the list never flashes "loading" because new mail arrived.
        self._stale: dict[PageKey, tuple[Summary, ...]] = {}
        self._cursors: dict[str, list[str | None]] = {TOP: [None], BOTTOM: [None]}  # [i] starts page i
        self._loading: set[PageKey] = set()
        self._generation = 0
        self._started = False  # nothing is fetched before the first reset()
        self.first_page_fetch: Worker | None = None  # the first page's fetch since the last reset
        self.loaded_once = False
        self.threads = False  # rows are threads under their newest message (the screen's loader says so)
        self.me: str | None = None  # the user's address: its own messages show their recipients
        # Expanded threads: head (page row) index -> its older messages, in insertion order.
        self._expanded: dict[int, tuple[Summary, ...]] = {}
        self.empty_text: str | None = None  # said in place of "(no messages here)", e.g. under a search
        # The mark slot of each row (column 1): TAG_MARK on tagged rows.
        self.tagged: frozenset[str] = frozenset()  # ids of the rows shown with TAG_MARK
        self._draw_styles: tuple[Style, Style, Style, Style] | None = None  # during render_lines

    def show_tags(self, ids: frozenset[str]) -> None:
        """Mark these rows as tagged (a character in the row's mark column)."""
        self.tagged = frozenset(ids)
        self.refresh()

    # ------------------------------------------------------------ data

    def reset(self, loader: PageLoader | None = None, keep_cursor: bool = False) -> None:
        """Start again from the first page (a new folder, a search, new mail)."""
        if loader is not None:
            self.loader = loader
        self._started = True
        self._generation += 1
        if self._expanded:  # rows may move: the threads close, the cursor stays on its thread
            head, _ = self._locate(self.cursor)
            self._expanded.clear()
            self.cursor = head
        self._stale = dict(self._pages) if keep_cursor else {}
        self._pages.clear()
        self._cursors = {TOP: [None], BOTTOM: [None]}
        self._loading.clear()
        self.open_ended = False
        if not keep_cursor:
            self.cursor = 0
            self.scroll_to(y=0, animate=False)
        self._request((TOP, 0))

    def _places(self, index: int) -> list[tuple[PageKey, int]]:
        """Where row `index` would be: (page, offset in it) in the top chain and the bottom one."""
        places = [((TOP, index // self.PAGE_SIZE), index % self.PAGE_SIZE)]
        k = self.total - 1 - index  # counted from the bottom
        if index >= 0 and k >= 0 and not self.open_ended:
            places.append(((BOTTOM, k // self.PAGE_SIZE), k % self.PAGE_SIZE))
        return places

    def _live_at(self, index: int) -> Summary | None:
        for key, offset in self._places(index):
            page = self._pages.get(key)
            if page is not None and offset < len(page):
                self._pages.move_to_end(key)  # used: the last to go
                return page[offset]
        return None

    def summary_at(self, index: int) -> Summary | None:
        found = self._live_at(index)
        if found is not None:
            return found
        for key, offset in self._places(index):
            page = self._stale.get(key)
            if page is not None and offset < len(page):
                return page[offset]
        return None

    def _holds(self, key: PageKey, length: int, index: int) -> bool:
        """Whether the page `key`, of `length` rows, holds row `index`."""
        chain, number = key
        k = index if chain == TOP else self.total - 1 - index
        return number * self.PAGE_SIZE <= k < number * self.PAGE_SIZE + length

    # ------------------------------------------------------------ rows and threads

    @property
    def rows(self) -> int:
        """Rows on the screen: the page rows and the rows of the expanded threads."""
        return self.total + sum(len(kids) for kids in self._expanded.values())

    def _locate(self, row: int) -> tuple[int, int]:
        """(head index, -1) for a page row; (head index, k) for the k-th row under an expanded head."""
        shift = 0
        for head in sorted(self._expanded):
            if row <= head + shift:
                break
            kids = len(self._expanded[head])
            if row <= head + shift + kids:
                return head, row - shift - head - 1
            shift += kids
        return row - shift, -1

    def row_of(self, head: int) -> int:
        """The screen row of page row `head`."""
        return head + sum(len(kids) for h, kids in self._expanded.items() if h < head)

    def row_summary(self, row: int) -> Summary | None:
        head, k = self._locate(row)
        if k < 0:
            return self.summary_at(head)
        return self._expanded[head][k]

    @property
    def highlighted(self) -> Summary | None:
        return self.row_summary(self.cursor) if self.total else None

    @property
    def highlighted_thread(self) -> tuple[int, Summary | None, bool]:
        """The thread at the cursor: its head index, its head summary, whether it is expanded."""
        head, _ = self._locate(self.cursor)
        return head, self.summary_at(head) if self.total else None, head in self._expanded

    def expand_thread(self, head: int, thread_id: str, older: tuple[Summary, ...]) -> bool:
        """Show `older` (a thread's other messages here, newest first) under page row
        `head`, if that row is still that thread; the cursor stays on the head."""
        summary = self.summary_at(head)
        if summary is None or summary.thread_id != thread_id or head in self._expanded:
            return False
        while len(self._expanded) >= self.MAX_EXPANDED:
            self.collapse_thread(next(iter(self._expanded)))
        cursor_head, k = self._locate(self.cursor)
        self._expanded[head] = tuple(older)
        self._rows_changed(self.row_of(cursor_head) + (k + 1 if k >= 0 else 0))
        return True

    def collapse_thread(self, head: int) -> None:
        if head not in self._expanded:
            return
        cursor_head, k = self._locate(self.cursor)
        del self._expanded[head]
        self._rows_changed(self.row_of(cursor_head) + (k + 1 if k >= 0 and cursor_head != head else 0))

    def _rows_changed(self, cursor: int) -> None:
        self.virtual_size = Size(self.size.width, self.rows)
        self.cursor = max(0, min(cursor, self.rows - 1))
        self.refresh()

    def replace(self, summary: Summary) -> None:
        """Show a changed summary (read state, say) without reloading; a thread row keeps
        its counts, its unread count following the change, also of an expanded older one."""
        changed = False
        unread_delta: dict[str, int] = {}  # thread id -> change of a thread row's unread count
        for head, kids in self._expanded.items():
            for i, s in enumerate(kids):
                if s.id == summary.id:
                    self._expanded[head] = kids[:i] + (summary,) + kids[i + 1:]
                    unread_delta[s.thread_id] = int(summary.unread) - int(s.unread)
                    changed = True
        for key, page in list(self._pages.items()):  # at the seam, a row may be in a page of each chain
            for i, s in enumerate(page):
                new = s
                if s.id == summary.id:
                    new = replaced(summary, thread_count=s.thread_count,
                                   thread_unread=max(0, s.thread_unread + int(summary.unread) - int(s.unread)))
                elif self.threads and s.thread_id in unread_delta:
                    new = replaced(s, thread_unread=max(0, s.thread_unread + unread_delta[s.thread_id]))
                if new is not s:
                    self._pages[key] = page = page[:i] + (new,) + page[i + 1:]
                    changed = True
        if changed:
            self.refresh()

    def _request(self, key: PageKey) -> None:
        """Fetch page `key` if its chain reaches it (its cursor is known) and it is not here."""
        chain, number = key
        cursors = self._cursors[chain]
        if (not self._started or self.loader is None or key in self._pages or key in self._loading
                or number >= len(cursors)):
            return
        self._loading.add(key)
        fetch = self._fetch(key, cursors[number], self._generation)
        if key == (TOP, 0):
            self.first_page_fetch = fetch  # keys typed after a reload wait for it (the key gate)

    def _want_row(self, index: int) -> None:
        """Fetch what row `index` needs: its page from a chain that reaches it, else the next
        page of the chain whose end is nearer (keyset paging reaches page N of a chain only
        through the pages before it)."""
        if self._live_at(index) is not None:
            return
        top_number = index // self.PAGE_SIZE
        bottom_number = (self.total - 1 - index) // self.PAGE_SIZE
        top_known = len(self._cursors[TOP]) - 1
        bottom_known = len(self._cursors[BOTTOM]) - 1
        if top_number <= top_known or self.open_ended:
            self._request((TOP, min(top_number, top_known)))
        elif bottom_number <= bottom_known:
            self._request((BOTTOM, bottom_number))
        elif top_number - top_known <= bottom_number - bottom_known:
            self._request((TOP, top_known))
        else:
            self._request((BOTTOM, bottom_known))

    @work(group="message-list", exit_on_error=False)
    async def _fetch(self, key: PageKey, cursor: str | None, generation: int) -> None:
        chain, number = key
        try:
            page = await self.loader(cursor, self.PAGE_SIZE, chain)
        except PenError as exc:
            if generation == self._generation:
                self._loading.discard(key)
                self.post_message(self.LoadFailed(exc))
            return
        if generation != self._generation:
            return
        self._loading.discard(key)
        if self.loaded_once and page.total != self.total:
            # Rows came or went between two requests: the other chain's pages, counted from
            # the other end, no longer meet this one's rightly (new mail resets the list soon).
            for other in [k for k in self._pages if k[0] != chain]:
                del self._pages[other]
        self._pages[key] = page.items
        self._pages.move_to_end(key)
        self._stale.pop(key, None)
        while len(self._pages) > self.MAX_PAGES:
            oldest = next(iter(self._pages))
            if oldest == key:
                break
            self._pages.pop(oldest)
        cursors = self._cursors[chain]
        if len(cursors) == number + 1 and page.next_cursor:
            cursors.append(page.next_cursor)
        counted_before, self.total = self.total, page.total
        self.open_ended = not page.exact
        first = not self.loaded_once
        self.loaded_once = True
        self.virtual_size = Size(self.size.width, self.rows)
        self.cursor = min(self.cursor, max(0, self.rows - 1))
        self.refresh()
        # The screen's title counts the rows: it hears of a new count too, even when the page
        # is empty (another folder, or a search, with nothing in it).
        if first or counted_before != self.total or self._holds(key, len(page.items), self._locate(self.cursor)[0]):
            self.post_message(self.Highlighted(self.highlighted))
        self._want_visible()

    def _want_visible(self) -> None:
        """Ask for the pages that the visible rows and the cursor need."""
        if not self.loaded_once:
            self._request((TOP, 0))
            return
        if not self.total:
            return
        top = int(self.scroll_offset.y)
        bottom = min(self.rows, top + max(1, self.size.height))
        # Every visible row: where the chains meet, the rows between two pages of different
        # chains may be in neither.
        for row in (self.cursor, *range(top, bottom)):
            head, k = self._locate(row)
            if k < 0 and 0 <= head < self.total:
                self._want_row(head)

    # ------------------------------------------------------------ drawing

    def render_lines(self, crop: Region) -> list[Strip]:
        # The row styles are worked out once for all the rows of a draw, not once a row (each
        # walks the widget's ancestors for their background): a third of the list's drawing.
        self._draw_styles = self._row_styles()
        try:
            return super().render_lines(crop)
        finally:
            self._draw_styles = None

    def _row_styles(self) -> tuple[Style, Style, Style, Style]:
        """The styles of a row: plain, loading, unread, and what the cursor adds."""
        base = self.rich_style
        return (base, base + self.get_component_rich_style("message-list--loading"),
                base + self.get_component_rich_style("message-list--unread"),
                self.get_component_rich_style("message-list--cursor"))

    def render_line(self, y: int) -> Strip:
        index = int(self.scroll_offset.y) + y
        width = self.scrollable_content_region.width
        base, loading, unread, cursor = self._draw_styles or self._row_styles()
        if index >= self.rows:
            if index == 0 and self.loaded_once:
                return Strip([Segment(fit(f"  {self.empty_text or '(no messages here)'}", width), base)])
            return Strip.blank(width, base)
        head, k = self._locate(index)
        summary = self.row_summary(index)
        if summary is None:
            self.call_later(self._want_visible)
            style = loading
            text = fit("  .. loading", width)
        else:
            thread = self.threads and k < 0
            text = row_text(summary, width, mark=TAG_MARK if summary.id in self.tagged else " ", me=self.me,
                            thread=thread, branch=k >= 0)
            style = unread if (summary.thread_unread if thread else summary.unread) else base
        if index == self.cursor:
            style += cursor
            text = ">" + text[1:]  # a text marker, not colour alone
        return Strip([Segment(text, style)])

    def on_resize(self) -> None:
        self.virtual_size = Size(self.size.width, self.rows)

    def watch_scroll_y(self, old: float, new: float) -> None:
        super().watch_scroll_y(old, new)
        self._want_visible()

    def watch_cursor(self, old: int, new: int) -> None:
        if self.rows:
            self.scroll_to_region_of(new)
        self.refresh()
        self._want_visible()
        if old != new:
            self.post_message(self.Highlighted(self.highlighted))

    def scroll_to_region_of(self, index: int) -> None:
        top = int(self.scroll_offset.y)
        height = max(1, self.size.height)
        if index < top:
            self.scroll_to(y=index, animate=False, immediate=True)
        elif index >= top + height:
            self.scroll_to(y=index - height + 1, animate=False, immediate=True)

    def terminal_cursor(self) -> Offset | None:
        """The highlighted row: the app puts the terminal cursor there while this list has
        focus (screen readers and braille displays follow it, not colour)."""
        return row_offset(self, self.cursor)

    def on_focus(self) -> None:
        self.refresh()

    def on_blur(self) -> None:
        self.refresh()

    # ------------------------------------------------------------ keys

    def _move(self, delta: int) -> None:
        if self.rows:
            self.cursor = max(0, min(self.rows - 1, self.cursor + delta))

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
        self._move(self.rows)

    def action_open(self) -> None:
        summary = self.highlighted
        if summary is not None:
            self.post_message(self.Opened(summary))

    def on_click(self, event) -> None:
        index = int(self.scroll_offset.y) + event.y
        if 0 <= index < self.rows:
            self.cursor = index
