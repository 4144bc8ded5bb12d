"""Snapshots of the thread view (T, a thread opened with space) at 80x24 and 120x40, and of
the reader showing the rest of a thread, on the fixed-clock PEN of test_snapshots. The
threads are Omar's and Rosa's (added once per session), so Dana's snapshots stay as they
were. Review a changed SVG row by row before `--snapshot-update`."""

from __future__ import annotations

import uuid
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
OMAR, ROSA = "omar@riverside.example", "rosa@riverside.example"
LONG_SUBJECT = "Handover notes for the weekend: the on-call list, the pharmacy order and the rota"


def _client(process) -> httpx.Client:
    return httpx.Client(base_url=process.api, verify=str(process.ca_file), timeout=30)


@pytest.fixture(scope="session")
def _omar_threads(_snapshot_pen):
    """Omar answers Rosa's referral (he was copied), Rosa answers twice, and sends him a
    message with a long subject: his inbox holds a thread of three, and two alone."""
    with _client(_snapshot_pen) as c:
        def as_(email):
            tok = c.post("/auth/login", json={"email": email, "password": PASSWORD}).json()["access_token"]
            return {"Authorization": f"Bearer {tok}"}

        def send(headers, subject, body, parent=None):
            payload = {"to": [{"email": ROSA if headers is omar else OMAR}], "subject": subject, "body_text": body}
            if parent:
                payload["in_reply_to"] = parent
            r = c.post("/messages", json=payload, headers={**headers, "Idempotency-Key": uuid.uuid4().hex})
            assert r.status_code == 201, r.text
            return r.json()["id"]

        omar, rosa = as_(OMAR), as_(ROSA)
        inbox = c.get("/messages", params={"folder": "inbox"}, headers=omar).json()["items"]
        [referral] = [m["id"] for m in inbox if m["subject"] == "Referral: Mr. Patel"]
        answer = send(omar, "Re: Referral: Mr. Patel", "I can see him on Tuesday.", referral)
        again = send(rosa, "Re: Referral: Mr. Patel", "Tuesday is fine; I told his GP.", answer)
        send(rosa, LONG_SUBJECT, "All in the shared folder.")
        send(rosa, "Re: Referral: Mr. Patel", "His notes are attached to the first message.", again)
    return _snapshot_pen


@pytest.fixture
def omar_pen(_omar_threads):
    """Every message in Omar's inbox unread, as it was sent (a test that reads one marks it)."""
    with _client(_omar_threads) as c:
        token = c.post("/auth/login", json={"email": OMAR, "password": PASSWORD}).json()["access_token"]
        c.headers["Authorization"] = f"Bearer {token}"
        for m in c.get("/messages", params={"folder": "inbox"}).json()["items"]:
            if not m["unread"]:
                assert c.patch(f"/messages/{m['id']}", json={"unread": True}).status_code == 200
    return _omar_threads


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
                   and messages.highlighted.thread_count == 3 and app.screen.folder_counts.get("inbox"))
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
