"""penmail without a mouse: every user flow by key presses alone against the real server
(sign in, folders, search, open, save an attachment, reply, notifications, sign out), with
the terminal cursor on the highlighted row or the focused field at every step; escape backs
out of every screen and dialog; lists take vim keys beside the arrows; no animation and no
blinking cursor by default; keys remapped by binding id in the settings work and show in help."""

from __future__ import annotations

import pytest
from textual import events
from textual.message_pump import MessagePump
from textual.pilot import Pilot
from textual.widget import Widget
from textual.widgets import Input, TextArea

from tests.conftest import PASSWORD
from tests.tui_helpers import at_mailbox, config_for, rendered, wait_for
from tui.app import PenmailApp
from tui.screens.compose import ComposeScreen
from tui.screens.drafts import DraftsScreen
from tui.screens.help import HelpScreen
from tui.screens.mailbox import MailboxScreen
from tui.screens.notifications import NotificationsScreen
from tui.screens.reader import ReaderScreen
from tui.screens.signin import SignInScreen
from tui.widgets.message_list import MessageList
from tui.widgets.notification_table import NotificationTable
from tui.widgets.reader_attachments import ReaderAttachmentList

MOUSE = (events.MouseDown, events.MouseUp, events.Click, events.MouseScrollDown, events.MouseScrollUp)


