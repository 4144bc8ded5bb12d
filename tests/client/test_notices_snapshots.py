"""Snapshots of the notice history (N) at 80x24 and 120x40: fixed times, one notice of each
severity, a long one that wraps, and one carrying markup that must show as typed."""

from __future__ import annotations

from datetime import datetime

import pytest

from tests.client.test_snapshots import SIZES, mailbox_ready, signed_in_app
from tests.tui_helpers import wait_for
from tui.notices import NoticeLog
from tui.screens.notices import NoticesScreen


@pytest.mark.parametrize("size", SIZES)
def test_notice_history(snap_compare, snap_pen, size, tmp_path, monkeypatch):
    monkeypatch.setenv("PENMAIL_STATE_DIR", str(tmp_path))

    async def history(pilot):
        app = pilot.app
        await mailbox_ready(pilot)
        app.notices = NoticeLog()  # only the fixed ones below: the times are the snapshot's
        said = [
            ("information", "Draft", "The draft \u201cLab results\u201d is kept; it is offered again when you next "
                                     "sign in."),
            ("warning", "Sign-out", "The PEN did not answer; the remembered sign-in was removed here anyway."),
            ("error", "Open", "[b]Not markup[/b]: the message could not be fetched (timeout); try again."),
            ("information", "", "Moved to archive."),
        ]
        for minute, (severity, title, text) in enumerate(said):
            app.notices.add(text, title=title, severity=severity, at=datetime(2026, 1, 15, 9, 30 + minute, 5))
        await pilot.press("N")
        await wait_for(pilot, lambda: isinstance(app.screen, NoticesScreen))
        await pilot.pause()

    assert snap_compare(signed_in_app(snap_pen, tmp_path), terminal_size=size, run_before=history)
