"""The notice history: every toast also goes to a bounded list that N opens, newest first,
the cursor on the newest, each with its time and its severity as a word; the text of each
reaches the screen through tui/safe_text.py (a notice can carry a server's words)."""

from __future__ import annotations

from datetime import datetime

import pytest

from tests.conftest import PASSWORD
from tests.tui_helpers import assert_clean_render, at_mailbox, config_for, rendered, wait_for
from tui.app import PenmailApp
from tui.notices import MAX_NOTICES, NoticeLog
from tui.screens.notices import NoticesScreen, notice_row
from tui.widgets.message_list import MessageList


def test_the_log_keeps_the_newest_two_hundred_newest_first():
    log = NoticeLog()
    for n in range(MAX_NOTICES + 50):
        log.add(f"notice {n}")
    shown = log.newest_first()
    assert len(shown) == MAX_NOTICES == 200
    assert shown[0].text == f"notice {MAX_NOTICES + 49}" and shown[-1].text == "notice 50"


def test_a_row_says_time_severity_in_a_word_title_and_text():
    log = NoticeLog()
    notice = log.add("The draft could not be saved.", title="Draft", severity="error",
                     at=datetime(2026, 1, 15, 9, 30, 5))
    assert notice_row(notice) == "09:30:05  error    Draft: The draft could not be saved."
    assert notice_row(log.add("Saved.", at=datetime(2026, 1, 15, 9, 31))).startswith("09:31:00  note     Saved.")


@pytest.fixture
def state(tmp_path, monkeypatch):
    monkeypatch.setenv("PENMAIL_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("PENMAIL_PASSWORD", raising=False)
    return tmp_path


async def test_n_shows_every_toast_newest_first_with_the_cursor_on_the_newest(pen, state, hostile):
    app = PenmailApp(config_for(pen, tmp=state), env={"PENMAIL_PASSWORD": PASSWORD}, use_keyring=False)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: at_mailbox(app) and app.screen.query_one(MessageList).loaded_once)
        mailbox = app.screen
        texts = [v for k, v in hostile["text"].items() if not k.startswith("_")][:8]
        for text in texts:
            app.toast(text, title="Server", severity="warning")
        app.toast("The draft was discarded.", title="Draft")
        app.notify("[b]ctrl+q[/b] quits")  # Textual's own, in markup: its words are kept
        await pilot.press("N")
        await wait_for(pilot, lambda: isinstance(app.screen, NoticesScreen))
        await pilot.pause()
        screen = app.screen
        listing = screen.query_one("#notices-list")
        assert app.focused is listing and listing.highlighted == 0
        lines = rendered(app)[0].splitlines()
        newest = lines[app.cursor_position.y]
        assert "note" in newest and "ctrl+q quits" in newest and "[b]" not in newest, newest
        text = assert_clean_render(app)
        assert "Draft: The draft was discarded." in text
        assert text.index("ctrl+q quits") < text.index("Draft: The draft was discarded.")  # newest first
        assert "warning  Server:" in text
        assert f"{len(screen.notices)} said so far" in text
        await pilot.press("j")
        await pilot.pause()
        assert "Draft: The draft was discarded." in rendered(app)[0].splitlines()[app.cursor_position.y]
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is mailbox)
        assert app.focused is mailbox.query_one(MessageList)