@pytest.fixture
def state(tmp_path, monkeypatch):
    monkeypatch.setenv("PENMAIL_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("PENMAIL_PASSWORD", raising=False)
    return tmp_path


@pytest.fixture
def no_mouse(monkeypatch):
    """Any mouse press, release, click or wheel reaching the app fails the test; so does the
    pilot's click (a test of keyboard use must never reach for it)."""
    seen: list = []

    def guard(original):
        def post_message(self, message):
            if isinstance(message, MOUSE):
                seen.append(message)
                raise AssertionError(f"a mouse event reached the app: {message!r}")
            return original(self, message)
        return post_message

    monkeypatch.setattr(MessagePump, "post_message", guard(MessagePump.post_message))
    monkeypatch.setattr(Widget, "post_message", guard(Widget.post_message))

    async def refuse(*a, **kw):
        raise AssertionError("a keyboard-only test used the mouse")

    for name in ("click", "double_click", "triple_click", "mouse_down", "mouse_up", "hover"):
        monkeypatch.setattr(Pilot, name, refuse)
    return seen


def cursor_on_focus(app) -> Widget:
    """Focus is somewhere, and the terminal cursor is inside the focused widget."""
    focused = app.focused
    assert focused is not None, f"nothing has focus on {type(app.screen).__name__}"
    assert focused.content_region.contains_point(app.cursor_position), \
        (type(app.screen).__name__, focused, focused.content_region, app.cursor_position)
    return focused


def cursor_on_row(app, widget, line: int) -> None:
    """The terminal cursor is on `line` (a line of the widget's content, scrolled)."""
    assert app.focused is widget
    assert app.cursor_position.y == widget.content_region.y + line - int(widget.scroll_offset.y), \
        (widget, line, app.cursor_position, widget.content_region)


async def settle(pilot) -> None:
    await pilot.pause()
    await pilot.pause()


def upload_and_send(pen, subject: str, body: str) -> dict:
    import uuid

    with pen.as_user("bob") as c:
        r = c.post("/uploads?filename=scan-results.txt", content=b"keyboard only\n" * 100,
                   headers={"Content-Type": "text/plain"})
        assert r.status_code == 201, r.text
        payload = {"to": [{"email": "ann@abc.example"}], "subject": subject, "body_text": body,
                   "attachments": [r.json()["id"]]}
        r = c.post("/messages", json=payload, headers={"Idempotency-Key": uuid.uuid4().hex})
        assert r.status_code == 201, r.text
        return r.json()


async def test_every_flow_by_keys_alone(pen, state, no_mouse):
    subject = "Keyboard only scan results"
    sent = upload_and_send(pen, subject, "The scan is attached.")
    downloads = state / "downloads"
    downloads.mkdir()
    app = PenmailApp(config_for(pen, tmp=downloads), env={}, use_keyring=False)
    async with app.run_test(size=(100, 30)) as pilot:
        # ---- sign in: the password typed on the sign-in screen
        await wait_for(pilot, lambda: isinstance(app.screen, SignInScreen) and app.focused is not None
                       and app.focused.id == "password")
        await settle(pilot)
        cursor_on_focus(app)
        await pilot.press(*PASSWORD)
        await settle(pilot)
        cursor_on_focus(app)
        await pilot.press("enter")
        # the new mailbox's widgets are there (it is the screen a moment before they are)
        await wait_for(pilot, lambda: at_mailbox(app) and app.screen.client is not None
                       and bool(app.screen.query(MessageList)))
        mailbox = app.screen
        messages = mailbox.query_one(MessageList)
        await wait_for(pilot, lambda: messages.loaded_once and messages.total > 0)
        await settle(pilot)
        cursor_on_row(app, messages, messages.cursor)

        # ---- folders by number, then through the folder list with tab
        await pilot.press("2")
        await wait_for(pilot, lambda: mailbox.folder == "sent")
        await pilot.press("1")
        await wait_for(pilot, lambda: mailbox.folder == "inbox")
        await pilot.press("tab")
        await settle(pilot)
        folders = mailbox.query_one("#folders")
        assert app.focused is folders
        cursor_on_row(app, folders, 0)
        await pilot.press("j", "j")  # vim keys beside the arrows
        await settle(pilot)
        cursor_on_row(app, folders, 2)
        await pilot.press("enter")
        await wait_for(pilot, lambda: mailbox.folder == "archive" and app.focused is messages)
        await pilot.press("shift+tab")
        await settle(pilot)
        assert app.focused is folders
        await pilot.press("k", "k", "enter")
        await wait_for(pilot, lambda: mailbox.folder == "inbox" and app.focused is messages)
        await wait_for(pilot, lambda: messages.loaded_once and messages.total > 0)

        # ---- find with /
        await pilot.press("slash")
        await settle(pilot)
        assert app.focused.id == "search"
        cursor_on_focus(app)
        await pilot.press(*"scan results")
        await settle(pilot)
        cursor_on_focus(app)
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.focused is messages and messages.highlighted is not None
                       and messages.highlighted.id == sent["id"])
        await settle(pilot)
        cursor_on_row(app, messages, messages.cursor)
        line = rendered(app)[0].splitlines()[app.cursor_position.y]
        assert ">" in line and subject in line

        # ---- open, and save the attachment
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ReaderScreen) and app.screen.body_shown)
        reader = app.screen
        await settle(pilot)
        # A message with files opens on their list, the cursor on the highlighted "> 1." row.
        attachments = reader.query_one(ReaderAttachmentList)
        assert app.focused is attachments
        cursor_on_row(app, attachments, 0)
        await pilot.press("s")
        await wait_for(pilot, lambda: (downloads / "scan-results.txt").exists() and not reader.downloading,
                       timeout=30)
        assert (downloads / "scan-results.txt").read_bytes() == b"keyboard only\n" * 100
        await pilot.press("tab")
        await settle(pilot)
        assert app.focused.id == "body"

        # ---- reply: type and send with f9
        await pilot.press("r")
        await wait_for(pilot, lambda: isinstance(app.screen, ComposeScreen) and app.focused is not None)
        compose = app.screen
        await settle(pilot)
        assert app.focused.id == "compose-body"
        cursor_on_focus(app)
        await pilot.press(*"Thanks, got it.")
        await settle(pilot)
        cursor_on_focus(app)
        await pilot.press("f9")

        # ---- the notifications follow the send; the rows reach "sent"
        await wait_for(pilot, lambda: compose not in app.screen_stack and isinstance(app.screen, NotificationsScreen),
                       timeout=30)
        notifications = app.screen
        table = notifications.query_one(NotificationTable)
        await wait_for(pilot, lambda: table.items and all(n.status == "sent" for n in table.items), timeout=45)
        await settle(pilot)
        assert app.focused is table
        cursor_on_focus(app)
        assert app.cursor_position.y == table.content_region.y + table._cursor_line()
        assert " sent " in rendered(app)[0]

        # ---- back out with escape, then sign out with L
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is reader)
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is mailbox)
        await settle(pilot)
        cursor_on_row(app, messages, messages.cursor)
        await pilot.press("L")
        await wait_for(pilot, lambda: isinstance(app.screen, SignInScreen), timeout=20)
        await settle(pilot)
        cursor_on_focus(app)
    assert not no_mouse


def signed_in(pen, state, **over) -> PenmailApp:
    return PenmailApp(config_for(pen, tmp=state, **over), env={"PENMAIL_PASSWORD": PASSWORD}, use_keyring=False)


