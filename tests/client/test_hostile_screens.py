"""Every hostile string through every screen: the list, the reader's headers, body and
attachment list, the status line, the sign-in error, and toasts. The screen shows each
literally (less control characters), no ESC or C1 from the data reaches the terminal,
and no span carries an action or link from the data.

Two paths: the real server over TLS (what it stores and sends back), and penmail's own
objects filled with the raw strings, as another PEN might send them (our server already
refuses or strips control characters, so only this path carries ESC and C1 to a screen)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from pen_devstack import add_user
from tests.conftest import PASSWORD
from tests.tui_helpers import assert_clean_render, at_mailbox, config_for, rendered, wait_for
from tui.app import PenmailApp
from tui.pen_client import Address, Attachment, Message, Page
from tui.safe_text import one_line
from tui.screens.reader import ReaderScreen
from tui.screens.signin import SignInScreen
from tui.signin.session import Session
from tui.widgets.message_list import MessageList


def texts(hostile) -> dict[str, str]:
    return {k: v for k, v in hostile["text"].items() if not k.startswith("_")}


def printable_ascii(s: str) -> bool:
    return all(0x20 <= ord(c) < 0x7F for c in s)


class ObjectsClient:
    """penmail's client interface, answering with given objects (raw hostile strings)."""

    def __init__(self, messages: list[Message]):
        self.messages = {m.id: m for m in messages}
        self.order = [m.id for m in messages]
        from tui.pen_client import User

        self.server = "https://pen.abc.example"
        self.user = User("u1", "me@abc.example", "Me", "member", None)
        self.signed_in = True

    async def list_messages(self, folder="inbox", *, limit=50, cursor=None, unread=None, q=None,
                            order="newest") -> Page:
        start = int(cursor or 0)
        ids = (self.order if order == "newest" else self.order[::-1])[start:start + limit]
        nxt = str(start + limit) if start + limit < len(self.order) else None
        return Page(tuple(self.messages[i] for i in ids), nxt, len(self.order))

    async def get_message(self, message_id):
        return self.messages[message_id]

    async def update_message(self, message_id, **change):
        return self.messages[message_id]

    async def events(self):
        if False:
            yield None

    async def aclose(self):
        pass


def raw_message(key: str, value: str, html: str | None, filenames: list[str]) -> Message:
    return Message(
        id=f"m-{key}", thread_id="t", folder="inbox", sender=Address("x@evil.example", value[:300]),
        to=(Address("me@abc.example", value[:300]),), cc=(), subject=value, unread=True,
        sent_at=datetime(2026, 11, 20, 9, 30, tzinfo=UTC), attachment_count=len(filenames), size=10,
        snippet=value[:100], body_text=value, body_html=html,
        attachments=tuple(Attachment(f"a{i}", name, "text/plain\x1b[31m", 10, "0" * 64)
                          for i, name in enumerate(filenames)))


class ObjectsSession:
    def __init__(self, client):
        self.client = client

        class _Store:
            problem = None

        self.store = _Store()

    async def settle(self):
        pass


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
async def test_raw_hostile_strings_on_every_screen(hostile, size, tmp_path, monkeypatch):
    monkeypatch.setenv("PENMAIL_STATE_DIR", str(tmp_path))
    values = texts(hostile)
    html_items = list(hostile["html"].values())
    messages = [raw_message(k, v, html_items[i % len(html_items)] if i % 2 else None, hostile["filenames"][:6])
                for i, (k, v) in enumerate(values.items())]
    client = ObjectsClient(messages)
    from tui.config import Config

    app = PenmailApp(Config(server="https://pen.example", email="me@abc.example"),
                     session=ObjectsSession(client), env={})
    async with app.run_test(size=size) as pilot:
        await wait_for(pilot, lambda: at_mailbox(app))
        mlist = app.screen.query_one(MessageList)
        await wait_for(pilot, lambda: mlist.loaded_once)
        # The list, row by row.
        for _ in range(len(messages)):
            assert_clean_render(app)
            await pilot.press("j")
        if size != (120, 40):
            return  # the reader at one size: its layout is checked at both by the snapshots
        # The reader of each message: headers, attachments, body.
        for i, (key, value) in enumerate(values.items()):
            mlist.cursor = i
            await pilot.press("enter")
            await wait_for(pilot, lambda: isinstance(app.screen, ReaderScreen) and app.screen.body_shown)
            await pilot.pause()
            text = assert_clean_render(app)
            expected = one_line(value)
            if printable_ascii(value) and len(expected) < size[0] - 20:
                assert f"Subject: {expected}" in text, key
            # Status line and toast with the same string.
            app.screen.say(value)
            app.clear_notifications()
            app.toast(value, title=value[:40])
            await pilot.pause()
            text = assert_clean_render(app)
            if printable_ascii(value) and len(value) < size[0] - 4:
                assert value in text, key
            await pilot.press("escape")
            await wait_for(pilot, lambda: at_mailbox(app))
        app.clear_notifications()


