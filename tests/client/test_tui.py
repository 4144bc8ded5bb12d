"""The TUI against the real server over TLS: sign in, list, read, keys, keyring, and the
first frame before any network."""

from __future__ import annotations

import pytest

from tests.client.test_credentials import MemoryKeyring
from tests.conftest import PASSWORD
from tests.tui_helpers import (
    at_mailbox,
    config_for,
    record_events,
    rendered,
    stream_is_up,
    using_keyring,
    wait_for,
)
from tui.app import PenmailApp
from tui.pen_client import PenClient
from tui.screens.mailbox import MailboxScreen
from tui.screens.reader import ReaderScreen
from tui.screens.signin import SignInScreen
from tui.widgets.message_list import MessageList


@pytest.fixture
def memory_keyring():
    with using_keyring(MemoryKeyring()) as backend:
        yield backend


@pytest.fixture
def state(tmp_path, monkeypatch):
    monkeypatch.setenv("PENMAIL_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("PENMAIL_PASSWORD", raising=False)
    return tmp_path


async def test_first_frame_comes_before_the_network(state, memory_keyring):
    # A port that takes the connection and never answers the TLS handshake: the first frame
    # must not wait for the network.
    import socket

    from tui.config import Config

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    try:
        server = f"https://127.0.0.1:{silent.getsockname()[1]}"
        # A password to sign in with quietly, as from the environment or a password command.
        app = PenmailApp(Config(server=server, email="ann@abc.example"), env={"PENMAIL_PASSWORD": "x"})
        async with app.run_test(size=(80, 24)) as pilot:
            # The first frame is the mailbox, saying that it signs in (no fetch before that ends).
            assert isinstance(app.screen, MailboxScreen)
            await wait_for(pilot, lambda: "Signing in ..." in rendered(app)[0])
            assert "signing in" in rendered(app)[0]
            silent.close()  # the connection waiting in its queue is reset: the sign-in fails
            await wait_for(pilot, lambda: isinstance(app.screen, SignInScreen))
            await wait_for(pilot, lambda: "Password" in rendered(app)[0])
    finally:
        silent.close()


async def test_sign_in_with_keys_read_and_mark_read(pen, send, state, memory_keyring):
    sent = send("bob", ["ann"], subject="Pilot reads this", body="The body the pilot reads.")
    app = PenmailApp(config_for(pen, tmp=state), env={})
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, SignInScreen) and app.focused is not None
                       and app.focused.id == "password")
        # The cursor is in the password field; type it and press enter.
        await pilot.press(*PASSWORD)
        await pilot.press("enter")
        await wait_for(pilot, lambda: at_mailbox(app))
        messages = app.screen.query_one(MessageList)
        await wait_for(pilot, lambda: messages.loaded_once and messages.total > 0)
        await wait_for(pilot, lambda: "Pilot reads this" in rendered(app)[0])
        # Find our message with the keyboard alone.
        for _ in range(messages.total):
            if messages.highlighted and messages.highlighted.id == sent["id"]:
                break
            await pilot.press("j")
        assert messages.highlighted.id == sent["id"]
        # The terminal cursor sits on the highlighted row (screen readers follow it).
        row = messages.cursor - int(messages.scroll_offset.y)
        assert app.cursor_position.y == messages.content_region.y + row
        line = rendered(app)[0].splitlines()[app.cursor_position.y]
        assert line[app.cursor_position.x] == ">" and "Pilot reads this" in line, line
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ReaderScreen))
        await wait_for(pilot, lambda: "The body the pilot reads." in rendered(app)[0])
        assert "From:    Bob Stone <bob@abc.example>" in rendered(app)[0]
        await pilot.press("escape")
        await wait_for(pilot, lambda: at_mailbox(app))
    # Reading marked it read on the server.
    with pen.as_user("ann") as c:
        assert c.get(f"/messages/{sent['id']}").json()["unread"] is False
    # "Remember me" kept the refresh token in the keyring, never the password.
    stored = list(memory_keyring.entries.values())
    assert stored and PASSWORD not in stored


async def test_remembered_sign_in_and_sign_out(pen, state, memory_keyring):
    client = PenClient(pen.process.url, ca_file=pen.ca_file)
    await client.login("cat@abc.example", PASSWORD)
    memory_keyring.set_password("penmail", f"{pen.process.url}|cat@abc.example", client.refresh_token)
    await client.aclose()
    app = PenmailApp(config_for(pen, "cat@abc.example", tmp=state), env={})
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: at_mailbox(app))
        await pilot.press("L")  # sign out
        await wait_for(pilot, lambda: isinstance(app.screen, SignInScreen))
    assert memory_keyring.entries == {}


async def test_wrong_password_is_one_sentence(pen, state, memory_keyring):
    app = PenmailApp(config_for(pen, "bob@abc.example", tmp=state), env={})
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, SignInScreen) and app.focused is not None
                       and app.focused.id == "password")
        await pilot.press(*"wrong password")
        await pilot.press("enter")
        await wait_for(pilot, lambda: "The e-mail address or the password is wrong." in rendered(app)[0])
        assert "Traceback" not in rendered(app)[0]


