"""Compose, reply, forward, attachments and drafts in the TUI, driven by keys against the
real server over TLS and the real SMTP sink: what the recipients' notification e-mails
say, what the recipients see through the API, and that nothing is sent twice."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shlex
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest
from textual import events

from tests.client.lose_answers import LoseAnswers as LoseFirstSend
from tests.conftest import DISCLAIMERS, FOOTER, PASSWORD, TEARDOWN_STOP_SECONDS, make_pen
from tests.tui_helpers import at_mailbox, config_for, rendered, wait_for
from tui.app import PenmailApp
from tui.compose import AddressBook
from tui.drafts import Draft, DraftStore
from tui.pen_client import PenClient
from tui.screens.compose import ComposeScreen
from tui.screens.confirm import ConfirmScreen
from tui.screens.drafts import DraftsScreen
from tui.screens.mailbox import MailboxScreen
from tui.screens.reader import ReaderScreen
from tui.screens.signin import SignInScreen
from tui.signin.session import Session
from tui.widgets.attachments import AttachmentPanel

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def state(tmp_path, monkeypatch):
    monkeypatch.setenv("PENMAIL_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("PENMAIL_PASSWORD", raising=False)
    return tmp_path


def drafts(state) -> DraftStore:
    return DraftStore(state / "state" / "drafts")


def app_for(pen, state, who: str = "ann@abc.example", **kw) -> PenmailApp:
    return PenmailApp(config_for(pen, who, tmp=state), env={"PENMAIL_PASSWORD": PASSWORD}, use_keyring=False, **kw)


def tag() -> str:
    return uuid.uuid4().hex[:8]


async def open_compose(pilot) -> ComposeScreen:
    app = pilot.app
    await wait_for(pilot, lambda: at_mailbox(app))  # the mailbox is drawn while the sign-in runs
    await pilot.press("c")
    await wait_for(pilot, lambda: isinstance(app.screen, ComposeScreen) and app.focused is not None)
    assert app.focused.id == "to"  # the cursor is in To
    return app.screen


async def compose_from_reader(pilot, key: str) -> ComposeScreen:
    """Press `key` (r, R, f) once the app has opened its message; the compose screen it opens."""
    app = pilot.app
    await wait_for(pilot, lambda: isinstance(app.screen, ReaderScreen) and app.screen.message is not None)
    await pilot.press(key)
    await wait_for(pilot, lambda: isinstance(app.screen, ComposeScreen))
    return app.screen


def status(app) -> str:
    return str(app.screen.query_one("#compose-status").render())


async def sent_and_closed(pilot, screen: ComposeScreen) -> None:
    await wait_for(pilot, lambda: screen not in pilot.app.screen_stack, timeout=30)


def inbox(pen, who: str, subject: str) -> list[dict]:
    with pen.as_user(who) as c:
        items = c.get("/messages", params={"folder": "inbox", "q": subject}).json()["items"]
        return [c.get(f"/messages/{m['id']}").json() for m in items if m["subject"] == subject]


# ---------------------------------------------------------------- sending


async def test_compose_and_send_to_member_cc_and_bcc(pen, state):
    subject = f"Clinic plan {tag()}"
    # The address book knows Cat from an earlier message: Cc completes from it.
    AddressBook(state / "state" / "addresses.json").add("Cat Moss <cat@abc.example>")
    app = app_for(pen, state)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_compose(pilot)
        await pilot.press(*"Bob Stone <bob@abc.example>", "tab")
        await pilot.press(*"Cat M")
        cc = screen.query_one("#cc")
        await wait_for(pilot, lambda: cc._suggestion == "Cat Moss <cat@abc.example>")
        await pilot.press("right", "tab")  # right arrow takes the completion
        assert cc.value == "Cat Moss <cat@abc.example>"
        await pilot.press(*"zed@outside", "tab")
        # The address is checked as it is typed: one sentence names the wrong one.
        await wait_for(pilot, lambda: "Bcc: zed@outside is not a valid e-mail address" in status(app))
        assert "!Bcc:" in rendered(app)[0]
        await pilot.press("shift+tab", *".example", "tab")
        await wait_for(pilot, lambda: "not a valid" not in status(app))
        await pilot.press(*subject, "tab")
        assert app.focused.id == "compose-body"
        await pilot.press(*"Hello Bob, the plan is attached to the rota.")
        await pilot.press("f9")
        await sent_and_closed(pilot, screen)
    # Everyone got a notification; nobody learns of the Bcc.
    mails = {who: pen.mails_to(f"{who}@abc.example" if who != "zed" else "zed@outside.example", subject)
             for who in ("bob", "cat", "zed")}
    for who, found in mails.items():
        assert len(found) == 1, who
        message = found[0].message
        assert message["Subject"] == subject
        assert [(a.display_name, a.addr_spec) for a in message["To"].addresses] == [("Bob Stone", "bob@abc.example")]
        assert [(a.display_name, a.addr_spec) for a in message["Cc"].addresses] == [("Cat Moss", "cat@abc.example")]
        assert "Bcc" not in message and not re.search(rb"(?im)^bcc:", found[0].data)
        if who != "zed":
            assert b"zed@outside" not in found[0].data
        text = message.get_body(("plain",)).get_content()
        assert FOOTER in text and DISCLAIMERS["employees"] in text
        message_id, token = pen.link_token(found[0])
        assert token
    # Bob sees the message, with Cat in Cc and no Bcc.
    (got,) = inbox(pen, "bob", subject)
    assert got["id"] == message_id
    assert got["body_text"] == "Hello Bob, the plan is attached to the rota."
    assert [a["email"] for a in got["cc"]] == ["cat@abc.example"] and got["bcc"] == []
    assert drafts(state).list() == []  # a sent draft is removed
    # Everyone ann sent to is in her address book now.
    book = AddressBook(state / "state" / "addresses.json")
    assert book.complete("zed") == ["zed@outside.example"] and book.complete("bob") == ["Bob Stone <bob@abc.example>"]


async def test_reply_and_reply_all_continue_the_thread(pen, send, state):
    subject = f"Re: RE: Night shifts {tag()}"
    original = send("bob", ["ann"], cc=["cat"], subject=subject, body="Can you take Tuesday?\n> older quote")
    bare = subject.split(": ", 2)[-1]
    app = app_for(pen, state, open_message_id=original["id"])
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await compose_from_reader(pilot, "r")
        await pilot.pause()
        assert not screen.touched  # nothing typed yet: leaving now would leave no draft behind
        assert screen.query_one("#to").value == "Bob Stone <bob@abc.example>"
        assert screen.query_one("#cc").value == ""
        assert screen.query_one("#subject").value == f"Re: {bare}"  # not stacked
        body = screen.query_one("#compose-body")
        assert re.match(r"\n\nOn \d+ \w{3} \d{4} \d\d:\d\d, Bob Stone wrote:\n> Can you take Tuesday\?\n>> older quote",
                        body.text), body.text
        assert app.focused is body and body.cursor_location == (0, 0)
        await pilot.press(*"Yes, I can.")
        await pilot.press("ctrl+enter")  # the second send key
        await sent_and_closed(pilot, screen)
    app = app_for(pen, state, open_message_id=original["id"])
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await compose_from_reader(pilot, "R")
        assert screen.query_one("#to").value == "Bob Stone <bob@abc.example>"
        assert screen.query_one("#cc").value == "cat@abc.example"  # not ann herself
        await pilot.press(*"Copying Cat.", "f9")
        await sent_and_closed(pilot, screen)
    (reply,) = [m for m in inbox(pen, "bob", f"Re: {bare}") if m["body_text"].startswith("Yes, I can.")]
    (reply_all,) = inbox(pen, "cat", f"Re: {bare}")
    for m in (reply, reply_all):
        assert m["thread_id"] == original["thread_id"] and m["in_reply_to"] == original["id"]
    assert "ann@abc.example" not in [a["email"] for a in reply_all["to"] + reply_all["cc"]]
    assert reply_all["body_text"].startswith("Copying Cat.\n\nOn ")


async def test_forward_carries_the_original_attachments(pen, send, state):
    with pen.as_user("bob") as c:
        up = c.post("/uploads?filename=rota.csv", content=b"day,who\nTue,ann\n",
                    headers={"Content-Type": "text/csv"}).json()
    subject = f"Rota {tag()}"
    original = send("bob", ["ann"], subject=subject, body="The rota.", attachments=[up["id"]])
    app = app_for(pen, state, open_message_id=original["id"])
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await compose_from_reader(pilot, "f")
        assert screen.query_one("#subject").value == f"Fwd: {subject}"
        await pilot.pause()
        assert not screen.touched
        assert "rota.csv  (forwarded, 16 bytes)" in rendered(app)[0]
        assert screen.draft.forward_attachment_ids == [a["id"] for a in original["attachments"]]
        assert "---------- Forwarded message ----------" in screen.query_one("#compose-body").text
        await pilot.press(*"cat@abc.example", "f9")
        await sent_and_closed(pilot, screen)
    (got,) = inbox(pen, "cat", f"Fwd: {subject}")
    assert [(a["filename"], a["sha256"]) for a in got["attachments"]] == [("rota.csv", up["sha256"])]


# ---------------------------------------------------------------- attachments


async def test_attach_a_file_and_the_recipient_downloads_the_same_bytes(pen, state):
    folder = state / "files"
    folder.mkdir()
    payload = os.urandom(3000) + b"\x00end"
    (folder / "scan-results.bin").write_bytes(payload)
    (folder / "second.txt").write_text("remove me")
    subject = f"Scan {tag()}"
    app = app_for(pen, state)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_compose(pilot)
        await pilot.press(*"bob@abc.example", "tab", "tab", "tab", *subject)
        panel = screen.query_one(AttachmentPanel)
        await pilot.press("f3")
        path_field = screen.query_one("#compose-path")
        assert app.focused is path_field
        path_field.insert_text_at_cursor(f"{folder}/")  # typing the long temp folder adds nothing
        await pilot.press("s", "c")
        # The path completes from the file system; right arrow takes it.
        await wait_for(pilot, lambda: path_field._suggestion == f"{folder}/scan-results.bin")
        await pilot.press("right", "enter")
        await wait_for(pilot, lambda: panel.entries and panel.entries[0].upload_id)
        assert "scan-results.bin  (ready, 2.9 KB)" in rendered(app)[0]
        await pilot.press("f3")
        path_field.insert_text_at_cursor(f"{folder}/second.txt")
        await pilot.press("enter")
        await wait_for(pilot, lambda: len(panel.entries) == 2 and panel.entries[1].upload_id)
        await pilot.press("f8")  # removes the highlighted (last) one
        assert [e.name for e in panel.entries] == ["scan-results.bin"]
        assert "Removed second.txt from the attachments." in status(app)
        await pilot.press("f9")
        await sent_and_closed(pilot, screen)
    (got,) = inbox(pen, "bob", subject)
    assert [a["filename"] for a in got["attachments"]] == ["scan-results.bin"]
    with pen.as_user("bob") as c:
        r = c.get(f"/messages/{got['id']}/attachments/{got['attachments'][0]['id']}")
    assert r.status_code == 200 and r.content == payload


@pytest.fixture(scope="module")
def small_pen(tmp_path_factory, smtp):
    """A PEN that accepts files of at most 1 KiB."""
    process = make_pen(tmp_path_factory.mktemp("small-pen"), smtp)
    toml = process.data / "pen-server.toml"
    text, n = re.subn(r"(?m)^max_upload_bytes = \d+$", "max_upload_bytes = 1024", toml.read_text())
    assert n == 1
    toml.write_text(text)
    yield process.start()
    process.stop(TEARDOWN_STOP_SECONDS)


async def test_a_file_over_the_limit_is_refused_before_any_upload(small_pen, state):
    big, small = state / "big.pdf", state / "small.txt"
    big.write_bytes(b"x" * 2048)
    small.write_bytes(b"y" * 100)
    config = config_for(type("P", (), {"process": small_pen, "ca_file": str(small_pen.ca_file)}), tmp=state)
    app = PenmailApp(config, env={"PENMAIL_PASSWORD": PASSWORD}, use_keyring=False)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_compose(pilot)
        uploads = []
        real_upload = app.session.client.upload

        async def spy(path, **kw):
            uploads.append(Path(path).name)
            return await real_upload(path, **kw)

        app.session.client.upload = spy
        path_field = screen.query_one("#compose-path")
        await pilot.press("f3")
        path_field.insert_text_at_cursor(str(big))
        await pilot.press("enter")
        await wait_for(pilot, lambda: "big.pdf is 2.0 KB, over this PEN's limit of 1.0 KB (1,024 bytes)"
                       in status(app))
        assert screen.query_one(AttachmentPanel).entries == []
        await pilot.press("f3")
        path_field.insert_text_at_cursor(str(small))
        await pilot.press("enter")
        panel = screen.query_one(AttachmentPanel)
        await wait_for(pilot, lambda: panel.entries and panel.entries[0].upload_id)
    assert uploads == ["small.txt"]  # the big one never reached the PEN


# ---------------------------------------------------------------- refusals and the editor


async def test_a_subject_with_a_line_break_is_refused(pen, state):
    app = app_for(pen, state)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_compose(pilot)
        await pilot.press(*"bob@abc.example", "tab", "tab", "tab")
        subject = screen.query_one("#subject")
        assert app.focused is subject
        subject.post_message(events.Paste("Results\nrm -rf"))
        await wait_for(pilot, lambda: "Not pasted: The subject cannot contain a line break." in status(app))
        assert subject.value == ""
        subject.value = "Results\nBcc: evil@x.example"  # as from an edited draft file
        await wait_for(pilot, lambda: "Subject: The subject cannot contain a line break." in status(app))
        await pilot.press("f9")
        await wait_for(pilot, lambda: status(app).startswith("Not sent: Subject: The subject cannot contain"))
        assert app.screen is screen
        subject.value = "Results"
        await wait_for(pilot, lambda: "line break" not in status(app))
        assert screen.problem is None


async def test_the_body_goes_to_the_editor_and_back(pen, state, monkeypatch):
    script = state / "editor.py"
    script.write_text("import sys\np = sys.argv[1]\nt = open(p).read()\n"
                      "open(p, 'w').write('Written in the editor.\\x1b[31m\\n' + t)\n")
    monkeypatch.setenv("EDITOR", f"{shlex.quote(sys.executable)} {shlex.quote(str(script))}")
    app = app_for(pen, state)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_compose(pilot)
        monkeypatch.setattr(app, "suspend", contextlib.nullcontext)  # headless: no terminal to hand over
        await pilot.press("tab", "tab", "tab", "tab", *"kept")
        await pilot.press("f4")
        body = screen.query_one("#compose-body")
        assert body.text == "Written in the editor.\nkept"  # the escape sequence is gone
        assert status(app) == "The body is back from the editor."
        monkeypatch.setenv("EDITOR", "/nonexistent/editor")
        await pilot.press("f4")
        assert "could not be started" in status(app) and body.text == "Written in the editor.\nkept"
    assert not list((state / "state" / "drafts").glob(".edit-*"))  # the temp file is gone


# ---------------------------------------------------------------- drafts


def _kill_script(pen, subject: str) -> str:
    return textwrap.dedent(f"""
        import asyncio
        from pathlib import Path
        from tests.tui_helpers import at_mailbox, wait_for
        from tui.app import PenmailApp
        from tui.config import Config
        from tui.drafts import DraftStore
        from tui.screens.compose import ComposeScreen

        async def main():
            config = Config(server={pen.process.url!r}, ca_file=Path({pen.ca_file!r}), email="ann@abc.example")
            app = PenmailApp(config, env={{"PENMAIL_PASSWORD": {PASSWORD!r}}}, use_keyring=False)
            async with app.run_test(size=(80, 24)) as pilot:
                await wait_for(pilot, lambda: at_mailbox(app), timeout=30)
                await pilot.press("c")
                await wait_for(pilot, lambda: isinstance(app.screen, ComposeScreen))
                await pilot.press(*"bob@abc.example", "tab", "tab", "tab", *{subject!r}, "tab")
                await pilot.press(*"Typed before the crash.")
                # No key is pressed now: only the autosave can put this on disk.
                while not any(d.body == "Typed before the crash." for d in DraftStore().list()):
                    await asyncio.sleep(0.05)
                print("saved", flush=True)
                await asyncio.sleep(3600)

        asyncio.run(main())
        """)


async def test_a_draft_survives_kill_9_and_is_sent_once(pen, state):
    subject = f"Crash {tag()}"
    env = dict(os.environ, PYTHONPATH=str(REPO), PENMAIL_STATE_DIR=str(state / "state"))
    proc = subprocess.Popen([sys.executable, "-c", _kill_script(pen, subject)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 60)
        assert line.strip() == "saved", proc.stderr.read() if proc.poll() is not None else line
        started = time.monotonic()
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    (draft,) = drafts(state).list()
    assert draft.subject == subject and draft.to == ["bob@abc.example"]
    assert time.monotonic() - started < 30
    app = app_for(pen, state)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, DraftsScreen) and subject in rendered(app)[0])
        assert "to bob@abc.example" in rendered(app)[0]
        await pilot.press("enter")  # resume
        await wait_for(pilot, lambda: isinstance(app.screen, ComposeScreen))
        screen = app.screen
        assert screen.query_one("#compose-body").text == "Typed before the crash."
        assert screen.draft.idempotency_key == draft.idempotency_key
        await pilot.press("f9")
        await sent_and_closed(pilot, screen)
    assert len(inbox(pen, "bob", subject)) == 1
    assert len(pen.mails_to("bob@abc.example", subject)) == 1
    assert drafts(state).list() == []


async def test_escape_keeps_the_draft_and_the_drafts_screen_discards(pen, state):
    store = drafts(state)
    old = Draft(to=["cat@abc.example"], subject="[bold]Old[/] \x1b[31mnote", body="old")
    store.save(old)
    app = app_for(pen, state)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, DraftsScreen) and "Old" in rendered(app)[0])
        assert "[bold]Old[/] note" in rendered(app)[0]  # literal, cleaned
        await pilot.press("escape")  # later
        screen = await open_compose(pilot)
        await pilot.press(*"bob@abc.example", "tab", "tab", "tab", *"Kept for later")
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, MailboxScreen))
        assert screen not in app.screen_stack
    kept = {d.subject: d for d in store.list()}
    assert set(kept) == {"Kept for later", old.subject}
    app = app_for(pen, state)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, DraftsScreen) and "2 unsent drafts" in rendered(app)[0])
        await pilot.press("d")  # the one question every destructive key asks: n keeps it
        await wait_for(pilot, lambda: "Discard the draft \u201cKept for later\u201d for good?" in rendered(app)[0])
        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(app.screen, DraftsScreen))
        assert len(store.list()) == 2
        await pilot.press("d")
        await wait_for(pilot, lambda: "Discard the draft \u201cKept for later\u201d for good?" in rendered(app)[0])
        await pilot.press("y")
        await wait_for(pilot, lambda: "Discarded the draft \u201cKept for later\u201d." in rendered(app)[0])
        assert "1 unsent draft " in rendered(app)[0]
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, MailboxScreen))
    assert [d.id for d in store.list()] == [old.id]


# ---------------------------------------------------------------- a lost answer


async def lost_answer_app(pen, state, lose: int = 1) -> tuple[PenmailApp, LoseFirstSend]:
    """The app signed in as Ann through a transport that loses the first sends' answers."""
    transport = LoseFirstSend(pen.ca_file, lose)
    session = Session(pen.process.url, "ann@abc.example", pen.ca_file, use_keyring=False)
    session.client = PenClient(pen.process.url, ca_file=pen.ca_file, transport=transport)
    await session.login(PASSWORD)
    return PenmailApp(config_for(pen, tmp=state), session=session, env={}, use_keyring=False), transport