async def ready(pilot) -> MailboxScreen:
    app = pilot.app
    await wait_for(pilot, lambda: at_mailbox(app) and app.screen.client is not None
                   and app.screen.query_one(MessageList).loaded_once)
    await settle(pilot)
    return app.screen


async def help_lines(pilot) -> list[str]:
    """The lines of F1's help for the screen shown; escape closes it again."""
    app = pilot.app
    screen = app.screen
    await pilot.press("f1")
    await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen))
    lines = app.screen.query_one("#help-keys", TextArea).text.splitlines()
    await pilot.press("escape")
    await wait_for(pilot, lambda: app.screen is screen)
    return lines


async def test_escape_backs_out_of_every_screen_and_dialog(pen, send, state, no_mouse):
    from textual.command import CommandPalette

    from tui.drafts import DraftStore
    from tui.pen_client import Summary

    with pen.as_user("bob") as c:
        r = c.post("/uploads?filename=a.txt", content=b"a", headers={"Content-Type": "text/plain"})
        upload = r.json()["id"]
    subject = "Escape from every dialog"
    received = send("bob", ["ann"], subject=subject, body="See the link.",
                    body_html="<p>See <a href='https://example.org/x'>the link</a>.</p>", attachments=[upload])
    mine = send("ann", ["cat"], subject="Escape from notifications")
    app = signed_in(pen, state)
    async with app.run_test(size=(100, 30)) as pilot:
        mailbox = await ready(pilot)

        async def back_to(screen, focused_id: str | None = None) -> None:
            await pilot.press("escape")
            await wait_for(pilot, lambda: app.screen is screen)
            await settle(pilot)
            if focused_id:
                assert app.focused is not None and app.focused.id == focused_id, app.focused
            cursor_on_focus(app)

        # the command palette and help
        await pilot.press("ctrl+p")
        await wait_for(pilot, lambda: isinstance(app.screen, CommandPalette))
        await back_to(mailbox, "messages")
        await pilot.press("f1")
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen))
        await settle(pilot)
        cursor_on_focus(app)
        await back_to(mailbox, "messages")
        # the search field
        await pilot.press("slash", *"nothing")
        await back_to(mailbox, "messages")
        assert not mailbox.query_one("#search").display

        # the reader, its link prompt and its folder prompt
        app.open_message(Summary.of(received))
        await wait_for(pilot, lambda: isinstance(app.screen, ReaderScreen) and app.screen.body_shown)
        reader = app.screen
        for key, prompt in (("o", "link-number"), ("w", "save-folder")):
            await pilot.press(key)
            await settle(pilot)
            assert app.focused.id == prompt
            cursor_on_focus(app)
            await back_to(reader, "reader-attachments")  # where the message opened (it has a file)
            assert not reader.query_one(f"#{prompt}").display

        # compose: the path prompt, then the screen (the draft is kept)
        await pilot.press("r")
        await wait_for(pilot, lambda: isinstance(app.screen, ComposeScreen) and app.focused is not None)
        compose = app.screen
        await pilot.press(*"Kept by escape.")
        await pilot.press("f3")
        await settle(pilot)
        assert app.focused.id == "compose-path"
        cursor_on_focus(app)
        await back_to(compose, "compose-body")
        await back_to(reader, "reader-attachments")
        drafts = DraftStore().list()
        assert [d.body.startswith("Kept by escape.") for d in drafts] == [True]
        await back_to(mailbox, "messages")

        # the drafts offered back after sign-in
        app.push_screen(DraftsScreen(DraftStore(), drafts))
        await wait_for(pilot, lambda: isinstance(app.screen, DraftsScreen))
        await settle(pilot)
        cursor_on_row(app, app.focused, 0)
        await back_to(mailbox, "messages")
        assert len(DraftStore().list()) == 1  # later, not discarded

        # the notifications of a message ann sent
        app.open_message(Summary.of(mine))
        await wait_for(pilot, lambda: isinstance(app.screen, ReaderScreen) and app.screen.body_shown)
        reader = app.screen
        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(app.screen, NotificationsScreen) and app.screen.loaded)
        await settle(pilot)
        cursor_on_focus(app)
        await back_to(reader, "body")
        await back_to(mailbox, "messages")


