"""Snapshots at 80x24 of the screens the other snapshot files do not show at that size (issue
23, item 8): the reader of a long conversation with a cc and attachments, Trash, search results
and a refused search, a new message, a reply, the command palette, the sign-out question, and
sign-in with its notices. Against real PENs whose clock is fixed (SNAPSHOT_CLOCK): the shared
snapshot PEN where nothing is changed, and one of this module's where folders are changed.
Review a changed SVG row by row before `--snapshot-update`."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import pytest

from pen_devstack import PenProcess, SmtpSink, add_user, free_port, init_pen
from tests.client.test_snapshots import mailbox_ready, signed_in_app
from tests.conftest import PASSWORD, SNAPSHOT_CLOCK, TEARDOWN_STOP_SECONDS
from tests.tui_helpers import at_mailbox, wait_for
from tui.app import PenmailApp
from tui.config import Config
from tui.screens.compose import ComposeScreen
from tui.screens.confirm import ConfirmScreen
from tui.screens.reader import ReaderScreen
from tui.widgets.message_list import MessageList
from tui.widgets.thread_list import ThreadList

SIZE = (80, 24)
pytestmark = pytest.mark.usefixtures("utc")  # dates as the snapshots show them
DANA = {"email": "dana@riverside.example", "name": "Dana Whitfield"}
ROSA = {"email": "rosa@riverside.example", "name": "Dr. Rosa Ruiz"}
OMAR = {"email": "omar@riverside.example", "name": "Omar Haddad"}
LONG = "Referral: Mr. Patel, cardiology consult before the knee operation in March"


@pytest.fixture(scope="module")
def _ward(tmp_path_factory):
    """Dana's mailbox on 15 Jan 2020: a conversation of seven with Rosa (the newest with a cc
    and two files, the subjects too long for 80 columns), and a notice in Trash."""
    root = tmp_path_factory.mktemp("small-screens-pen")
    sink = SmtpSink().start()
    port = free_port()
    init_pen(root, footer="Sent by Riverside Clinic", port=port)
    for person in (DANA, ROSA, OMAR):
        add_user(root, person["email"], person["name"], PASSWORD)
    process = PenProcess(root, port, smtp_port=sink.port, env=SNAPSHOT_CLOCK).start()
    with httpx.Client(base_url=process.api, verify=str(process.ca_file), timeout=30) as c:
        def as_(person):
            token = c.post("/auth/login", json={"email": person["email"], "password": PASSWORD}).json()
            return {"Authorization": f"Bearer {token['access_token']}"}

        def send(headers, payload):
            r = c.post("/messages", json=payload, headers={**headers, "Idempotency-Key": uuid.uuid4().hex})
            assert r.status_code == 201, r.text
            return r.json()["id"]

        rosa, dana, omar = as_(ROSA), as_(DANA), as_(OMAR)
        closed = send(omar, {"to": [DANA], "subject": "Clinic closed on Friday",
                             "body_text": "The clinic is closed this Friday for the fire drill."})
        inbox = c.get("/messages", params={"folder": "inbox"}, headers=dana).json()["items"]
        trashed = next(m["id"] for m in inbox if m["subject"] == "Clinic closed on Friday")
        assert c.patch(f"/messages/{trashed}", json={"folder": "trash"}, headers=dana).status_code == 200, closed
        parent = send(rosa, {"to": [DANA], "subject": LONG, "body_text": "Please see him before March."})
        for who, body in [(dana, "Tuesday 10:00 works."), (rosa, "Booked; his GP knows."),
                          (dana, "His ECG is in the notes."), (rosa, "Thanks, I have it."),
                          (dana, "Anything else before Tuesday?")]:
            parent = send(who, {"to": [ROSA if who is dana else DANA], "subject": f"Re: {LONG}",
                                "body_text": body, "in_reply_to": parent})
        lab = c.post("/uploads?filename=ecg-2020-01-14.pdf", headers={**rosa, "Content-Type": "application/pdf"},
                     content=b"%PDF-1.4\n" + b"0" * 4000).json()
        scan = c.post("/uploads?filename=knee%20MRI.dcm", headers={**rosa, "Content-Type": "application/dicom"},
                      content=bytes(range(256)) * 120).json()
        send(rosa, {"to": [DANA], "cc": [OMAR], "subject": f"Re: {LONG}", "in_reply_to": parent,
                    "body_text": "The ECG and the MRI are attached.\n\nRosa", "attachments": [lab["id"], scan["id"]]})
    yield process
    process.stop(TEARDOWN_STOP_SECONDS)
    sink.stop()


@pytest.fixture
def ward(_ward):
    """The module's PEN with Dana's inbox all unread, as it was sent (the reader's snapshot
    marks one read), so that no snapshot depends on the order the tests run in."""
    with httpx.Client(base_url=_ward.api, verify=str(_ward.ca_file), timeout=30) as c:
        login = c.post("/auth/login", json={"email": DANA["email"], "password": PASSWORD})
        c.headers["Authorization"] = f"Bearer {login.json()['access_token']}"
        for m in c.get("/messages", params={"folder": "inbox"}).json()["items"]:
            if not m["unread"]:
                assert c.patch(f"/messages/{m['id']}", json={"unread": True}).status_code == 200
    return _ward


def dana_app(process, tmp_path) -> PenmailApp:
    config = Config(server=process.url, ca_file=Path(process.ca_file), email=DANA["email"], download_dir=tmp_path)
    return PenmailApp(config, env={"PENMAIL_PASSWORD": PASSWORD}, use_keyring=False)


async def at_inbox(pilot) -> None:
    app = pilot.app
    await wait_for(pilot, lambda: at_mailbox(app) and app.screen.query(MessageList)
                   and app.screen.query_one(MessageList).highlighted is not None
                   and {"inbox", "drafts"} <= set(app.screen.folder_counts))
    await pilot.pause()


def test_reader_of_a_long_thread_with_a_cc_and_files(snap_compare, ward, tmp_path, monkeypatch):
    """The fullest reader head: five headers, two files, seven in the conversation. The
    conversation shows at least three rows, each on one line with where it is, and the body
    keeps its rows."""
    monkeypatch.setenv("PENMAIL_STATE_DIR", str(tmp_path))

    async def open_newest(pilot):
        await at_inbox(pilot)
        await pilot.press("enter")
        app = pilot.app
        await wait_for(pilot, lambda: isinstance(app.screen, ReaderScreen) and app.screen.body_shown
                       and len(app.screen.query_one(ThreadList).summaries) == 7)
        await pilot.pause()
        thread, body = app.screen.query_one(ThreadList), app.screen.query_one("#body")
        assert thread.region.height >= 3, thread.region
        assert body.region.height >= 6, body.region
        assert all(len(thread._row(i)) <= thread.region.width for i in range(7))

    assert snap_compare(dana_app(ward, tmp_path), terminal_size=SIZE, run_before=open_newest)


def test_trash(snap_compare, ward, tmp_path, monkeypatch):
    monkeypatch.setenv("PENMAIL_STATE_DIR", str(tmp_path))

    async def trash(pilot):
        await at_inbox(pilot)
        await pilot.press("4")
        app = pilot.app
        await wait_for(pilot, lambda: app.screen.folder == "trash"
                       and app.screen.query_one(MessageList).highlighted is not None)
        await pilot.pause()

    assert snap_compare(dana_app(ward, tmp_path), terminal_size=SIZE, run_before=trash)


async def searched(pilot, text: str) -> None:
    await mailbox_ready(pilot)
    await pilot.press("slash")
    await pilot.press(*text, "enter")


def test_search_results(snap_compare, snap_pen, tmp_path, monkeypatch):
    monkeypatch.setenv("PENMAIL_STATE_DIR", str(tmp_path))

    async def found(pilot):  # a search too long for one line: the title takes two, its counts whole
        await searched(pilot, "from:rosa is:unread after:2020-01-01 before:2020-12-31")
        app = pilot.app
        await wait_for(pilot, lambda: "match" in app.screen.query_one("#mailbox-title").render().plain
                       and app.screen.query_one(MessageList).total == 2)
        await pilot.pause()

    assert snap_compare(signed_in_app(snap_pen, tmp_path), terminal_size=SIZE, run_before=found)


def test_search_refused(snap_compare, snap_pen, tmp_path, monkeypatch):
    monkeypatch.setenv("PENMAIL_STATE_DIR", str(tmp_path))

    async def refused(pilot):
        await searched(pilot, "frm:rosa")
        app = pilot.app
        await wait_for(pilot, lambda: app.screen.query_one("#search-note").has_class("-refused"))
        await pilot.pause()

    assert snap_compare(signed_in_app(snap_pen, tmp_path), terminal_size=SIZE, run_before=refused)


@pytest.mark.parametrize("keys", [["c"], ["r"]], ids=["new", "reply"])
def test_compose(snap_compare, snap_pen, keys, tmp_path, monkeypatch):
    monkeypatch.setenv("PENMAIL_STATE_DIR", str(tmp_path))

    async def composing(pilot):
        await mailbox_ready(pilot)
        await pilot.press(*keys)
        app = pilot.app
        await wait_for(pilot, lambda: isinstance(app.screen, ComposeScreen) and app.focused is not None)
        await pilot.pause()

    assert snap_compare(signed_in_app(snap_pen, tmp_path), terminal_size=SIZE, run_before=composing)


def test_command_palette(snap_compare, snap_pen, tmp_path, monkeypatch):
    monkeypatch.setenv("PENMAIL_STATE_DIR", str(tmp_path))

    async def palette(pilot):
        await mailbox_ready(pilot)
        await pilot.press("ctrl+p")
        await pilot.press(*"sign")
        await pilot.pause(0.5)

    assert snap_compare(signed_in_app(snap_pen, tmp_path), terminal_size=SIZE, run_before=palette)


def test_sign_out_question_while_writing(snap_compare, snap_pen, tmp_path, monkeypatch):
    monkeypatch.setenv("PENMAIL_STATE_DIR", str(tmp_path))

    async def ask(pilot):
        await mailbox_ready(pilot)
        await pilot.press("c")
        app = pilot.app
        await wait_for(pilot, lambda: isinstance(app.screen, ComposeScreen))
        app.action_sign_out()
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.pause()

    assert snap_compare(signed_in_app(snap_pen, tmp_path), terminal_size=SIZE, run_before=ask)


def test_sign_in_with_its_notices(snap_compare, tmp_path, monkeypatch):
    """Signed out with a draft kept while the PEN did not answer, in the demo: the notices
    take a band above the form, never over a field, and the button stays on the screen."""
    from tui.demo import sign_in_hint

    monkeypatch.setenv("PENMAIL_STATE_DIR", str(tmp_path))
    app = PenmailApp(Config(), env={}, use_keyring=False,
                     sign_in_hint=sign_in_hint() + " Ctrl+G shows a guest's link for a browser.")

    async def notices(pilot):
        app.switch_screen(app.sign_in_screen(
            notice="You are signed out; the remembered sign-in was removed. The draft \u201cPlan\u201d is kept."))
        await wait_for(pilot, lambda: app.screen.query("#submit"))
        app.toast("The PEN did not answer; the remembered sign-in was removed here anyway.", title="Sign-out",
                  severity="warning", timeout=60)
        await pilot.pause()
        await pilot.pause()
        fields = [app.screen.query_one(f"#{name}").region for name in ("server", "email", "password", "submit")]
        toasts = [toast.region for toast in app.screen.query("Toast")]
        assert toasts and all(field.bottom <= SIZE[1] - 1 for field in fields), (toasts, fields)
        assert not any(toast.overlaps(field) for toast in toasts for field in fields), (toasts, fields)

    assert snap_compare(app, terminal_size=SIZE, run_before=notices)
