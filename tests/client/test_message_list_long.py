"""A long mailbox against the real server: End shows the oldest message at once (one page
from the bottom, not every page from the top), scrolling up from there shows the right rows,
Home goes back, and the list never holds more than MAX_PAGES pages."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

from pen_devstack import PenProcess
from tests.tui_helpers import at_mailbox, record_events, rendered, stream_is_up, wait_for
from tui.app import PenmailApp
from tui.config import Config
from tui.pen_client import PenClient
from tui.widgets.message_list import MessageList

MESSAGES = 3000
BENCH = Path(__file__).resolve().parents[2] / "bench" / "server_mailbox.py"


def bench_module():
    spec = importlib.util.spec_from_file_location("bench_server_mailbox", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def long_pen(tmp_path_factory, smtp):
    """A PEN of its own whose reader has MESSAGES messages in the inbox ("Message number 0" the
    oldest), written straight through the server's models."""
    bench = bench_module()
    data = tmp_path_factory.mktemp("long-pen")
    port = bench.make_bench_pen(data, MESSAGES)
    process = PenProcess(data, port, smtp_port=smtp.port, env={"PEN_STRICT_ERRORS": "1"}).start()
    yield process, bench.PASSWORD
    process.stop(timeout=5)


@pytest.fixture
def requests(monkeypatch):
    """Every list request the client makes: (order, cursor)."""
    made: list[tuple[str, str | None]] = []
    original = PenClient.list_messages

    async def counted(self, folder="inbox", **kw):
        made.append((kw.get("order", "newest"), kw.get("cursor")))
        return await original(self, folder, **kw)

    monkeypatch.setattr(PenClient, "list_messages", counted)
    return made


def shown_numbers(app) -> list[int]:
    """The message numbers on the screen, top to bottom."""
    return [int(n) for n in re.findall(r"Message number (\d+)", rendered(app)[0])]


def check_view(app, ml: MessageList) -> None:
    """Every visible row is there, and is the right message, on the screen and in the list."""
    top = int(ml.scroll_offset.y)
    indexes = range(top, min(ml.total, top + ml.size.height))
    assert [ml.summary_at(i).subject for i in indexes] == [f"Message number {ml.total - 1 - i}" for i in indexes]
    assert shown_numbers(app) == [ml.total - 1 - i for i in indexes]
    assert len(ml._pages) <= ml.MAX_PAGES


async def settled(pilot, ml: MessageList) -> None:
    await wait_for(pilot, lambda: not ml._loading and ml.highlighted is not None)
    await pilot.pause()
    await wait_for(pilot, lambda: not ml._loading)


async def test_end_shows_the_oldest_at_once_and_scrolling_up_from_there(long_pen, requests, tmp_path, monkeypatch):
    process, password = long_pen
    monkeypatch.setenv("PENMAIL_STATE_DIR", str(tmp_path / "state"))
    config = Config(server=process.url, ca_file=Path(process.ca_file), email="reader@bench.example",
                    download_dir=tmp_path)
    app = PenmailApp(config, env={"PENMAIL_PASSWORD": password}, use_keyring=False)
    record_events(app)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: at_mailbox(app) and app.screen.query(MessageList))
        ml = app.screen.query_one(MessageList)
        # The event stream's opening reloads the list: wait for it, so the pages counted below
        # are only those that the keys ask for (a late opening had added a third request).
        await wait_for(pilot, lambda: ml.loaded_once and ml.highlighted is not None and stream_is_up(app))
        await settled(pilot, ml)
        assert ml.total == MESSAGES
        assert ml.highlighted.subject == f"Message number {MESSAGES - 1}"
        check_view(app, ml)

        requests.clear()
        await pilot.press("end")
        await wait_for(pilot, lambda: ml.highlighted is not None
                       and ml.highlighted.subject == "Message number 0")
        await settled(pilot, ml)
        assert len(requests) <= 2, requests
        assert requests == [("oldest", None)]
        assert ml.cursor == MESSAGES - 1
        # The highlighted row is on the screen, with the terminal cursor on it.
        line = rendered(app)[0].splitlines()[app.cursor_position.y]
        assert "Message number 0 " in line and ">" in line
        check_view(app, ml)

        # Up from the end, page by page, through more pages than the list keeps.
        for _ in range(50):
            await pilot.press("pageup")
            await settled(pilot, ml)
            check_view(app, ml)
            assert ml.highlighted.subject == f"Message number {MESSAGES - 1 - ml.cursor}"
        assert ml.cursor < MESSAGES - 12 * ml.PAGE_SIZE
        assert {order for order, _ in requests} == {"oldest"}  # the bottom chain, never a walk from the top
        # And row by row, up and down across a page boundary of the bottom chain.
        for key in ["up"] * 40 + ["down"] * 15:
            await pilot.press(key)
            await settled(pilot, ml)
            check_view(app, ml)
            assert ml.highlighted.subject == f"Message number {MESSAGES - 1 - ml.cursor}"

        requests.clear()
        await pilot.press("home")
        await wait_for(pilot, lambda: ml.highlighted is not None
                       and ml.highlighted.subject == f"Message number {MESSAGES - 1}")
        await settled(pilot, ml)
        assert ml.cursor == 0 and int(ml.scroll_offset.y) == 0
        assert len(requests) <= 1 and all(order == "newest" for order, _ in requests)
        check_view(app, ml)

        # End once more, then G: at most one page each (the first may still be held).
        requests.clear()
        await pilot.press("G")
        await wait_for(pilot, lambda: ml.cursor == MESSAGES - 1 and ml.highlighted is not None
                       and ml.highlighted.subject == "Message number 0")
        await settled(pilot, ml)
        assert len(requests) <= 1
        check_view(app, ml)
