"""Snapshots of what changed on the screens for issue 20, at 80x24 and 120x40, against a real
PEN whose clock is fixed (PEN_CLOCK: 15 Jan 2020, 09:30 UTC): the notification view with
who opened the message, the withdraw question with a recipient marked, the sender's reader
with an end date and its prompt, a recipient's list with a withdrawn and an expired
message and the reader of the withdrawn one, and compose with an end date. Review a
changed SVG (render it to PNG and look) before `--snapshot-update`."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import httpx
import pytest

from pen_devstack import PenProcess, SmtpSink, add_user, free_port, init_pen, set_package
from tests.client.test_reader_snapshots import app_for  # (clinic, email, folder): signed in by password
from tests.conftest import PASSWORD, SNAPSHOT_CLOCK, TEARDOWN_STOP_SECONDS
from tests.tui_helpers import at_mailbox, wait_for
from tui.drafts import Draft
from tui.screens.compose import ComposeScreen
from tui.screens.notifications import NotificationsScreen
from tui.screens.reader import ReaderScreen
from tui.screens.withdraw import WithdrawScreen
from tui.widgets.message_list import MessageList
from tui.widgets.notification_table import NotificationTable

SIZES = [(80, 24), (120, 40)]
pytestmark = pytest.mark.usefixtures("utc")  # dates as the snapshots show them
DANA = {"email": "dana@riverside.example", "name": "Dana Whitfield"}
OMAR = {"email": "omar@riverside.example", "name": "Omar Haddad"}


@pytest.fixture(scope="module")
def clinic(tmp_path_factory):
    """Riverside Clinic on 15 Jan 2020: Rosa's referral (to Dana, who opened it, cc Omar), a
    discharge summary with an end date (to Omar), lab results she withdrew from Dana, and a
    rota that ended on 16 Jan (as a person reads the list later, it has expired)."""
    root = tmp_path_factory.mktemp("after-snap-pen")
    sink = SmtpSink().start()
    port = free_port()
    init_pen(root, footer="Sent by Riverside Clinic", port=port)
    set_package(root, "staff", "Confidential.")
    for email, name in [(DANA["email"], DANA["name"]), ("rosa@riverside.example", "Dr. Rosa Ruiz"),
                        (OMAR["email"], OMAR["name"])]:
        add_user(root, email, name, PASSWORD, package="staff")
    process = PenProcess(root, port, smtp_port=sink.port, env=SNAPSHOT_CLOCK).start()
    ids = {}
    with httpx.Client(base_url=process.api, verify=str(process.ca_file), timeout=30) as c:
        def as_(email):
            token = c.post("/auth/login", json={"email": email, "password": PASSWORD}).json()["access_token"]
            return {"Authorization": f"Bearer {token}"}

        rosa, dana = as_("rosa@riverside.example"), as_(DANA["email"])
        for key, payload in [
            ("rota", {"to": [DANA], "subject": "Flu clinic rota", "body_text": "Mornings only.",
                      "expires_at": "2020-01-16T09:00:00Z"}),
            ("withdrawn", {"to": [DANA], "subject": "Lab results for the wrong patient",
                           "body_text": "These are not yours."}),
            ("discharge", {"to": [OMAR], "subject": "Discharge summary: J. Alvarez",
                           "body_text": "Discharged home; review in two weeks.", "expires_at": "2020-02-15T17:00:00Z"}),
            ("referral", {"to": [DANA], "cc": [OMAR], "subject": "Referral: Mr. Patel",
                          "body_text": "Please see the referral letter for Mr. Patel."}),
        ]:
            r = c.post("/messages", json=payload, headers={**rosa, "Idempotency-Key": uuid.uuid4().hex})
            assert r.status_code == 201, r.text
            ids[key] = r.json()["id"]
        assert c.post(f"/messages/{ids['withdrawn']}/revoke", json={}, headers=rosa).status_code == 200
        assert c.get(f"/messages/{ids['referral']}", headers=dana).status_code == 200  # opened
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # every notification out, so the rows are final
            items = c.get(f"/messages/{ids['referral']}/notifications", headers=rosa).json()["items"]
            if all(n["status"] == "sent" for n in items):
                break
            time.sleep(0.1)
    yield process, ids
    process.stop(TEARDOWN_STOP_SECONDS)
    sink.stop()


async def mailbox_loaded(pilot) -> None:
    app = pilot.app
    await wait_for(pilot, lambda: at_mailbox(app) and app.screen.query(MessageList)
                   and app.screen.query_one(MessageList).loaded_once)
    await pilot.pause()


async def reading(pilot, message_id: str) -> ReaderScreen:
    app = pilot.app
    await mailbox_loaded(pilot)
    app.open_message(await app.session.client.get_message(message_id))
    await wait_for(pilot, lambda: isinstance(app.screen, ReaderScreen) and app.screen.body_shown)
    return app.screen


@pytest.fixture
def state(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("PENMAIL_STATE_DIR", str(tmp_path / "state"))
    return tmp_path


@pytest.mark.parametrize("size", SIZES)
def test_notification_view_says_who_opened_it(snap_compare, clinic, size, state):
    _, ids = clinic

    async def opened(pilot):
        app = pilot.app
        await mailbox_loaded(pilot)
        app.show_notifications(ids["referral"], "Referral: Mr. Patel")
        await wait_for(pilot, lambda: isinstance(app.screen, NotificationsScreen) and app.screen.loaded)
        table = app.screen.query_one(NotificationTable)
        assert {n.recipient.email: n.opened_at is not None for n in table.items} == {DANA["email"]: True,
                                                                                  OMAR["email"]: False}
        await pilot.pause(0.3)

    assert snap_compare(app_for(clinic, "rosa@riverside.example", state), terminal_size=size, run_before=opened)


@pytest.mark.parametrize("size", SIZES)
def test_withdraw_question_with_a_recipient_marked(snap_compare, clinic, size, state):
    _, ids = clinic

    async def asked(pilot):
        await reading(pilot, ids["referral"])
        await pilot.press("V")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, WithdrawScreen))
        await pilot.press("j", "j", "j", "space")  # past No and everyone, past Dana: Omar marked
        await wait_for(pilot, lambda: pilot.app.screen.query_one("#withdraw-choices").marked == {OMAR["email"]})
        await pilot.pause()

    assert snap_compare(app_for(clinic, "rosa@riverside.example", state), terminal_size=size, run_before=asked)


@pytest.mark.parametrize("size", SIZES)
def test_sender_reader_with_an_end_date_and_its_prompt(snap_compare, clinic, size, state):
    _, ids = clinic

    async def prompted(pilot):
        reader = await reading(pilot, ids["discharge"])
        await pilot.press("e")
        await wait_for(pilot, lambda: pilot.app.focused is reader.query_one("#end-date"))
        await pilot.pause()

    assert snap_compare(app_for(clinic, "rosa@riverside.example", state), terminal_size=size, run_before=prompted)


@pytest.mark.parametrize("size", SIZES)
def test_recipient_list_says_withdrawn_and_expired(snap_compare, clinic, size, state):
    assert snap_compare(app_for(clinic, DANA["email"], state), terminal_size=size, run_before=mailbox_loaded)


@pytest.mark.parametrize("size", SIZES)
def test_recipient_reader_of_a_withdrawn_message(snap_compare, clinic, size, state):
    _, ids = clinic

    async def withdrawn(pilot):
        app = pilot.app
        await mailbox_loaded(pilot)
        listing = app.screen.query_one(MessageList)
        summary = next(listing.row_summary(i) for i in range(listing.rows)
                       if listing.row_summary(i) and listing.row_summary(i).id == ids["withdrawn"])
        app.open_message(summary)
        await wait_for(pilot, lambda: isinstance(app.screen, ReaderScreen) and app.screen._shown.is_set())
        await pilot.pause()

    assert snap_compare(app_for(clinic, DANA["email"], state), terminal_size=size, run_before=withdrawn)


@pytest.mark.parametrize("size", SIZES)
def test_compose_with_an_end_date(snap_compare, clinic, size, state):
    draft = Draft(to=["Omar Haddad <omar@riverside.example>"], subject="Results for the weekend",
                  body="Readable until the end of the month.", expires_at="2030-01-31T17:00:00Z",
                  updated_at="2020-01-15T09:40:00Z")  # not on disk: no drafts are offered at sign-in

    async def resumed(pilot):
        app = pilot.app
        await mailbox_loaded(pilot)
        app.resume_draft(draft)
        await wait_for(pilot, lambda: isinstance(app.screen, ComposeScreen) and app.focused is not None)
        await pilot.pause()

    app = app_for(clinic, "rosa@riverside.example", state)
    assert snap_compare(app, terminal_size=size, run_before=resumed)
