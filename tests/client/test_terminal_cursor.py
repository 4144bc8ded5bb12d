"""The terminal cursor is on the highlighted thing (screen readers and braille displays
follow it): the app's one rule (tui/terminal/cursor.py) puts it, at each draw, on the focused
list's highlighted row or the focused field's text cursor. One test a case from issue 10."""

from __future__ import annotations

from textual.widgets import Input

from tests.client.test_compose_tui import app_for, drafts, open_compose, state, tag  # noqa: F401 (fixture)
from tests.client.test_reader_attachments import open_reader, upload_as
from tests.tui_helpers import rendered, wait_for
from tui.drafts import Draft, account_key
from tui.screens.drafts import DraftsScreen
from tui.widgets.attachments import AttachmentList
from tui.widgets.reader_attachments import ReaderAttachmentList


def cursor_line(app) -> str:
    return rendered(app)[0].splitlines()[app.cursor_position.y]


async def test_a_message_with_attachments_opens_with_the_cursor_on_the_highlighted_file(pen, send, state):
    atts = upload_as(pen, "ann", [("records_ortiz.pdf", b"%PDF-1.4\n" * 20), ("notes.txt", b"notes\n")])
    sent = send("ann", ["bob"], subject=f"Records {tag()}", attachments=[a["id"] for a in atts])
    app = app_for(pen, state, "bob@abc.example")
    async with app.run_test(size=(100, 30)) as pilot:
        reader = await open_reader(pilot, sent)
        listing = reader.query_one(ReaderAttachmentList)
        await wait_for(pilot, lambda: app.focused is listing)
        await pilot.pause()
        assert cursor_line(app).lstrip().startswith("> 1. records_ortiz.pdf"), cursor_line(app)
        assert app.cursor_position.x == listing.content_region.x
        await pilot.press("j")
        await pilot.pause()
        assert cursor_line(app).lstrip().startswith("> 2. notes.txt"), cursor_line(app)
        await pilot.press("tab")  # the text: the cursor follows to the body
        await pilot.pause()
        assert app.focused.id == "body" and reader.query_one("#body").content_region.contains_point(app.cursor_position)


async def test_the_drafts_dialog_at_sign_in_has_the_cursor_on_its_highlighted_row(pen, state):
    subject = f"Unfinished {tag()}"
    drafts(state).save(Draft(to=["cat@abc.example"], subject=subject, account=account_key(pen.process.url,
                                                                                           "ann@abc.example")))
    app = app_for(pen, state)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, DraftsScreen) and subject in rendered(app)[0])
        listing = app.screen.query_one("#drafts-list")
        await wait_for(pilot, lambda: app.focused is listing)
        await pilot.pause()
        assert subject in cursor_line(app), cursor_line(app)
        assert listing.content_region.contains_point(app.cursor_position)


async def test_tab_to_compose_attachments_and_f3_put_the_cursor_on_them(pen, state):
    path = state / "agenda.txt"
    path.write_text("agenda\n")
    app = app_for(pen, state)
    async with app.run_test(size=(100, 30)) as pilot:
        compose = await open_compose(pilot)
        # F3's field: the cursor at the field's text cursor (after the label), not column 0.
        await pilot.press("f3")
        field = compose.query_one("#compose-path", Input)
        await wait_for(pilot, lambda: app.focused is field)
        await pilot.pause()
        start = app.cursor_position
        assert start == (field.content_region.x, field.content_region.y)  # where the path will go
        assert start.x > len(" Attach:")
        await pilot.press(*str(path))
        await pilot.pause()
        assert app.cursor_position == (start.x + len(str(path)), start.y)  # at the end of the text
        await pilot.press("enter")
        listing = compose.query_one(AttachmentList)
        await wait_for(pilot, lambda: listing.display and listing.entries and "ready" in rendered(app)[0])
        # Tab from Subject to the list of files: the cursor on the highlighted file's row.
        await pilot.press("shift+tab", "shift+tab")  # from the body, back to Subject
        await wait_for(pilot, lambda: app.focused is compose.query_one("#subject"))
        await pilot.press("tab")
        await wait_for(pilot, lambda: app.focused is listing)
        await pilot.pause()
        assert "agenda.txt" in cursor_line(app), cursor_line(app)
        assert listing.content_region.contains_point(app.cursor_position)
