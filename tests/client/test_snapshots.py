"""Snapshots of every screen at 80x24 and 120x40, against a real PEN whose clock is fixed
(PEN_CLOCK), so that dates are the same on every run. Review a changed SVG in the report
before `--snapshot-update`."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import httpx
import pytest

from pen_devstack import PenProcess, SmtpSink, add_user, free_port, init_pen, set_package
from tests.conftest import PASSWORD
from tests.tui_helpers import at_mailbox, wait_for
from tui.app import PenmailApp
from tui.config import Config
from tui.screens.reader import ReaderScreen
from tui.widgets.message_list import MessageList

SIZES = [(80, 24), (120, 40)]
os.environ["TZ"] = "UTC"
time.tzset()


@pytest.fixture(scope="module")
def snap_pen(tmp_path_factory):
    """A small clinic mailbox with fixed times (15 Jan 2020, 09:30 UTC)."""
    root = tmp_path_factory.mktemp("snap-pen")
    sink = SmtpSink().start()
    port = free_port()
    init_pen(root, footer="Sent by Riverside Clinic", port=port)
    set_package(root, "staff", "Confidential.")
    people = [("dana@riverside.example", "Dana Whitfield"), ("rosa@riverside.example", "Dr. Rosa Ruiz"),
              ("omar@riverside.example", "Omar Haddad")]
    for email, name in people:
        add_user(root, email, name, PASSWORD, package="staff")
    process = PenProcess(root, port, smtp_port=sink.port, env={"PEN_CLOCK": "2020-01-15T09:30:00Z"}).start()
    with httpx.Client(base_url=process.api, verify=str(process.ca_file), timeout=30) as c:
        def as_(email):
            tok = c.post("/auth/login", json={"email": email, "password": PASSWORD}).json()["access_token"]
            return {"Authorization": f"Bearer {tok}"}

        rosa, omar = as_("rosa@riverside.example"), as_("omar@riverside.example")
        lab = c.post("/uploads?filename=lab-results.csv", headers={**rosa, "Content-Type": "text/csv"},
                     content=b"test,value,unit\nHbA1c,5.4,%\n" * 40).json()
        scan = c.post("/uploads?filename=knee%20MRI.dcm", headers={**rosa, "Content-Type": "application/dicom"},
                      content=bytes(range(256)) * 120).json()
        msgs = [
            (omar, "Rota for February", "Here is the draft rota for February. Shout if a day does not work.", None, []),
            (rosa, "Referral: Mr. Patel", "Please see the referral letter for Mr. Patel; his GP asked for a "
                                          "follow-up within two weeks.", None, []),
            (omar, "Clinic closed on Friday", "The clinic is closed this Friday for the fire drill.", None, []),
            (rosa, "Lab results for J. Alvarez",
             "HbA1c is back within range. The MRI of the left knee shows no tear.",
             "<p>HbA1c is back <b>within range</b>.</p><ul><li>MRI: no tear</li><li>Next visit: March</li></ul>"
             "<p>Guidelines: <a href='https://www.example.org/guidelines'>clinic guidelines</a></p>",
             [lab["id"], scan["id"]]),
        ]
        for headers, subject, body, html, atts in msgs:
            payload = {"to": [{"email": "dana@riverside.example", "name": "Dana Whitfield"}],
                       "cc": [{"email": "omar@riverside.example", "name": "Omar Haddad"}] if headers is rosa else [],
                       "subject": subject, "body_text": body, "attachments": atts}
            if html:
                payload["body_html"] = html
            r = c.post("/messages", json=payload, headers={**headers, "Idempotency-Key": uuid.uuid4().hex})
            assert r.status_code == 201, r.text
    yield process
    process.stop()
    sink.stop()


def signed_in_app(snap_pen, tmp_path) -> PenmailApp:
    config = Config(server=snap_pen.url, ca_file=Path(snap_pen.ca_file), email="dana@riverside.example",
                    download_dir=tmp_path)
    return PenmailApp(config, env={"PENMAIL_PASSWORD": PASSWORD}, use_keyring=False)


async def mailbox_ready(pilot) -> None:
    app = pilot.app
    await wait_for(pilot, lambda: at_mailbox(app) and app.screen.query(MessageList)
                   and app.screen.query_one(MessageList).highlighted is not None)
    await pilot.pause()


@pytest.mark.parametrize("size", SIZES)
def test_sign_in_screen(snap_compare, size, tmp_path, monkeypatch):
    monkeypatch.setenv("PENMAIL_STATE_DIR", str(tmp_path))
    app = PenmailApp(Config(server="https://pen.riverside.example", email="dana@riverside.example"), env={},
                     use_keyring=False)
    assert snap_compare(app, terminal_size=size, press=["_"])


@pytest.mark.parametrize("size", SIZES)
def test_mailbox_screen(snap_compare, snap_pen, size, tmp_path, monkeypatch):
    monkeypatch.setenv("PENMAIL_STATE_DIR", str(tmp_path))
    assert snap_compare(signed_in_app(snap_pen, tmp_path), terminal_size=size, run_before=mailbox_ready)


@pytest.mark.parametrize("size", SIZES)
def test_reader_screen(snap_compare, snap_pen, size, tmp_path, monkeypatch):
    monkeypatch.setenv("PENMAIL_STATE_DIR", str(tmp_path))

    async def open_first(pilot):
        await mailbox_ready(pilot)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, ReaderScreen) and pilot.app.screen.body_shown)
        await pilot.pause()

    assert snap_compare(signed_in_app(snap_pen, tmp_path), terminal_size=size, run_before=open_first)


@pytest.mark.parametrize("size", SIZES)
def test_help_screen(snap_compare, snap_pen, size, tmp_path, monkeypatch):
    monkeypatch.setenv("PENMAIL_STATE_DIR", str(tmp_path))

    async def help_(pilot):
        await mailbox_ready(pilot)
        await pilot.press("f1")
        await pilot.pause()

    assert snap_compare(signed_in_app(snap_pen, tmp_path), terminal_size=size, run_before=help_)