async def test_folders_search_and_actions_by_key(pen, send, state, memory_keyring):
    import uuid

    tag = uuid.uuid4().hex[:8]
    sent = send("bob", ["cat"], subject=f"findme {tag}")
    app = PenmailApp(config_for(pen, "cat@abc.example", tmp=state), env={"PENMAIL_PASSWORD": PASSWORD})
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: at_mailbox(app))
        messages = app.screen.query_one(MessageList)
        await pilot.press("slash", *tag, "enter")
        await wait_for(pilot, lambda: messages.total == 1 and messages.highlighted is not None)
        assert messages.highlighted.id == sent["id"]
        await pilot.press("a")  # archive
        await wait_for(pilot, lambda: "to Archive; press z to undo." in rendered(app)[0])
        await pilot.press("escape", "3")  # clear the search, archive folder
        await wait_for(pilot, lambda: app.screen.folder == "archive" and messages.loaded_once
                       and any(messages.summary_at(i) and messages.summary_at(i).id == sent["id"]
                               for i in range(min(messages.total, 100))))
        await pilot.press("f1")
        await wait_for(pilot, lambda: "Keys:" in rendered(app)[0] and "Archive" in rendered(app)[0])
        await pilot.press("escape")


async def test_new_mail_appears_without_refresh(pen, send, state, memory_keyring):
    import uuid

    app = PenmailApp(config_for(pen, "cat@abc.example", tmp=state), env={"PENMAIL_PASSWORD": PASSWORD})
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: at_mailbox(app))
        messages = app.screen.query_one(MessageList)
        await wait_for(pilot, lambda: messages.loaded_once)
        # Sent whether or not the event stream is up yet: what arrives before it opens is
        # shown when it opens (the list reloads then), what arrives after, as it comes.
        subject = f"live {uuid.uuid4().hex[:6]}"
        send("bob", ["cat"], subject=subject)
        await wait_for(pilot, lambda: subject in rendered(app)[0])


async def test_the_first_lists_are_read_once_and_the_stream_catches_up_from_them(pen, send, state, memory_keyring,
                                                                                  monkeypatch):
    """At start the inbox is read once: the event stream opens with the Pen-Event-Id of the
    first lists as its Last-Event-ID, so it replays what came after them instead of the lists
    being fetched again (the list fetched again when the stream opened, before). A message
    sent once the stream is up is shown through its event: two reads of the inbox in all."""
    import uuid

    import httpx

    sent: list[tuple[str, str, str | None]] = []
    real_send = httpx.AsyncClient.send

    async def recording(self, request, **kw):
        sent.append((request.method, request.url.path.removeprefix("/api/v1"), request.headers.get("Last-Event-ID")))
        return await real_send(self, request, **kw)

    monkeypatch.setattr(httpx.AsyncClient, "send", recording)
    app = PenmailApp(config_for(pen, "cat@abc.example", tmp=state), env={"PENMAIL_PASSWORD": PASSWORD})
    kinds = record_events(app)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: at_mailbox(app) and stream_is_up(app))
        subject = f"caught up {uuid.uuid4().hex[:6]}"
        send("bob", ["cat"], subject=subject)
        await wait_for(pilot, lambda: subject in rendered(app)[0])
    [(_, _, last_event_id)] = [r for r in sent if r[:2] == ("GET", "/events")]
    assert last_event_id is not None and last_event_id.isdigit()
    assert kinds[0] == "stream.open" and "message.new" in kinds and "resync" not in kinds
    assert [r[:2] for r in sent].count(("GET", "/messages")) == 2


def test_the_app_leaves_the_interpreters_switch_interval_to_the_command():
    """PenmailApp in a test or another program changes nothing process-wide; `penmail`
    itself sets 1 ms (tui.cli.tune_interpreter, before run_tui starts the app)."""
    import sys

    from tui.cli import tune_interpreter
    from tui.config import Config

    before = sys.getswitchinterval()
    try:
        sys.setswitchinterval(0.005)
        PenmailApp(Config(), env={}, use_keyring=False)
        assert sys.getswitchinterval() == pytest.approx(0.005)
        tune_interpreter()
        assert sys.getswitchinterval() == pytest.approx(0.001)
    finally:
        sys.setswitchinterval(before)


def test_the_app_reads_no_environment_of_its_own(monkeypatch):
    """The environment comes from the command (tui.config.environment, read once in tui.cli.main)."""
    from tui.config import Config
    from tui.config.environment import read_environment

    monkeypatch.setenv("PENMAIL_PASSWORD", "from-the-process")
    assert PenmailApp(Config(), use_keyring=False).env == {}
    taken = read_environment()
    monkeypatch.setenv("PENMAIL_PASSWORD", "changed-later")
    assert taken["PENMAIL_PASSWORD"] == "from-the-process"
    with pytest.raises(TypeError):
        taken["PENMAIL_PASSWORD"] = "x"  # type: ignore[index]