async def test_vim_keys_beside_the_arrows_on_every_list(pen, send, state, no_mouse):
    from tui.drafts import Draft, DraftStore
    from tui.pen_client import Summary

    with pen.as_user("bob") as c:
        uploads = [c.post(f"/uploads?filename={n}.txt", content=b"x", headers={"Content-Type": "text/plain"})
                   .json()["id"] for n in ("one", "two")]
    received = send("bob", ["ann"], subject="Two attachments for vim", body="\n".join(f"line {i}" for i in range(80)),
                    attachments=uploads)
    mine = send("ann", ["bob", "cat"], subject="Two recipients for vim")
    send("cat", ["ann"], subject="A second message for vim")
    app = signed_in(pen, state)
    async with app.run_test(size=(100, 30)) as pilot:
        mailbox = await ready(pilot)
        messages = mailbox.query_one(MessageList)
        await wait_for(pilot, lambda: messages.total >= 2)
        for key, row in (("G", messages.total - 1), ("k", messages.total - 2), ("g", 0), ("j", 1), ("up", 0)):
            await pilot.press(key)
            await settle(pilot)
            assert messages.cursor == row, key
            cursor_on_row(app, messages, row)

        # help: j, G and g move through the lines
        await pilot.press("f1")
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen))
        help_text = app.screen.query_one("#help-keys", TextArea)
        for key, line in (("j", 1), ("G", help_text.document.line_count - 1), ("g", 0), ("down", 1), ("k", 0)):
            await pilot.press(key)
            await settle(pilot)
            assert help_text.cursor_location[0] == line, key
            cursor_on_focus(app)
        await pilot.press("escape")

        # the reader: the attachment list and the body
        app.open_message(Summary.of(received))
        await wait_for(pilot, lambda: isinstance(app.screen, ReaderScreen) and app.screen.body_shown)
        reader = app.screen
        body = reader.query_one("#body", TextArea)
        await pilot.press("tab")  # it opened on its files: on to the text
        await wait_for(pilot, lambda: app.focused is body)
        await pilot.press("j", "j")
        await settle(pilot)
        assert body.cursor_location[0] == 2
        await pilot.press("G")
        await settle(pilot)
        assert body.cursor_location[0] == body.document.line_count - 1
        cursor_on_focus(app)
        await pilot.press("shift+tab")
        attachments = reader.query_one(ReaderAttachmentList)
        for key, row in (("j", 1), ("k", 0), ("G", 1), ("g", 0), ("down", 1)):
            await pilot.press(key)
            await settle(pilot)
            assert attachments.highlighted == row, key
            cursor_on_row(app, attachments, row)
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is mailbox)

        # the notification table
        app.open_message(Summary.of(mine))
        await wait_for(pilot, lambda: isinstance(app.screen, ReaderScreen) and app.screen.body_shown)
        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(app.screen, NotificationsScreen) and len(app.screen.table.items) == 2)
        table = app.screen.table
        for key, row in (("j", 1), ("k", 0), ("G", 1), ("g", 0)):
            await pilot.press(key)
            await settle(pilot)
            assert table.cursor_row == row, key
            assert app.cursor_position.y == table.content_region.y + table._cursor_line()
        await pilot.press("escape", "escape")
        await wait_for(pilot, lambda: app.screen is mailbox)

        # the drafts list
        store = DraftStore()
        drafts = [Draft(subject="first"), Draft(subject="second")]
        app.push_screen(DraftsScreen(store, drafts))
        await wait_for(pilot, lambda: isinstance(app.screen, DraftsScreen) and app.screen.query("#drafts-list")
                       and app.focused is app.screen.query_one("#drafts-list"))
        listing = app.screen.query_one("#drafts-list")
        for key, row in (("j", 1), ("k", 0), ("G", 1), ("g", 0)):
            await pilot.press(key)
            await settle(pilot)
            assert listing.highlighted == row, key
            cursor_on_row(app, listing, 2 * row)  # two lines a draft
        await pilot.press("escape")