async def test_a_retry_after_a_lost_answer_delivers_once(pen, state, tmp_path):
    """The answer is lost on every one of the sender's tries (SEND_TRIES, the same key and
    the same upload ids each time); F9 again sends the same draft: one message, one upload."""
    from tui.writing.sender import SEND_TRIES

    subject = f"Lost answer {tag()}"
    agenda = tmp_path / "agenda.txt"
    agenda.write_bytes(b"1. Only once\n" * 200)
    app, transport = await lost_answer_app(pen, state, lose=SEND_TRIES)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_compose(pilot)
        await pilot.press(*"bob@abc.example", "tab", "tab", "tab", *subject, "tab", *"Only once, please.")
        await pilot.press("f3")
        screen.query_one("#compose-path").insert_text_at_cursor(str(agenda))
        await pilot.press("enter")
        panel = screen.query_one(AttachmentPanel)
        await wait_for(pilot, lambda: panel.entries and panel.entries[0].upload_id)
        await pilot.press("f9")
        await wait_for(pilot, lambda: status(app).startswith("Not sent: The PEN at"), timeout=30)
        assert "did not answer in time" in status(app) and "it cannot go twice" in status(app)
        assert len(transport.keys) == SEND_TRIES
        [kept] = drafts(state).list()
        assert kept.subject == subject and list(kept.uploads) == [str(agenda)]  # the upload id is kept
        await pilot.press("f9")
        await sent_and_closed(pilot, screen)
    assert len(transport.keys) == SEND_TRIES + 1 and len(set(transport.keys)) == 1
    assert transport.uploads == 1 and all(a == transport.attachments[0] for a in transport.attachments)
    [got] = inbox(pen, "bob", subject)
    assert [a["filename"] for a in got["attachments"]] == ["agenda.txt"]
    pen.assert_notified_once("ann", subject, ["bob@abc.example"])
    assert drafts(state).list() == []


