"""Snapshots of the reader's attachment list with a download under way, and of the
notification status view, at 80x24 and 120x40, against a real PEN whose clock is fixed
(PEN_CLOCK). The download is a real one held mid-way, with a fixed Progress shown (speed
and time left would differ run to run); the notification rows are waited for until
every one is final (sent, or failed by a relay that refuses one recipient)."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import httpx
import pytest

from pen_devstack import (
    PenProcess,
    SinkHandler,
    SmtpSink,
    add_user,
    free_port,
    init_pen,
    set_package,
)
from tests.client.test_reader_attachments import gated_downloads
from tests.conftest import PASSWORD, SNAPSHOT_CLOCK, TEARDOWN_STOP_SECONDS
from tests.tui_helpers import at_mailbox, wait_for
from tui.app import PenmailApp
from tui.config import Config
from tui.downloads import Progress
from tui.screens.notifications import NotificationsScreen
from tui.screens.reader import ReaderScreen
from tui.widgets.download_panel import DownloadPanel
from tui.widgets.notification_table import NotificationTable
from tui.widgets.reader_attachments import ReaderAttachmentList

SIZES = [(80, 24), (120, 40)]
pytestmark = pytest.mark.usefixtures("utc")  # dates as the snapshots show them
REFUSED = "lab@partner.example"


class RefusingSink(SinkHandler):
    """Takes every e-mail but those for REFUSED, which it refuses like a real relay."""

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.lower() == REFUSED:
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"


@pytest.fixture(scope="module")
def clinic(tmp_path_factory):
    """Riverside Clinic on 15 Jan 2020, 09:30 UTC: lab results with two attachments for
    Dana, and a referral whose notifications went to a member, a cc and a refused bcc."""
    root = tmp_path_factory.mktemp("reader-snap-pen")
    sink = SmtpSink()
    sink.handler = sink.controller.handler = RefusingSink()
    sink.start()
    port = free_port()
    init_pen(root, footer="Sent by Riverside Clinic", port=port)
    set_package(root, "staff", "Confidential.")
    for email, name in [("dana@riverside.example", "Dana Whitfield"), ("rosa@riverside.example", "Dr. Rosa Ruiz"),
                        ("omar@riverside.example", "Omar Haddad")]:
        add_user(root, email, name, PASSWORD, package="staff")
    process = PenProcess(root, port, smtp_port=sink.port, env=SNAPSHOT_CLOCK).start()
    ids = {}
    with httpx.Client(base_url=process.api, verify=str(process.ca_file), timeout=30) as c:
        token = c.post("/auth/login", json={"email": "rosa@riverside.example", "password": PASSWORD}).json()
        rosa = {"Authorization": f"Bearer {token['access_token']}"}
        lab = c.post("/uploads?filename=lab-results.csv", headers={**rosa, "Content-Type": "text/csv"},
                     content=b"test,value,unit\nHbA1c,5.4,%\n" * 40).json()
        scan = c.post("/uploads?filename=knee%20MRI.dcm", headers={**rosa, "Content-Type": "application/dicom"},
                      content=bytes(range(256)) * 120).json()
        dana = {"email": "dana@riverside.example", "name": "Dana Whitfield"}
        omar = {"email": "omar@riverside.example", "name": "Omar Haddad"}
        for key, payload in [
            ("lab", {"to": [dana], "cc": [omar], "subject": "Lab results for J. Alvarez",
                     "body_text": "HbA1c is back within range. The MRI of the left knee shows no tear.",
                     "attachments": [lab["id"], scan["id"]]}),
            ("referral", {"to": [dana], "cc": [omar], "bcc": [{"email": REFUSED, "name": "Partner Lab"}],
                          "subject": "Referral: Mr. Patel",
                          "body_text": "Please see the referral letter for Mr. Patel."}),
        ]:
            r = c.post("/messages", json=payload, headers={**rosa, "Idempotency-Key": uuid.uuid4().hex})
            assert r.status_code == 201, r.text
            ids[key] = r.json()["id"]
    yield process, ids
    process.stop(TEARDOWN_STOP_SECONDS)
    sink.stop()


def app_for(clinic, email: str, folder: Path) -> PenmailApp:
    process, _ = clinic
    config = Config(server=process.url, ca_file=Path(process.ca_file), email=email, download_dir=folder)
    return PenmailApp(config, env={"PENMAIL_PASSWORD": PASSWORD}, use_keyring=False)


async def signed_in(pilot) -> None:
    await wait_for(pilot, lambda: at_mailbox(pilot.app))
    await pilot.pause()


@pytest.mark.parametrize("size", SIZES)
def test_reader_attachments_with_a_download(snap_compare, clinic, size, tmp_path, monkeypatch):
    monkeypatch.setenv("PENMAIL_STATE_DIR", str(tmp_path / "state"))
    _, ids = clinic

    async def downloading(pilot):
        app = pilot.app
        await signed_in(pilot)
        app.open_message(await app.session.client.get_message(ids["lab"]))
        await wait_for(pilot, lambda: isinstance(app.screen, ReaderScreen) and app.screen.body_shown)
        reader = app.screen
        listing = reader.query_one(ReaderAttachmentList)
        # The first one saved for real; the second held mid-way by the wrapped client.
        await pilot.press("s")
        await wait_for(pilot, lambda: listing.saved and not reader.downloading)
        gate, held_up, _ = gated_downloads(app.session.client, pause_after=1, monkeypatch=monkeypatch)
        await pilot.press("j", "s")  # the message opened on its files: j to the second
        await wait_for(pilot, lambda: held_up.is_set() and reader.downloading)
        panel = reader.query_one(DownloadPanel)
        panel.show_progress(Progress(done=12_288, total=30_720, bytes_per_second=4096.0, seconds_left=4.5,
                                     filename="knee MRI.dcm"))
        reader.say("")
        await pilot.pause()

    assert snap_compare(app_for(clinic, "dana@riverside.example", tmp_path), terminal_size=size,
                        run_before=downloading)


@pytest.mark.parametrize("size", SIZES)
def test_notification_status_view(snap_compare, clinic, size, tmp_path, monkeypatch):
    monkeypatch.setenv("PENMAIL_STATE_DIR", str(tmp_path / "state"))
    _, ids = clinic
    final = {"dana@riverside.example": "sent", "omar@riverside.example": "sent", REFUSED: "failed"}

    async def statuses(pilot):
        app = pilot.app
        await signed_in(pilot)
        app.show_notifications(ids["referral"], "Referral: Mr. Patel")
        await wait_for(pilot, lambda: isinstance(app.screen, NotificationsScreen) and app.screen.loaded)
        screen = app.screen
        table = screen.query_one(NotificationTable)

        asked = [time.monotonic()]

        def settled() -> bool:
            if {n.recipient.email: n.status for n in table.items} == final:
                return True
            if time.monotonic() - asked[0] > 1.0:  # deliveries may end before the view opens
                asked[0] = time.monotonic()
                screen.action_reload()
            return False

        await wait_for(pilot, settled, timeout=30)
        await pilot.pause(0.3)

    assert snap_compare(app_for(clinic, "rosa@riverside.example", tmp_path), terminal_size=size,
                        run_before=statuses)