async def test_no_animation_and_no_blinking_cursor_by_default(pen, state, no_mouse):
    app = signed_in(pen, state)
    assert app.animation_level == "none"
    async with app.run_test(size=(100, 30)) as pilot:
        await ready(pilot)
        # the high-contrast theme and the terminal's own palette are there to choose
        assert {"high-contrast", "ansi-dark", "ansi-light"} <= set(app.available_themes)
    # "textual-ansi", the name in the settings' documentation, is the terminal's palette
    app = signed_in(pen, state, theme="textual-ansi")
    async with app.run_test(size=(100, 30)) as pilot:
        await ready(pilot)
        assert app.theme == "ansi-dark" and app.current_theme.ansi
    app = signed_in(pen, state, theme="high-contrast")
    async with app.run_test(size=(100, 30)) as pilot:
        await ready(pilot)
        assert app.theme == "high-contrast"
        await pilot.press("slash")
        await settle(pilot)
        assert isinstance(app.focused, Input) and app.focused.cursor_blink is False
        await pilot.press("escape", "c")
        await wait_for(pilot, lambda: isinstance(app.screen, ComposeScreen) and app.focused is not None)
        await pilot.press("tab", "tab", "tab", "tab")
        await settle(pilot)
        assert app.focused.id == "compose-body" and app.focused.cursor_blink is False


async def test_a_key_remapped_by_binding_id_works_and_help_shows_it(pen, send, state, no_mouse, tmp_path):
    from tui.config import load_config

    settings = tmp_path / "config.toml"
    settings.write_text('[keys]\n"mailbox.archive" = "e"\n"reader.reply" = ["r", "ctrl+y"]\n', encoding="utf-8")
    keys = load_config(settings, env={}).keys
    assert keys == {"mailbox.archive": "e", "reader.reply": "r,ctrl+y"}
    sent = send("bob", ["ann"], subject="Archive me with e")
    app = signed_in(pen, state, keys=keys)
    async with app.run_test(size=(100, 30)) as pilot:
        mailbox = await ready(pilot)
        messages = mailbox.query_one(MessageList)
        await pilot.press("f1")
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen))
        text = app.screen.query_one("#help-keys", TextArea).text
        assert "Archive: e  (id mailbox.archive)" in text.splitlines(), text
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is mailbox)
        await wait_for(pilot, lambda: any(messages.summary_at(i) and messages.summary_at(i).id == sent["id"]
                                          for i in range(messages.total)))
        while messages.highlighted.id != sent["id"]:
            await pilot.press("j")
        await pilot.press("a")  # the old key does nothing now
        await pilot.pause(0.3)
        with pen.as_user("ann") as c:
            assert c.get(f"/messages/{sent['id']}").json()["folder"] == "inbox"
        await pilot.press("e")
        await wait_for(pilot, lambda: "to Archive; press z to undo." in rendered(app)[0])
        with pen.as_user("ann") as c:
            assert c.get(f"/messages/{sent['id']}").json()["folder"] == "archive"