async def test_compose_keys_have_ids_help_and_palette_entries(pen, state):
    app = app_for(pen, state)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_compose(pilot)
        ids = {b.id for b in screen.BINDINGS}
        assert {"compose.send", "compose.attach", "compose.remove_attachment", "compose.editor",
                "compose.close", "compose.help"} <= ids
        footer = rendered(app)[0].splitlines()[-1]
        for word in ("Send", "Attach", "Editor", "Close"):
            assert word in footer, footer
        # The terminal's cursor is in the focused field (screen readers follow it).
        await pilot.press(*"bo")
        to = screen.query_one("#to")
        # Waited for, not asserted at once: on a loaded machine the layout can still be
        # settling (the field's region moves a row) when the keys have been handled.
        await wait_for(pilot, lambda: app.focused is to and to.region.contains_point(app.cursor_position)
                       and app.cursor_position.x > to.region.x)
        await pilot.press("tab", "tab", "tab", "tab")
        body = screen.query_one("#compose-body")
        await wait_for(pilot, lambda: app.focused is body and body.region.contains_point(app.cursor_position))
        await pilot.press("f1")
        await wait_for(pilot, lambda: "Send: f9 or control+enter" in rendered(app)[0])
        for line in ("Attach: f3", "Remove file: f8", "Editor: f4", "Save draft: f2", "Discard draft: f12",
                     "Close: escape"):
            assert line in rendered(app)[0]
        await pilot.press("escape")
        assert app.screen is screen
        commands = {c.title for c in app.get_system_commands(screen)}
        assert {"Send", "Attach", "Remove file", "Editor", "Close", "Save draft", "Discard draft"} <= commands


