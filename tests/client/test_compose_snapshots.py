"""Snapshots of the compose screen (a reply to all, and a forward with its attachments) and
of the drafts offered after sign-in, at 80x24 and 120x40, on the fixed-clock PEN of
test_snapshots. Review a changed SVG (rsvg-convert it to PNG and look) before
`--snapshot-update`."""

from __future__ import annotations

import json

import pytest

from tests.client.test_snapshots import SIZES, signed_in_app
from tests.tui_helpers import at_mailbox, wait_for
from tui.drafts import Draft, DraftStore
from tui.screens.compose import ComposeScreen
from tui.screens.drafts import DraftsScreen
from tui.screens.reader import ReaderScreen
from tui.widgets.message_list import MessageList

pytestmark = pytest.mark.usefixtures("utc")  # dates as the snapshots show them


def mailbox_loaded(app) -> bool:
    """The mailbox's first row is highlighted (querying before its list is mounted finds nothing)."""
    mailbox = app.mailbox()
    lists = mailbox.query(MessageList) if mailbox is not None else None
    return bool(lists) and lists.first().highlighted is not None and {"inbox", "drafts"} <= set(mailbox.folder_counts)


def compose_from_reader(key: str, focused: str):
    async def run_before(pilot):
        app = pilot.app
        await wait_for(pilot, lambda: at_mailbox(app) and mailbox_loaded(app))
        await pilot.pause()
        await pilot.press("enter")  # the newest: lab results from Dr. Rosa Ruiz, with two attachments
        await wait_for(pilot, lambda: isinstance(app.screen, ReaderScreen) and app.screen.body_shown)
        await pilot.press(key)
        await wait_for(pilot, lambda: isinstance(app.screen, ComposeScreen) and app.screen.book is not None
                       and app.focused is not None and app.focused.id == focused)
        await pilot.pause()

    return run_before


@pytest.mark.parametrize("size", SIZES)
def test_compose_reply_all(snap_compare, snap_pen, size, tmp_path, monkeypatch):
    monkeypatch.setenv("PENMAIL_STATE_DIR", str(tmp_path))
    assert snap_compare(signed_in_app(snap_pen, tmp_path), terminal_size=size,
                        run_before=compose_from_reader("R", "compose-body"))


@pytest.mark.parametrize("size", SIZES)
def test_compose_forward(snap_compare, snap_pen, size, tmp_path, monkeypatch):
    monkeypatch.setenv("PENMAIL_STATE_DIR", str(tmp_path))
    assert snap_compare(signed_in_app(snap_pen, tmp_path), terminal_size=size,
                        run_before=compose_from_reader("f", "to"))


@pytest.mark.parametrize("size", SIZES)
def test_drafts_offered_after_sign_in(snap_compare, snap_pen, size, tmp_path, monkeypatch):
    monkeypatch.setenv("PENMAIL_STATE_DIR", str(tmp_path))
    DraftStore(tmp_path / "drafts")  # makes the folder
    for n, (subject, to) in enumerate([("Rota for March", ["omar@riverside.example"]),
                                       ("Re: Referral: Mr. Patel", ["Dr. Rosa Ruiz <rosa@riverside.example>"])]):
        draft = Draft(to=to, subject=subject, body="...", updated_at=f"2020-01-15T09:{40 + n}:00Z")  # fixed times
        (tmp_path / "drafts" / f"{draft.id}.json").write_text(json.dumps(draft.to_dict()))

    async def offered(pilot):
        app = pilot.app
        await wait_for(pilot, lambda: isinstance(app.screen, DraftsScreen) and mailbox_loaded(app))
        await pilot.pause()

    assert snap_compare(signed_in_app(snap_pen, tmp_path), terminal_size=size, run_before=offered)