async def test_tags_bulk_moves_undo_delete_drafts_and_reply_by_keys_alone(pen, send, state, no_mouse):
    """Issue 10's mailbox actions by keys alone, the terminal cursor on the highlighted row,
    the focused field or the question's answer at each step; each has a help line with its
    id, and a palette entry that runs it."""
    import uuid

    from textual.command import CommandPalette

    from tui.drafts import Draft, DraftStore, account_key
    from tui.screens.confirm import ConfirmScreen

    word = "kb" + uuid.uuid4().hex[:8]
    for n in range(2):
        send("bob", ["ann"], subject=f"Bulk by keys {word} {n}")
    app = signed_in(pen, state)
    async with app.run_test(size=(100, 30)) as pilot:
        mailbox = await ready(pilot)
        messages = mailbox.query_one(MessageList)
        lines = await help_lines(pilot)
        for line in ("Tag or untag: t  (id mailbox.tag)", "Tag all that match: *  (id mailbox.tag_matching)",
                     "Untag all: control+t  (id mailbox.untag_all)", "Undo move: z  (id mailbox.undo)",
                     "Reply: r  (id mailbox.reply)", "Reply all: R  (id mailbox.reply_all)",
                     "Forward: f  (id mailbox.forward)", "Drafts folder: 5  (id mailbox.drafts_folder)"):
            assert line in lines, (line, lines)
        await pilot.press("slash", *word, "enter")
        await wait_for(pilot, lambda: messages.loaded_once and messages.total == 2 and app.focused is messages)
        # t tags and moves on; the cursor follows the row
        await pilot.press("t")
        await wait_for(pilot, lambda: len(messages.tagged) == 1 and messages.cursor == 1)
        await settle(pilot)
        cursor_on_row(app, messages, 1)
        # the palette runs "Tag all that match"
        await pilot.press("ctrl+p")
        await wait_for(pilot, lambda: isinstance(app.screen, CommandPalette))
        await pilot.press(*"Tag all that match")
        await wait_for(pilot, lambda: "Tag all that match" in rendered(app)[0].split("\n", 3)[-1])
        await settle(pilot)
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.screen is mailbox and len(messages.tagged) == 2)
        # d moves both to Trash; z brings them back
        await pilot.press("d")
        await wait_for(pilot, lambda: "Moved 2 messages to Trash" in rendered(app)[0])
        await pilot.press("z")
        await wait_for(pilot, lambda: "Moved 2 messages back to Inbox" in rendered(app)[0] and messages.total == 2)
        await settle(pilot)
        cursor_on_row(app, messages, messages.cursor)
        # D in Trash asks; the cursor is on "No"
        await pilot.press("d")
        await pilot.press("4")
        await wait_for(pilot, lambda: mailbox.folder == "trash" and messages.highlighted is not None
                       and messages.highlighted.folder == "trash" and not messages.tagged)
        await pilot.press("D")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await settle(pilot)
        choices = app.screen.query_one("#confirm-choices")
        cursor_on_row(app, choices, 0)
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is mailbox)
        await settle(pilot)
        cursor_on_row(app, messages, messages.cursor)
        # Drafts: 5, the cursor on the row; enter resumes into compose, the cursor in the body
        DraftStore().save(Draft(to=["bob@abc.example"], subject=f"Draft by keys {word}", body="Hello",
                                account=account_key(pen.process.url, "ann@abc.example")))
        await pilot.press("5")
        await wait_for(pilot, lambda: mailbox.folder == "drafts" and messages.total == 1
                       and messages.highlighted is not None and messages.highlighted.folder == "drafts")
        await settle(pilot)
        cursor_on_row(app, messages, 0)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ComposeScreen) and app.focused is not None)
        await settle(pilot)
        assert app.focused.id == "compose-body"
        cursor_on_focus(app)
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is mailbox)
        # r on a message of the list: compose with the reply
        await pilot.press("1", "slash", *word, "enter")
        await wait_for(pilot, lambda: mailbox.folder == "inbox" and messages.total == 1
                       and messages.highlighted is not None and messages.highlighted.folder == "inbox")
        await pilot.press("r")
        await wait_for(pilot, lambda: isinstance(app.screen, ComposeScreen) and app.focused is not None
                       and app.screen.draft.in_reply_to == messages.highlighted.id)
        await settle(pilot)
        cursor_on_focus(app)
    assert not no_mouse


async def test_threads_by_keys_alone_from_the_palette_help_and_keys(pen, send, state, no_mouse):
    """The thread view from the command palette, a thread opened with space, a message of it
    read, the reader's thread list reached with T: the cursor on the highlighted row each time."""
    from tui.widgets.thread_list import ThreadList

    first = send("bob", ["ann"], subject="Keys thread")
    reply = send("ann", ["bob"], subject="Re: Keys thread", in_reply_to=first["id"])
    last = send("bob", ["ann"], subject="Re: Keys thread again", in_reply_to=reply["id"])
    app = signed_in(pen, state)
    async with app.run_test(size=(100, 30)) as pilot:
        mailbox = await ready(pilot)
        messages = mailbox.query_one(MessageList)
        lines = await help_lines(pilot)
        assert "Threads: T  (id mailbox.threads)" in lines
        assert "Open or close thread: space  (id mailbox.expand_thread)" in lines
        await wait_for(pilot, lambda: app.screen is mailbox)
        await pilot.press("ctrl+p")
        await settle(pilot)
        await pilot.press(*"Threads")
        await wait_for(pilot, lambda: "Key: T" in rendered(app)[0])
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.screen is mailbox and messages.threads and messages.highlighted is not None
                       and messages.highlighted.id == last["id"])
        await settle(pilot)
        cursor_on_row(app, messages, 0)
        await pilot.press("space")
        await wait_for(pilot, lambda: messages.rows == messages.total + 1)
        await pilot.press("j")
        await settle(pilot)
        cursor_on_row(app, messages, 1)
        assert messages.highlighted.id == first["id"]
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ReaderScreen) and app.screen.body_shown
                       and len(app.screen.query_one(ThreadList).summaries) == 3)
        reader = app.screen
        await pilot.press("T")
        await settle(pilot)
        thread = reader.query_one(ThreadList)
        cursor_on_row(app, thread, 0)
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is mailbox)
        await settle(pilot)
        cursor_on_row(app, messages, 1)
        await pilot.press("T")
        await wait_for(pilot, lambda: not messages.threads and messages.highlighted is not None)


