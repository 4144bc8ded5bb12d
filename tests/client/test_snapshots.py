"""Snapshots of every screen at 80x24 and 120x40, against a real PEN whose clock is fixed
(PEN_CLOCK), so that dates are the same on every run. Review a changed SVG in the report
before `--snapshot-update`."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import PASSWORD
from tests.tui_helpers import at_mailbox, wait_for
from tui.app import PenmailApp
from tui.config import Config
from tui.screens.reader import ReaderScreen
from tui.widgets.message_list import MessageList

SIZES = [(80, 24), (120, 40)]
pytestmark = pytest.mark.usefixtures("utc")  # dates as the snapshots show them


def signed_in_app(snap_pen, tmp_path) -> PenmailApp:
    config = Config(server=snap_pen.url, ca_file=Path(snap_pen.ca_file), email="dana@riverside.example",
                    download_dir=tmp_path)
    return PenmailApp(config, env={"PENMAIL_PASSWORD": PASSWORD}, use_keyring=False)


async def mailbox_ready(pilot) -> None:
    app = pilot.app
    await wait_for(pilot, lambda: at_mailbox(app) and app.screen.query(MessageList)
                   and app.screen.query_one(MessageList).highlighted is not None
                   and {"inbox", "drafts"} <= set(app.screen.folder_counts))  # the sidebar's counts came too
    await pilot.pause()


@pytest.mark.parametrize("size", SIZES)
def test_sign_in_screen(snap_compare, size, tmp_path, monkeypatch):
    monkeypatch.setenv("PENMAIL_STATE_DIR", str(tmp_path))
    app = PenmailApp(Config(server="https://pen.riverside.example", email="dana@riverside.example"), env={},
                     use_keyring=False)
    assert snap_compare(app, terminal_size=size, press=["_"])


@pytest.mark.parametrize("size", SIZES)
def test_sign_in_screen_with_the_demo_hint_and_its_notices(snap_compare, size, tmp_path, monkeypatch):
    """The fullest sign-in screen (the demo's hint, an error and a notice, as after a sign-out
    with a draft kept): every field and the button are on the screen at 80x24 too."""
    from tui.demo import sign_in_hint

    monkeypatch.setenv("PENMAIL_STATE_DIR", str(tmp_path))
    app = PenmailApp(Config(), env={}, use_keyring=False,
                     sign_in_hint=sign_in_hint() + " Ctrl+G shows a guest's link for a browser.")

    async def with_notices(pilot):
        app.switch_screen(app.sign_in_screen(
            error="The certificate of 127.0.0.1:8443 is not trusted; set ca_file to the PEN's CA certificate.",
            notice="You are signed out; the remembered sign-in was removed. The draft \u201cPlan\u201d is kept."))
        await wait_for(pilot, lambda: app.screen.query("#submit"))
        await pilot.pause()
        button = app.screen.query_one("#submit")
        assert button.region.bottom <= size[1] - 1, button.region  # above the footer, not cut

    assert snap_compare(app, terminal_size=size, run_before=with_notices)


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
