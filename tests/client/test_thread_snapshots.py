"""Snapshots of the thread view (T, a thread opened with space) at 80x24 and 120x40, and of
the reader showing the rest of a thread, on the fixed-clock PEN of test_snapshots. The
threads are Omar's and Rosa's, so Dana's snapshots stay as they were. Review a changed SVG
row by row before `--snapshot-update`."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.client.test_snapshots import SIZES
from tests.conftest import PASSWORD
from tests.tui_helpers import at_mailbox, wait_for
from tui.app import PenmailApp
from tui.config import Config
from tui.screens.reader import ReaderScreen
from tui.widgets.message_list import MessageList
from tui.widgets.thread_list import ThreadList

pytestmark = pytest.mark.usefixtures("utc")  # dates as the snapshots show them
OMAR = "omar@riverside.example"


def _client(process) -> httpx.Client:
    return httpx.Client(base_url=process.api, verify=str(process.ca_file), timeout=30)


@pytest.fixture
def omar_pen(_snapshot_pen):
    """Every message in Omar's inbox unread, as it was sent (a test that reads one marks it).
    His thread with Rosa is made with the snapshot PEN (tests/conftest.py), at its fixed time."""
    with _client(_snapshot_pen) as c:
        token = c.post("/auth/login", json={"email": OMAR, "password": PASSWORD}).json()["access_token"]
        c.headers["Authorization"] = f"Bearer {token}"
        for m in c.get("/messages", params={"folder": "inbox"}).json()["items"]:
            if not m["unread"]:
                assert c.patch(f"/messages/{m['id']}", json={"unread": True}).status_code == 200
    return _snapshot_pen


def omar_app(process, tmp_path) -> PenmailApp:
    config = Config(server=process.url, ca_file=Path(process.ca_file), email=OMAR, download_dir=tmp_path)
    return PenmailApp(config, env={"PENMAIL_PASSWORD": PASSWORD}, use_keyring=False)


async def thread_view_open(pilot) -> None:
    """T, then space on the newest thread: its two older messages under it."""
    app = pilot.app
    await wait_for(pilot, lambda: at_mailbox(app) and app.screen.query(MessageList)
                   and app.screen.query_one(MessageList).highlighted is not None)
    messages = app.screen.query_one(MessageList)
    await pilot.press("T")
    await wait_for(pilot, lambda: messages.threads and messages.highlighted is not None
                   and messages.highlighted.thread_count == 3
                   and {"inbox", "drafts"} <= set(app.screen.folder_counts))
    await pilot.press("space")
    await wait_for(pilot, lambda: messages.rows == messages.total + 2)
    await pilot.pause()


@pytest.mark.parametrize("size", SIZES)
def test_thread_view(snap_compare, omar_pen, size, tmp_path, monkeypatch):
    monkeypatch.setenv("PENMAIL_STATE_DIR", str(tmp_path))
    assert snap_compare(omar_app(omar_pen, tmp_path), terminal_size=size, run_before=thread_view_open)


@pytest.mark.parametrize("size", SIZES)
def test_reader_with_its_thread(snap_compare, omar_pen, size, tmp_path, monkeypatch):
    monkeypatch.setenv("PENMAIL_STATE_DIR", str(tmp_path))

    async def open_older(pilot):
        await thread_view_open(pilot)
        await pilot.press("j", "enter")  # Rosa's first answer, from the opened thread
        app = pilot.app
        await wait_for(pilot, lambda: isinstance(app.screen, ReaderScreen) and app.screen.body_shown
                       and len(app.screen.query_one(ThreadList).summaries) == 4)
        await pilot.press("T")
        await wait_for(pilot, lambda: isinstance(app.focused, ThreadList))
        await pilot.pause()

    assert snap_compare(omar_app(omar_pen, tmp_path), terminal_size=size, run_before=open_older)