async def test_the_notice_history_by_key_help_and_palette(pen, send, state, no_mouse):
    from textual.command import CommandPalette

    from tui.pen_client import Summary
    from tui.screens.notices import NoticesScreen

    received = send("bob", ["ann"], subject="Notices from the reader")
    app = signed_in(pen, state)
    async with app.run_test(size=(100, 30)) as pilot:
        mailbox = await ready(pilot)
        app.toast("First notice.", title="Test")
        app.toast("Second notice.", title="Test", severity="error")
        # N from the list: newest first, the cursor on it; escape back to the list's row.
        await pilot.press("N")
        await wait_for(pilot, lambda: isinstance(app.screen, NoticesScreen))
        await settle(pilot)
        listing = app.screen.query_one("#notices-list")
        cursor_on_row(app, listing, 0)
        assert "error    Test: Second notice." in rendered(app)[0].splitlines()[app.cursor_position.y]
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is mailbox)
        await settle(pilot)
        cursor_on_focus(app)
        # F1 lists it with its id; the palette runs it.
        await pilot.press("f1")
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen))
        assert "Notices said so far: N  (id app.notices)" in app.screen.query_one("#help-keys", TextArea).text
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is mailbox)
        await pilot.press("ctrl+p")
        await wait_for(pilot, lambda: isinstance(app.screen, CommandPalette))
        await pilot.press(*"Notices said")
        # The palette's search runs on its own: its answer is on the screen, not the typed words.
        await wait_for(pilot, lambda: "Notices said so far" in rendered(app)[0])
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, NoticesScreen))
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is mailbox)
        # N from the reader too (its text does not take the key).
        app.open_message(Summary.of(received))
        await wait_for(pilot, lambda: isinstance(app.screen, ReaderScreen) and app.screen.body_shown)
        reader = app.screen
        await pilot.press("N")
        await wait_for(pilot, lambda: isinstance(app.screen, NoticesScreen))
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is reader)
        await settle(pilot)
        cursor_on_focus(app)
    assert not no_mouse


async def test_search_language_completion_and_the_subject_question_by_keys_alone(pen, send, state, no_mouse):
    """Issue 10's search, address completion and the question before sending without a
    subject, by keys alone, the terminal cursor in the focused field or on the answer."""
    import uuid

    from tui.screens.confirm import ConfirmScreen

    word = "ks" + uuid.uuid4().hex[:8]
    send("bob", ["ann"], cc=[{"email": f"omar.{word}@elsewhere.example", "name": "Omar Haddad"}],
         subject=f"Search by keys {word}")
    app = signed_in(pen, state)
    async with app.run_test(size=(100, 30)) as pilot:
        mailbox = await ready(pilot)
        messages = mailbox.query_one(MessageList)
        # A search the PEN cannot read: its sentence under the field, the cursor still in it.
        await pilot.press("slash", *"frm:bob", "enter")
        await wait_for(pilot, lambda: '"frm:" is not a search key' in rendered(app)[0])
        await settle(pilot)
        assert cursor_on_focus(app).id == "search"
        await pilot.press("ctrl+u", *f"from:bob {word}", "enter")
        await wait_for(pilot, lambda: messages.loaded_once and messages.total == 1 and app.focused is messages)
        await settle(pilot)
        cursor_on_row(app, messages, 0)
        # Completion from the PEN, taken with the right arrow; no subject asks, No is the default.
        await pilot.press("c")
        await wait_for(pilot, lambda: isinstance(app.screen, ComposeScreen) and app.focused is not None)
        compose = app.screen
        to = compose.query_one("#to", Input)
        await pilot.press(*f"omar haddad <omar.{word}")
        await wait_for(pilot, lambda: to._suggestion == f"Omar Haddad <omar.{word}@elsewhere.example>")
        await pilot.press("right", "f9")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen) and app.focused is not None)
        await settle(pilot)
        cursor_on_focus(app)
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.screen is compose and app.focused is not None
                       and app.focused.id == "subject")
        await settle(pilot)
        assert cursor_on_focus(app).id == "subject"
        assert to.value == f"Omar Haddad <omar.{word}@elsewhere.example>"