async def test_discard_asks_once_and_leaves_nothing(pen, state):
    """F12 asks the one question (y discards; escape, n and enter keep the draft)."""
    app = app_for(pen, state)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_compose(pilot)
        await pilot.press(*"bob@abc.example", "tab", "tab", "tab", *"Never mind", "f2")
        await wait_for(pilot, lambda: [d.subject for d in drafts(state).list()] == ["Never mind"])
        for keep in ("escape", "n", "enter"):
            await pilot.press("f12")
            await wait_for(pilot, lambda: "Discard this draft for good?" in rendered(app)[0])
            assert isinstance(app.screen, ConfirmScreen)
            await pilot.press(keep)
            await wait_for(pilot, lambda: app.screen is screen)
        assert [d.subject for d in drafts(state).list()] == ["Never mind"]
        await pilot.press("f12")
        await wait_for(pilot, lambda: "Discard this draft for good?" in rendered(app)[0])
        await pilot.press("y")
        await wait_for(pilot, lambda: isinstance(app.screen, MailboxScreen))
    assert drafts(state).list() == []


async def test_sign_out_with_a_draft_open_asks_first(pen, state):
    """Sign-out (L, or the palette) with a compose screen open asks; n keeps all as it is,
    y signs out and keeps the draft for the next sign-in."""
    app = app_for(pen, state)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_compose(pilot)
        await pilot.press(*"bob@abc.example", "tab", "tab", "tab", *"Half written")
        await app.run_action("app.sign_out")
        await wait_for(pilot, lambda: "Sign out? The draft you are writing is kept" in rendered(app)[0])
        await pilot.press("n")
        await wait_for(pilot, lambda: app.screen is screen)
        await app.run_action("app.sign_out")
        await wait_for(pilot, lambda: "Sign out? The draft you are writing is kept" in rendered(app)[0])
        await pilot.press("y")
        await wait_for(pilot, lambda: isinstance(app.screen, SignInScreen))
    assert [d.subject for d in drafts(state).list()] == ["Half written"]


async def test_a_draft_the_pen_refuses_says_what_to_change(pen, state):
    """A 422 that sending again would not change (a reply to a message Ann cannot read, as
    when the original was deleted for good): the PEN's sentence and "change", never "press
    F9 to try again"; the draft is kept and nothing is sent."""
    subject = f"Refused {tag()}"
    app = app_for(pen, state)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_compose(pilot)
        screen.draft.in_reply_to = "no-such-message-" + tag()
        await pilot.press(*"bob@abc.example", "tab", "tab", "tab", *subject, "tab", *"Hello.")
        await pilot.press("f9")
        await wait_for(pilot, lambda: status(app).startswith("Not sent:"), timeout=30)
        assert status(app).endswith("The draft is kept; change what the PEN names and send again.")
        assert "F9" not in status(app)
        assert screen.definite_failure  # an edit makes a new sending attempt
        await pilot.press("escape")
    assert [d.subject for d in drafts(state).list()] == [subject]
    assert inbox(pen, "bob", subject) == []
