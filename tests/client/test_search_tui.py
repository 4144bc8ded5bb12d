"""Search in the TUI against the real PEN: `/` sends the search language as q, the title
counts what the list shows, a search the PEN cannot read says so under the field and keeps
the typed text there."""

from __future__ import annotations

import re
import uuid

import pytest

from tests.client.test_credentials import MemoryKeyring
from tests.conftest import PASSWORD
from tests.tui_helpers import at_mailbox, config_for, rendered, using_keyring, wait_for
from tui.app import PenmailApp
from tui.widgets.message_list import MessageList


@pytest.fixture
def keyring_in_memory():
    with using_keyring(MemoryKeyring()) as backend:
        yield backend


@pytest.fixture
def cat_app(pen, tmp_path, monkeypatch, keyring_in_memory) -> PenmailApp:
    monkeypatch.setenv("PENMAIL_STATE_DIR", str(tmp_path / "state"))
    return PenmailApp(config_for(pen, "cat@abc.example", tmp=tmp_path), env={"PENMAIL_PASSWORD": PASSWORD})


def title(app) -> str:
    return app.screen.query_one("#mailbox-title").render().plain


def inbox_total(pen, who: str = "cat") -> int:
    with pen.as_user(who) as c:
        return next(f["total"] for f in c.get("/folders").json()["items"] if f["name"] == "inbox")


async def test_search_language_and_the_title_counts_what_is_shown(pen, send, cat_app):
    tag = uuid.uuid4().hex[:8]
    wanted = [send("bob", ["cat"], subject=f"{tag} scan {i}")["id"] for i in range(2)]
    send("ann", ["cat"], subject=f"{tag} other")
    app = cat_app
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: at_mailbox(app))
        messages = app.screen.query_one(MessageList)
        await pilot.press("slash")
        await wait_for(pilot, lambda: "has:attachment" in rendered(app)[0])  # the keys, under the field
        await pilot.press(*f"{tag} from:bob", "enter")
        await wait_for(pilot, lambda: "match" in title(app) and messages.total == 2)
        found = re.search(r"Inbox: 2 of (\d+) messages match (.*)$", title(app).strip())
        assert found, title(app)
        assert int(found.group(1)) == inbox_total(pen) and found.group(2) == f"{tag} from:bob"
        assert {messages.summary_at(i).id for i in range(2)} == set(wanted)

        # None: the title says so, never the folder's count over an empty list.
        await pilot.press("slash", "end", *" subject:nothing-here", "enter")  # the text is kept, selected
        await wait_for(pilot, lambda: "no messages match" in title(app))
        assert title(app).strip().endswith(f"Inbox: no messages match {tag} from:bob subject:nothing-here")
        await wait_for(pilot, lambda: "(no messages match)" in rendered(app)[0])
        assert "(no messages here)" not in rendered(app)[0] and "messages)" not in title(app)


async def test_a_search_the_pen_cannot_read_is_said_under_the_field(pen, send, cat_app):
    tag = uuid.uuid4().hex[:8]
    send("bob", ["cat"], subject=f"{tag} first")
    app = cat_app
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: at_mailbox(app))
        messages = app.screen.query_one(MessageList)
        await pilot.press("slash", *tag, "enter")
        await wait_for(pilot, lambda: "1 of" in title(app) and messages.total == 1)
        await pilot.press("slash", "ctrl+u", *"frm:ann", "enter")  # ctrl+u: Input's delete to start
        search = app.screen.query_one("#search")
        await wait_for(pilot, lambda: '"frm:" is not a search key' in rendered(app)[0])
        note = app.screen.query_one("#search-note")
        assert '"frm:" is not a search key' in note.render().plain and note.has_class("-refused")
        assert search.value == "frm:ann" and app.focused is search and search.cursor_position == 7
        # The list and the title stay on the search before, which the PEN read.
        await wait_for(pilot, lambda: messages.total == 1 and title(app).rstrip().endswith(f"matches {tag}"))
        assert re.search(r"Inbox: 1 of \d+ messages matches " + tag, title(app)), title(app)
        # Corrected in place: the note is the keys again.
        await pilot.press("ctrl+u", *f"from:bob {tag}", "enter")
        await wait_for(pilot, lambda: f"matches from:bob {tag}" in title(app))
        assert not note.has_class("-refused") and "has:attachment" in note.render().plain
        assert "is not a search key" not in rendered(app)[0]  # nor in the status line
        await pilot.press("escape")
        await wait_for(pilot, lambda: "match" not in title(app) and not search.display)


async def test_a_search_typed_in_one_burst_is_read_or_refused_whole(pen, send, cat_app):
    """`/`, the search and Enter in one burst (a paste, a macro, SSH): the whole text reaches
    the field and the PEN; a refused one is still there to correct."""
    from tests.tui_helpers import burst

    tag = uuid.uuid4().hex[:8]
    send("bob", ["cat"], subject=f"{tag} burst")
    app = cat_app
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: at_mailbox(app) and app.screen.query_one(MessageList).loaded_once)
        messages = app.screen.query_one(MessageList)
        burst(app, f"/from:bob {tag}<enter>")
        await wait_for(pilot, lambda: messages.total == 1 and f"matches from:bob {tag}" in title(app))
        burst(app, "/<ctrl+u>subject:x frm:bob<enter>")
        await wait_for(pilot, lambda: '"frm:" is not a search key' in rendered(app)[0])
        assert app.screen.query_one("#search").value == "subject:x frm:bob"


async def test_clearing_a_refused_search_clears_its_sentence(pen, send, cat_app):
    """A refused search, then Escape: the field, its note and the status line all let go of
    the PEN's sentence (the status line kept it before)."""
    app = cat_app
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: at_mailbox(app))
        await pilot.press("slash", *"frm:ann", "enter")
        await wait_for(pilot, lambda: '"frm:" is not a search key' in rendered(app)[0])
        await pilot.press("escape")
        search = app.screen.query_one("#search")
        await wait_for(pilot, lambda: not search.display)
        await pilot.pause()
        assert "is not a search key" not in rendered(app)[0]
