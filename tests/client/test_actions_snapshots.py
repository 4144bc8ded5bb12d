"""Snapshots of tagged rows in the mailbox, the Drafts folder and the question before a
delete for good, at 80x24 and 120x40, on the fixed-clock PEN of test_snapshots. Review a
changed SVG row by row before `--snapshot-update`."""

from __future__ import annotations

import json

import pytest

from tests.client.test_compose_snapshots import mailbox_loaded
from tests.client.test_snapshots import SIZES, signed_in_app
from tests.tui_helpers import at_mailbox, wait_for
from tui.drafts import Draft, DraftStore
from tui.screens.drafts import DraftsScreen
from tui.widgets.message_list import MessageList

pytestmark = pytest.mark.usefixtures("utc")  # dates as the snapshots show them


@pytest.mark.parametrize("size", SIZES)
def test_tagged_rows(snap_compare, snap_pen, size, tmp_path, monkeypatch):
    monkeypatch.setenv("PENMAIL_STATE_DIR", str(tmp_path))

    async def tag_two(pilot):
        app = pilot.app
        await wait_for(pilot, lambda: at_mailbox(app) and mailbox_loaded(app))
        await pilot.press("t", "j", "t")  # the first and the third row; the cursor on the fourth
        messages = app.screen.query_one(MessageList)
        await wait_for(pilot, lambda: len(messages.tagged) == 2 and messages.cursor == 3)
        await pilot.pause()

    assert snap_compare(signed_in_app(snap_pen, tmp_path), terminal_size=size, run_before=tag_two)


@pytest.mark.parametrize("size", SIZES)
def test_drafts_folder(snap_compare, snap_pen, size, tmp_path, monkeypatch):
    monkeypatch.setenv("PENMAIL_STATE_DIR", str(tmp_path))
    DraftStore(tmp_path / "drafts")  # makes the folder
    for n, (subject, to, cc) in enumerate([
            ("Rota for March", ["Omar Haddad <omar@riverside.example>"], []),
            ("Re: Referral: Mr. Patel", ["Dr. Rosa Ruiz <rosa@riverside.example>"], ["omar@riverside.example"]),
            ("", [], [])]):
        draft = Draft(to=to, cc=cc, subject=subject, body="...", updated_at=f"2020-01-15T09:{40 + n}:00Z")
        (tmp_path / "drafts" / f"{draft.id}.json").write_text(json.dumps(draft.to_dict()))  # fixed times

    async def drafts(pilot):
        app = pilot.app
        await wait_for(pilot, lambda: isinstance(app.screen, DraftsScreen) and mailbox_loaded(app))
        await pilot.press("escape", "5")
        mailbox = app.mailbox()
        messages = mailbox.query_one(MessageList)
        await wait_for(pilot, lambda: mailbox.folder == "drafts" and messages.total == 3
                       and messages.highlighted is not None and mailbox.folder_counts.get("drafts") == 3)
        await pilot.press("j")
        await pilot.pause()

    assert snap_compare(signed_in_app(snap_pen, tmp_path), terminal_size=size, run_before=drafts)


@pytest.mark.parametrize("size", SIZES)
def test_delete_for_good_asks(snap_compare, snap_pen, size, tmp_path, monkeypatch):
    monkeypatch.setenv("PENMAIL_STATE_DIR", str(tmp_path))
    DraftStore(tmp_path / "drafts")
    draft = Draft(to=["omar@riverside.example"], subject="Rota for March", body="...",
                  updated_at="2020-01-15T09:40:00Z")
    (tmp_path / "drafts" / f"{draft.id}.json").write_text(json.dumps(draft.to_dict()))

    async def ask(pilot):
        from tui.screens.confirm import ConfirmScreen

        app = pilot.app
        await wait_for(pilot, lambda: isinstance(app.screen, DraftsScreen) and mailbox_loaded(app))
        await pilot.press("escape", "5")
        mailbox = app.mailbox()
        messages = mailbox.query_one(MessageList)
        await wait_for(pilot, lambda: mailbox.folder == "drafts" and messages.highlighted is not None)
        await pilot.press("d")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.pause()

    assert snap_compare(signed_in_app(snap_pen, tmp_path), terminal_size=size, run_before=ask)
