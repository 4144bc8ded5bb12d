"""The message list pages from both ends: unit-level checks with an in-memory keyset loader
(the real server's paging is tested in test_message_list_long.py and tests/server/)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from textual.app import App, ComposeResult

from tests.tui_helpers import wait_for
from tui.pen_client import Address, Page, Summary
from tui.widgets.message_list import BOTTOM, TOP, MessageList

START = datetime(2026, 1, 1, tzinfo=UTC)


def summaries(count: int) -> list[Summary]:
    """Newest first, as the list shows them: row r is message number count-1-r."""
    return [Summary(id=f"m{n}", thread_id=f"m{n}", folder="inbox", sender=Address("s@abc.example", "S"), to=(),
                    cc=(), subject=f"Message number {n}", sent_at=START + timedelta(minutes=n), unread=False,
                    attachment_count=0, size=1, snippet="")
            for n in range(count - 1, -1, -1)]


class KeysetLoader:
    """Keyset paging over a list, like the server: a cursor names the last row given, and
    belongs to its order."""

    def __init__(self, items: list[Summary]):
        self.items = items
        self.requests: list[tuple[str, str | None]] = []

    async def __call__(self, cursor: str | None, limit: int, order: str = "newest") -> Page:
        self.requests.append((order, cursor))
        rows = self.items if order == "newest" else self.items[::-1]
        start = 0
        if cursor:
            cursor_order, last = cursor.split(":")
            assert cursor_order == order, "a cursor of the other order"
            start = [s.id for s in rows].index(last) + 1
        page = rows[start:start + limit]
        more = start + limit < len(rows)
        return Page(tuple(page), f"{order}:{page[-1].id}" if more and page else None, len(self.items))


class ListApp(App):
    def __init__(self, loader, page_size: int, max_pages: int):
        super().__init__()
        self.loader, self.page_size, self.max_pages = loader, page_size, max_pages

    def compose(self) -> ComposeResult:
        ml = MessageList(self.loader, id="messages")
        ml.PAGE_SIZE, ml.MAX_PAGES = self.page_size, self.max_pages
        yield ml

    def on_mount(self) -> None:
        self.query_one(MessageList).focus()
        self.query_one(MessageList).reset()


def visible(ml: MessageList) -> dict[int, str]:
    """The rows on the screen, by index: none may be loading."""
    top = int(ml.scroll_offset.y)
    rows = {i: ml.summary_at(i) for i in range(top, min(ml.total, top + ml.size.height))}
    assert all(rows.values()), rows
    return {i: s.id for i, s in rows.items()}


async def settle(pilot, ml: MessageList) -> None:
    await wait_for(pilot, lambda: not ml._loading and ml.highlighted is not None)
    await pilot.pause()
    await wait_for(pilot, lambda: not ml._loading)


async def test_rows_meet_rightly_where_the_chains_meet():
    items = summaries(537)  # not a multiple of the page size: the chains' pages do not line up
    loader = KeysetLoader(items)
    app = ListApp(loader, page_size=10, max_pages=1000)
    async with app.run_test(size=(80, 8)) as pilot:
        ml = app.query_one(MessageList)
        await settle(pilot, ml)
        assert loader.requests == [("newest", None)]
        await pilot.press("end")
        await settle(pilot, ml)
        assert ml.highlighted.id == "m0" and loader.requests[1:] == [("oldest", None)]
        # Up from the end, past the first ten pages: the bottom chain goes on, never the top.
        shown = {}
        for _ in range(25):
            await pilot.press("pageup")
            await settle(pilot, ml)
            shown.update(visible(ml))
        assert ml.cursor < 537 - 150
        assert {order for order, _ in loader.requests[1:]} == {"oldest"}
        assert shown == {i: items[i].id for i in range(min(shown), 537)}
        # Down from the top until the chains meet, then on through the seam.
        await pilot.press("home")
        await settle(pilot, ml)
        shown = visible(ml)
        while ml.cursor < 536:
            await pilot.press("pagedown")
            await settle(pilot, ml)
            shown.update(visible(ml))
        assert shown == {i: s.id for i, s in enumerate(items)}  # no message twice, none missing
        assert len(set(shown.values())) == 537
        chains = {key[0] for key in ml._pages}
        assert chains == {TOP, BOTTOM}
        # Every row, from whichever chain holds it.
        assert [ml.summary_at(i).id for i in range(537)] == [s.id for s in items]
        assert ml.summary_at(537) is None and ml.summary_at(-1) is None


async def test_a_row_between_the_chains_is_fetched_from_the_nearer_end():
    items = summaries(1000)
    loader = KeysetLoader(items)
    app = ListApp(loader, page_size=10, max_pages=6)
    async with app.run_test(size=(80, 8)) as pilot:
        ml = app.query_one(MessageList)
        await settle(pilot, ml)
        await pilot.press("end")
        await settle(pilot, ml)
        # Row 700 is 69 pages from the top chain's end and 29 from the bottom's: the bottom
        # walks; row 200 is nearer the top.
        for row, order in ((700, "oldest"), (200, "newest")):
            before = len(loader.requests)
            ml.cursor = row
            await settle(pilot, ml)
            assert ml.highlighted.id == items[row].id
            assert {o for o, _ in loader.requests[before:]} == {order}
            assert len(ml._pages) <= 6
        # A reset (new mail, say) forgets both chains, keeping the cursor and its stale rows.
        ml.reset(keep_cursor=True)
        assert ml._cursors == {TOP: [None], BOTTOM: [None]} and not ml._pages
        assert ml.highlighted.id == items[200].id  # the stale row, until its fresh page comes
        await settle(pilot, ml)
        assert ml.highlighted.id == items[200].id and ml.cursor == 200


class CappedLoader(KeysetLoader):
    """A search that found more than the PEN counts: `total` is the count's cap, not exact."""

    def __init__(self, items: list[Summary], cap: int):
        super().__init__(items)
        self.cap = cap

    async def __call__(self, cursor: str | None, limit: int, order: str = "newest") -> Page:
        page = await super().__call__(cursor, limit, order)
        return Page(page.items, page.next_cursor, min(self.cap, len(self.items)), exact=len(self.items) <= self.cap)


async def test_a_search_counted_only_in_part_is_walked_from_the_top_only():
    """At most `cap` rows (the newest matches), reached from the top: End goes to the cap's last
    row through the top chain, never asking for the oldest matches (which are not those rows)."""
    items = summaries(300)
    loader = CappedLoader(items, cap=100)
    app = ListApp(loader, page_size=10, max_pages=1000)
    async with app.run_test(size=(80, 8)) as pilot:
        ml = app.query_one(MessageList)
        await settle(pilot, ml)
        assert ml.total == 100 and ml.open_ended
        await pilot.press("end")
        await wait_for(pilot, lambda: ml.cursor == 99 and ml.highlighted is not None, timeout=20)
        await settle(pilot, ml)
        assert all(order == TOP for order, _c in loader.requests)
        assert ml.highlighted.id == items[99].id  # the 100th newest, as the top chain counts it
        assert visible(ml)[99] == items[99].id
