"""The mailbox, the reader and compose at 80x24 in the light and dark themes, the
high-contrast theme, and with NO_COLOR (Textual reads it when the App is constructed and
turns every colour to grey): the highlighted row must still be told apart (">" and bold
or reverse), and unread, attachments and failures by letters and words. Same fixed-clock
PEN as tests/client/test_snapshots.py. Review a changed SVG before `--snapshot-update`."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.client.test_snapshots import mailbox_ready
from tests.conftest import PASSWORD
from tests.tui_helpers import wait_for
from tui.app import PenmailApp
from tui.config import Config
from tui.screens.compose import ComposeScreen
from tui.screens.reader import ReaderScreen

pytestmark = pytest.mark.usefixtures("utc")  # dates as the snapshots show them
THEMES = ["textual-light", "textual-dark", "high-contrast", "no-color"]


def themed_app(snap_pen, tmp_path, theme: str, monkeypatch) -> PenmailApp:
    monkeypatch.setenv("PENMAIL_STATE_DIR", str(tmp_path))
    if theme == "no-color":
        monkeypatch.setenv("NO_COLOR", "1")  # read by App.__init__
        theme = "textual-dark"
    else:
        monkeypatch.delenv("NO_COLOR", raising=False)
    config = Config(server=snap_pen.url, ca_file=Path(snap_pen.ca_file), email="dana@riverside.example",
                    download_dir=tmp_path, theme=theme)
    app = PenmailApp(config, env={"PENMAIL_PASSWORD": PASSWORD}, use_keyring=False)
    return app


@pytest.mark.parametrize("theme", THEMES)
def test_mailbox_in_theme(snap_compare, snap_pen, theme, tmp_path, monkeypatch):
    app = themed_app(snap_pen, tmp_path, theme, monkeypatch)
    assert app.no_color == (theme == "no-color")
    assert snap_compare(app, terminal_size=(80, 24), run_before=mailbox_ready)


@pytest.mark.parametrize("theme", THEMES)
def test_reader_in_theme(snap_compare, snap_pen, theme, tmp_path, monkeypatch):
    async def open_first(pilot):
        await mailbox_ready(pilot)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, ReaderScreen) and pilot.app.screen.body_shown)
        await pilot.press("shift+tab")  # the attachment list, to see its highlighted row
        await pilot.pause()

    assert snap_compare(themed_app(snap_pen, tmp_path, theme, monkeypatch), terminal_size=(80, 24),
                        run_before=open_first)


@pytest.mark.parametrize("theme", THEMES)
def test_compose_in_theme(snap_compare, snap_pen, theme, tmp_path, monkeypatch):
    async def compose(pilot):
        await mailbox_ready(pilot)
        await pilot.press("c")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, ComposeScreen) and pilot.app.focused is not None)
        await pilot.press(*"rosa@riverside.example", "tab", "tab", "tab", *"Rota", "tab", *"Monday works.")
        # Saved now (F2) rather than by the autosave a moment later, so the title is always the same.
        await pilot.press("f2")
        await wait_for(pilot, lambda: "(draft saved)" in str(pilot.app.screen.query_one("#compose-title").render()))
        await pilot.pause()

    assert snap_compare(themed_app(snap_pen, tmp_path, theme, monkeypatch), terminal_size=(80, 24),
                        run_before=compose)