async def test_hostile_strings_through_the_real_server(pen, send, hostile, tmp_path, monkeypatch):
    """What the real server stores and serves, shown by the TUI signed in over TLS."""
    monkeypatch.setenv("PENMAIL_STATE_DIR", str(tmp_path))
    email = f"hostile-{uuid.uuid4().hex[:6]}@abc.example"
    add_user(pen.data, email, "Hostile Reader", PASSWORD)
    values = texts(hostile)
    accepted = {}
    with pen.as_user("bob") as c:
        for key, value in values.items():
            r = c.post("/messages", headers={"Idempotency-Key": uuid.uuid4().hex},
                       json={"to": [{"email": email, "name": "Reader"}], "subject": value[:998], "body_text": value,
                             "body_html": "<p>" + value + "</p>"})
            if r.status_code == 201:
                accepted[key] = r.json()
    assert "markup_action" in accepted and "markup_link_spoof" in accepted
    session = Session(pen.process.url, email, pen.ca_file, use_keyring=False)
    await session.login(PASSWORD)
    app = PenmailApp(config_for(pen, email, tmp=tmp_path), session=session, env={})
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: at_mailbox(app))
        mlist = app.screen.query_one(MessageList)
        await wait_for(pilot, lambda: mlist.loaded_once and mlist.total == len(accepted))
        for i in range(mlist.total):
            mlist.cursor = i
            await pilot.pause()
            assert_clean_render(app)
            summary = mlist.highlighted
            await pilot.press("enter")
            await wait_for(pilot, lambda: isinstance(app.screen, ReaderScreen) and app.screen.body_shown)
            await pilot.pause()
            text = assert_clean_render(app)
            if printable_ascii(summary.subject) and len(summary.subject) < 100:
                assert f"Subject: {summary.subject}" in text
                assert summary.subject in text.split("Subject:", 1)[1]  # the body too
            await pilot.press("escape")
            await wait_for(pilot, lambda: at_mailbox(app))
        # The action in a subject did not run: the app is still here.
        assert app.is_running


async def test_hostile_sign_in_error(hostile, tmp_path, monkeypatch):
    monkeypatch.setenv("PENMAIL_STATE_DIR", str(tmp_path))
    from tui.config import Config

    data = list(texts(hostile).values())
    app = PenmailApp(Config(), env={}, use_keyring=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, SignInScreen))
        for value in data:
            app.screen._say(value)
            await pilot.pause()
            assert_clean_render(app)
            if printable_ascii(value) and len(value) < 60:
                assert value in rendered(app)[0]


async def test_hostile_subjects_in_the_mailbox_actions_sentences_and_question(hostile, tmp_path, monkeypatch):
    """A bulk action's sentence and the question before a delete for good name subjects:
    shown literally, nothing from them reaches the terminal as control or markup."""
    monkeypatch.setenv("PENMAIL_STATE_DIR", str(tmp_path))
    from tui.config import Config
    from tui.screens.confirm import ConfirmScreen

    values = texts(hostile)
    messages = [raw_message(k, v, None, []) for k, v in values.items()]
    app = PenmailApp(Config(server="https://pen.example", email="me@abc.example"),
                     session=ObjectsSession(ObjectsClient(messages)), env={})
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: at_mailbox(app))
        mailbox = app.screen
        mlist = mailbox.query_one(MessageList)
        await wait_for(pilot, lambda: mlist.loaded_once)
        mailbox.folder = "trash"  # the objects' client lists them whatever the folder: D asks
        for i, value in enumerate(values.values()):
            mlist.cursor = i
            await pilot.press("t")  # "Tagged “<subject>”; ..."
            await pilot.pause()
            assert_clean_render(app)
            await pilot.press("D")
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
            await pilot.pause()
            text = assert_clean_render(app)
            if printable_ascii(value) and len(value) < 30:
                assert f"\u201c{value}\u201d" in text
            await pilot.press("n")
            await wait_for(pilot, lambda: app.screen is mailbox)
            mailbox.action_untag_all()
        assert app.is_running
