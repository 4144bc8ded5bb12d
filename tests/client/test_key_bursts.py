"""Keys typed in one burst (SSH, a paste, a macro) each reach what they were typed for: a key
that opens a field and the text after it end up in that field; a burst across Tab lands in
the right fields; keys after Enter or Escape reach the screen that those keys open."""

from __future__ import annotations

import uuid

import pytest
from textual import events
from textual.widgets import Input, TextArea

from tests.conftest import PASSWORD
from tests.tui_helpers import at_mailbox, burst, config_for, wait_for
from tui.app import PenmailApp
from tui.screens.compose import ComposeScreen
from tui.screens.mailbox import MailboxScreen
from tui.screens.reader import ReaderScreen
from tui.widgets.message_list import MessageList


@pytest.fixture
def state(tmp_path, monkeypatch):
    monkeypatch.setenv("PENMAIL_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("PENMAIL_PASSWORD", raising=False)
    return tmp_path


def app_for(pen, state, who: str = "ann@abc.example") -> PenmailApp:
    return PenmailApp(config_for(pen, who, tmp=state), env={"PENMAIL_PASSWORD": PASSWORD}, use_keyring=False)


async def at_loaded_mailbox(pilot) -> MessageList:
    app = pilot.app
    await wait_for(pilot, lambda: at_mailbox(app))
    messages = app.screen.query_one(MessageList)
    await wait_for(pilot, lambda: messages.loaded_once)
    await pilot.pause()
    return messages


@pytest.mark.parametrize("before", ["", "<enter><escape>"], ids=["slash", "enter-escape-slash"])
async def test_slash_and_text_in_one_burst_search(pen, send, state, before):
    """``/Kim`` puts Kim in the search field (the list does not take K, i, m); so it does
    after Enter opened a message and Escape closed it, in the same burst."""
    send("bob", ["ann"], subject="Burst search target", body="x")
    app = app_for(pen, state)
    async with app.run_test(size=(100, 30)) as pilot:
        messages = await at_loaded_mailbox(pilot)
        await wait_for(pilot, lambda: messages.highlighted is not None)
        first = messages.highlighted
        burst(app, before + "/Kim")
        search = app.screen.query_one("#search", Input)
        await wait_for(pilot, lambda: isinstance(app.screen, MailboxScreen) and search.value == "Kim")
        await pilot.pause()
        assert search.value == "Kim" and app.focused is search
        assert messages.highlighted == first and first.folder == "inbox"


async def on_new_message(pilot, send, prefix: str) -> tuple[MessageList, dict]:
    """A new message from Bob, highlighted in Ann's loaded inbox."""
    sent = send("bob", ["ann"], subject=f"{prefix} {uuid.uuid4().hex[:6]}", body="Please answer.")
    messages = await at_loaded_mailbox(pilot)
    await wait_for(pilot, lambda: messages.highlighted is not None and messages.highlighted.id == sent["id"])
    return messages, sent


async def compose_burst(pilot, text: str, field: str, value: str) -> ComposeScreen:
    """From the loaded mailbox, ``text`` in one burst; waits until compose's ``field`` has ``value``."""
    app = pilot.app
    await at_loaded_mailbox(pilot)
    burst(app, text)

    def filled() -> bool:
        if not isinstance(app.screen, ComposeScreen):
            return False
        found = app.screen.query(field)  # none while the screen is still being composed
        if not found:
            return False
        widget = found.first()
        return (widget.text if isinstance(widget, TextArea) else getattr(widget, "value", None)) == value

    await wait_for(pilot, filled)
    return app.screen


@pytest.mark.parametrize("key", ["tab", "enter"])
async def test_compose_key_and_a_burst_across_fields_land_in_their_fields(pen, state, key):
    """Tab moves on (a binding); so does Enter in a field (the field's Submitted message,
    handled by the screen after the key itself is done)."""
    app = app_for(pen, state)
    text = f"cbob@x.example<{key}><{key}><{key}>Subj<{key}>Body"
    async with app.run_test(size=(100, 30)) as pilot:
        compose = await compose_burst(pilot, text, "#compose-body", "Body")
        assert compose.query_one("#to", Input).value == "bob@x.example"
        assert compose.query_one("#cc", Input).value == ""
        assert compose.query_one("#bcc", Input).value == ""
        assert compose.query_one("#subject", Input).value == "Subj"
        assert app.focused is compose.query_one("#compose-body")


async def test_f3_and_a_path_in_one_burst_fill_the_path_field(pen, state):
    app = app_for(pen, state)
    async with app.run_test(size=(100, 30)) as pilot:
        compose = await compose_burst(pilot, "c<f3>/tmp/report.pdf", "#compose-path", "/tmp/report.pdf")
        assert app.focused is compose.query_one("#compose-path")
        assert compose.query_one("#to", Input).value == ""


async def test_enter_reply_and_text_in_one_burst_reach_the_reply(pen, send, state):
    app = app_for(pen, state)
    async with app.run_test(size=(100, 30)) as pilot:
        _, sent = await on_new_message(pilot, send, "Burst reply")
        subject = sent["subject"]
        # Enter opens the message (fetched over the network); r waits for it, then replies.
        burst(app, "<enter>rThanks")
        await wait_for(pilot, lambda: isinstance(app.screen, ComposeScreen)
                       and app.screen.query_one("#compose-body", TextArea).text.startswith("Thanks\n"))
        compose = app.screen
        assert compose.query_one("#subject", Input).value == f"Re: {subject}"
        assert isinstance(app.screen_stack[-2], ReaderScreen)
        assert app.screen_stack[-2].summary.folder == "inbox"  # no a (archive) reached the reader


async def test_an_alt_key_nothing_binds_is_escape_and_that_key(pen, state):
    """A terminal sends Escape and c read together as alt+c: the search closes, compose opens."""
    app = app_for(pen, state)
    async with app.run_test(size=(100, 30)) as pilot:
        await at_loaded_mailbox(pilot)
        burst(app, "/Kim<alt+c>bob@x.example")
        await wait_for(pilot, lambda: isinstance(app.screen, ComposeScreen) and app.screen.query("#to")
                       and app.screen.query_one("#to", Input).value == "bob@x.example")
        assert app.screen_stack[-2].query_one("#search", Input).value == ""


async def test_reply_from_the_list_and_text_in_one_burst_reach_the_reply(pen, send, state):
    app = app_for(pen, state)
    async with app.run_test(size=(100, 30)) as pilot:
        _, sent = await on_new_message(pilot, send, "Burst list reply")
        burst(app, "rThanks")  # r fetches the message over the network; a in Thanks would archive
        await wait_for(pilot, lambda: isinstance(app.screen, ComposeScreen)
                       and app.screen.query_one("#compose-body", TextArea).text.startswith("Thanks\n"))
        with pen.as_user("ann") as c:
            assert c.get(f"/messages/{sent['id']}").json()["folder"] == "inbox"


async def test_keys_for_a_reply_that_cannot_open_are_not_used_and_a_notice_says_so(pen, send, state):
    app = app_for(pen, state)
    async with app.run_test(size=(100, 30)) as pilot:
        messages, _ = await on_new_message(pilot, send, "Burst gone")
        gone = messages.highlighted
        with pen.as_user("ann") as c:  # deleted elsewhere: the reply's fetch fails
            assert c.delete(f"/messages/{gone.id}").status_code in (200, 204)
        burst(app, "rT/x")
        await wait_for(pilot, lambda: any("3 keys typed after it went unused, as the reply did not open."
                                          == n.text for n in app.notices))
        await pilot.pause()
        assert isinstance(app.screen, MailboxScreen) and app.screen.threads is False  # T did not reach the list
        assert not app.screen.query_one("#search", Input).display  # nor / and x


async def test_a_folder_key_and_an_action_in_one_burst_act_on_that_folders_rows(pen, send, state):
    app = app_for(pen, state)
    async with app.run_test(size=(100, 30)) as pilot:
        _, sent = await on_new_message(pilot, send, "Burst archived")
        with pen.as_user("ann") as c:
            assert c.patch(f"/messages/{sent['id']}", json={"folder": "archive"}).status_code == 200
        burst(app, "3i")  # the Archive folder's newest (this one) back to the inbox, before its page came

        def back_in_inbox() -> bool:
            with pen.as_user("ann") as c:
                return c.get(f"/messages/{sent['id']}").json()["folder"] == "inbox"

        await wait_for(pilot, back_in_inbox)
        assert app.screen.folder == "archive"


def test_the_parser_reads_escape_and_punctuation_in_one_read_as_alt_and_that_key():
    """What tmux send-keys Escape "/from" writes in one read: alt+slash at once (which the key
    gate splits into Escape and /), then the letters; sequences that start with ESC [ or
    ESC O are still keys of their own, and Escape alone is still Escape."""
    from tui.terminal.keys import BurstParser

    parser = BurstParser()
    keys = [e.key for e in parser.feed("\x1b/fr\x1b1\x1b:\x1bc\x1b[A\x1bOP") if isinstance(e, events.Key)]
    assert keys == ["alt+slash", "f", "r", "alt+1", "alt+colon", "alt+c", "up", "f1"]


async def test_escape_and_a_search_in_one_burst_leave_the_reader_for_the_search(pen, send, state):
    """In the reader, Escape and / read together (alt+slash, see tui/terminal/keys.py) then
    from:bob and Enter: the reader closes and the search runs; no f reaches the reader."""
    app = app_for(pen, state)
    async with app.run_test(size=(100, 30)) as pilot:
        await on_new_message(pilot, send, "Burst reader search")
        burst(app, "<enter>")
        await wait_for(pilot, lambda: isinstance(app.screen, ReaderScreen))
        burst(app, "<alt+slash>from:bob<enter>")
        await wait_for(pilot, lambda: at_mailbox(app) and app.screen.query_one("#search", Input).value == "from:bob")
        await pilot.pause()
        assert not isinstance(app.screen, ComposeScreen)
