"""Drafts across sessions and accounts, against the real server over TLS and the real SMTP
sink: a draft is offered back and sent only by the account that wrote it; a draft resumed
after a crash reuses its files' uploads, so the retried send is the first one's (one
message, one notification per recipient); the reader feeds the address book."""

from __future__ import annotations

import asyncio
import json
import os

from textual.widgets import Input

from tests.client import test_compose_tui
from tests.client.test_compose_tui import (
    app_for,
    drafts,
    inbox,
    lost_answer_app,
    open_compose,
    sent_and_closed,
    status,
    tag,
)
from tests.tui_helpers import rendered, wait_for
from tui.compose import AddressBook
from tui.drafts import Draft, account_key, upload_record
from tui.screens.compose import SENT_BEFORE, ComposeScreen
from tui.screens.drafts import DraftsScreen
from tui.screens.mailbox import MailboxScreen
from tui.screens.reader import ReaderScreen
from tui.widgets.attachments import AttachmentPanel

state = test_compose_tui.state  # the fixture: a state folder of the test's own


def account(pen, email: str) -> str:
    return account_key(pen.process.url, email)


async def resume_offered(pilot, subject: str) -> ComposeScreen:
    """Resume, from the drafts offered at sign-in, the one with this subject (the newest)."""
    app = pilot.app
    await wait_for(pilot, lambda: isinstance(app.screen, DraftsScreen) and subject in rendered(app)[0])
    await pilot.press("enter")
    await wait_for(pilot, lambda: isinstance(app.screen, ComposeScreen))
    return app.screen


async def signed_in(pilot) -> None:
    app = pilot.app
    await wait_for(pilot, lambda: app.session is not None and app.session.client.user is not None
                   and isinstance(app.screen, (MailboxScreen, DraftsScreen)))


# ---------------------------------------------------------------- one account's drafts


async def test_drafts_are_offered_only_to_the_account_that_wrote_them(pen, state):
    store = drafts(state)
    # The key is normalised as the keyring's is: a trailing "/" and the case of the e-mail do not matter.
    anns = Draft(to=["cat@abc.example"], subject=f"Ann's draft {tag()}",
                 account=account_key(f" {pen.process.url}/ ", "Ann@ABC.example"))
    old = Draft(to=["cat@abc.example"], subject=f"Old draft {tag()}")  # written before drafts had an account
    old_file = old.to_dict()
    del old_file["account"], old_file["uploads"]
    store.save(anns)
    (store.root / f"{old.id}.json").write_text(json.dumps(old_file))
    assert store.load(old.id).account is None

    app = app_for(pen, state, "bob@abc.example")
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, DraftsScreen) and "1 unsent draft " in rendered(app)[0])
        text = rendered(app)[0]
        assert old.subject in text and anns.subject not in text
        await pilot.press("escape")
    app = app_for(pen, state, "ann@abc.example")
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, DraftsScreen) and "2 unsent drafts" in rendered(app)[0])
        assert old.subject in rendered(app)[0] and anns.subject in rendered(app)[0]
        await pilot.press("escape")
    assert {d.id for d in store.list()} == {anns.id, old.id}  # nothing was lost on the way

    # Cat has no draft of her own: the old one is offered, and resuming it makes it hers.
    app = app_for(pen, state, "cat@abc.example")
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, DraftsScreen) and "1 unsent draft " in rendered(app)[0])
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ComposeScreen))
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, MailboxScreen))
    assert store.load(old.id).account == account(pen, "cat@abc.example")
    assert store.list(account=account(pen, "bob@abc.example")) == []


async def test_a_draft_is_never_sent_from_another_account(pen, state):
    subject = f"Only Ann sends this {tag()}"
    store = drafts(state)
    anns = Draft(to=["cat@abc.example"], subject=subject, body="From Ann.", account=account(pen, "ann@abc.example"))
    store.save(anns)
    app = app_for(pen, state, "bob@abc.example")
    async with app.run_test(size=(80, 24)) as pilot:
        await signed_in(pilot)
        assert not isinstance(app.screen, DraftsScreen)
        app.resume_draft(anns)  # however it got here
        await wait_for(pilot, lambda: isinstance(app.screen, ComposeScreen))
        await pilot.press("f9")
        await wait_for(pilot, lambda: "Not sent: this draft was written as ann@abc.example" in status(app))
        await pilot.press("escape")
    assert inbox(pen, "cat", subject) == []
    assert store.load(anns.id).account == account(pen, "ann@abc.example")


# ---------------------------------------------------------------- the address book


async def test_the_people_on_an_opened_message_complete_addresses(pen, send, state):
    subject = f"Seen {tag()}"
    original = send("cat", ["ann", {"email": "zoe@outside.example", "name": "Zoe Quill"}], cc=["bob"],
                    subject=subject)
    book_path = state / "state" / "addresses.json"
    assert not book_path.exists()
    app = app_for(pen, state, open_message_id=original["id"])
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, ReaderScreen) and app.screen.body_shown)
        await wait_for(pilot, lambda: book_path.exists())
        book = AddressBook(book_path)
        assert {a.email for a in book._entries.values()} == \
            {"cat@abc.example", "zoe@outside.example", "bob@abc.example"}  # never Ann herself
        written = book_path.stat().st_mtime_ns
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, MailboxScreen))
        screen = await open_compose(pilot)
        await pilot.press(*"Zo")
        to = screen.query_one("#to")
        await wait_for(pilot, lambda: to._suggestion == "Zoe Quill <zoe@outside.example>")
        await pilot.press("f12", "y")  # discarded: no draft to offer next time
        await wait_for(pilot, lambda: isinstance(app.screen, MailboxScreen))
    # Opening it again adds nobody twice, and writes nothing.
    app = app_for(pen, state, open_message_id=original["id"])
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, ReaderScreen) and app.screen.body_shown)
        await pilot.pause(0.3)
    assert len(AddressBook(book_path)) == 3 and book_path.stat().st_mtime_ns == written


# ---------------------------------------------------------------- a crash after the send


async def _send_and_lose_the_answer(pen, state, subject: str, path) -> Draft:
    """Ann sends a draft with a file; the PEN makes the message but its answer never comes,
    and the session ends with the draft still on disk (as after a crash)."""
    from tui.writing.sender import SEND_TRIES

    app, transport = await lost_answer_app(pen, state, lose=SEND_TRIES)  # every try's answer lost
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_compose(pilot)
        await pilot.press(*"bob@abc.example", "tab", *"cat@abc.example", "tab", "tab", *subject, "tab",
                          *"Once only.")
        await pilot.press("f3")
        screen.query_one("#compose-path", Input).insert_text_at_cursor(str(path))
        await pilot.press("enter")
        panel = screen.query_one(AttachmentPanel)
        await wait_for(pilot, lambda: panel.entries and panel.entries[0].upload_id)
        first_upload = panel.entries[0].upload_id
        await pilot.press("f9")
        await wait_for(pilot, lambda: status(app).startswith("Not sent: The PEN at"), timeout=30)
        # The upload id was on disk before the send went out.
        (draft,) = drafts(state).list()
        assert draft.uploads[str(path)]["id"] == first_upload
        assert draft.uploads[str(path)]["size"] == path.stat().st_size
    assert len(transport.keys) == SEND_TRIES and len(set(transport.keys)) == 1
    assert len(inbox(pen, "bob", subject)) == 1  # it did go, once
    (draft,) = drafts(state).list()  # the crash: the draft was not removed
    return draft


async def test_a_draft_resumed_after_a_crash_reuses_its_upload_and_is_sent_once(pen, state):
    subject = f"Crash after send {tag()}"
    path = state / "results.bin"
    payload = os.urandom(5000)
    path.write_bytes(payload)
    draft = await _send_and_lose_the_answer(pen, state, subject, path)
    os.utime(path)  # touched (a backup, say) but the same bytes: the hash tells it is unchanged

    app = app_for(pen, state)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await resume_offered(pilot, subject)
        assert screen.draft.idempotency_key == draft.idempotency_key
        panel = screen.query_one(AttachmentPanel)
        await wait_for(pilot, lambda: panel.entries and panel.entries[0].upload_id)
        assert panel.entries[0].upload_id == draft.uploads[str(path)]["id"]  # not uploaded again
        assert "results.bin  (ready, 4.9 KB)" in rendered(app)[0]
        await pilot.press("f9")
        await sent_and_closed(pilot, screen)
    (got,) = inbox(pen, "bob", subject)
    assert len(inbox(pen, "cat", subject)) == 1
    with pen.as_user("bob") as c:
        assert c.get(f"/messages/{got['id']}/attachments/{got['attachments'][0]['id']}").content == payload
    await asyncio.to_thread(pen.assert_notified_once, "ann", subject, ["bob@abc.example", "cat@abc.example"])
    assert drafts(state).list() == []


async def test_a_draft_whose_file_changed_after_it_was_sent_is_not_sent_again(pen, state):
    subject = f"Changed after send {tag()}"
    path = state / "scan.txt"
    path.write_bytes(b"first version")
    draft = await _send_and_lose_the_answer(pen, state, subject, path)
    path.write_bytes(b"other version")  # the same size, other bytes: a new upload, so another body

    app = app_for(pen, state)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await resume_offered(pilot, subject)
        await pilot.press("f9")
        await wait_for(pilot, lambda: status(app) == SENT_BEFORE)
        assert "This draft was already sent in an earlier session" in rendered(app)[0]
        await pilot.press("f9")  # and again: nothing goes
        await pilot.pause(0.5)
        assert status(app) == SENT_BEFORE and app.screen is screen
        await pilot.press("escape")
    assert [d.id for d in drafts(state).list()] == [draft.id]  # kept
    assert len(inbox(pen, "bob", subject)) == 1
    await asyncio.to_thread(pen.assert_notified_once, "ann", subject, ["bob@abc.example", "cat@abc.example"])


async def test_an_upload_the_pen_no_longer_knows_is_uploaded_again(pen, state):
    subject = f"Expired upload {tag()}"
    path = state / "agenda.txt"
    path.write_bytes(b"9:00 rounds\n")
    info = path.stat()
    draft = Draft(to=["bob@abc.example"], subject=subject, body="Agenda attached.", attachments=[str(path)],
                  uploads={str(path): upload_record("x" * 32, info.st_size, info.st_mtime_ns)},
                  account=account(pen, "ann@abc.example"))
    drafts(state).save(draft)
    app = app_for(pen, state)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await resume_offered(pilot, subject)
        await pilot.press("f9")
        await sent_and_closed(pilot, screen)
    (got,) = inbox(pen, "bob", subject)
    with pen.as_user("bob") as c:
        assert c.get(f"/messages/{got['id']}/attachments/{got['attachments'][0]['id']}").content == b"9:00 rounds\n"
    assert drafts(state).list() == []
