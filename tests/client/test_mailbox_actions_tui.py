"""Tagging and bulk actions, undo of the last move, delete for good only in Trash after a
one-key question, and reply, reply-all and forward from the list: driven by keys against
the real server over TLS, asserting on what the server has afterwards."""

from __future__ import annotations

import uuid

from tests.client import test_compose_tui
from tests.client.test_compose_tui import app_for
from tests.tui_helpers import at_mailbox, rendered, wait_for
from tui.screens.compose import ComposeScreen
from tui.screens.confirm import ConfirmScreen
from tui.screens.mailbox import MailboxScreen
from tui.widgets.message_list import MessageList

state = test_compose_tui.state  # the fixture: a state folder of the test's own


def token() -> str:
    return "k" + uuid.uuid4().hex[:10]


def status(app) -> str:
    return str(app.screen.query_one("#status").render())


def title(app) -> str:
    return str(app.screen.query_one("#mailbox-title").render())


def folder_of(pen, who: str, word: str) -> dict[str, str]:
    """Subject -> folder of every message of `who` whose text has `word` (all folders)."""
    found = {}
    with pen.as_user(who) as c:
        for folder in ("inbox", "archive", "trash", "sent"):
            for m in c.get("/messages", params={"folder": folder, "q": word, "limit": 200}).json()["items"]:
                found[m["subject"]] = folder
    return found


async def searched(pilot, word: str, rows: int) -> tuple[MailboxScreen, MessageList]:
    """Signed in, and the list shows the search for `word` with `rows` rows."""
    app = pilot.app
    await wait_for(pilot, lambda: at_mailbox(app) and app.screen.query_one(MessageList).loaded_once)
    mailbox = app.screen
    messages = mailbox.query_one(MessageList)
    await pilot.press("slash", *word, "enter")
    await wait_for(pilot, lambda: mailbox.query_text == word and messages.loaded_once and messages.total == rows
                   and messages.highlighted is not None and word in messages.highlighted.subject)
    return mailbox, messages


def tagged_rows(app) -> list[str]:
    """The rows on the screen that show the tag mark (column 1 of the list)."""
    messages = app.screen.query_one(MessageList)
    x = messages.content_region.x
    lines = rendered(app)[0].splitlines()
    return [ln for ln in lines[messages.content_region.y:messages.content_region.bottom] if ln[x + 1:x + 2] == "*"]


async def test_tag_rows_act_on_the_tagged_and_undo_the_move(pen, send, state):
    word = token()
    subjects = [f"Tagged {word} {n}" for n in range(3)]
    for s in subjects:
        send("bob", ["ann"], subject=s)
    send("bob", ["ann"], subject=f"Untagged neighbour {word}")
    app = app_for(pen, state)
    async with app.run_test(size=(100, 30)) as pilot:
        mailbox, messages = await searched(pilot, word, 4)
        # t tags the highlighted row and moves on; the row shows "*"
        while messages.highlighted.subject.startswith("Untagged"):
            await pilot.press("j")
        first = messages.highlighted
        await pilot.press("t")
        await wait_for(pilot, lambda: first.id in messages.tagged and "1 tagged" in title(app))
        assert "Tagged \u201c" in status(app) and "1 row tagged" in status(app)
        await pilot.pause()
        assert len(tagged_rows(app)) == 1 and first.subject in tagged_rows(app)[0]
        # t again on it untags; ctrl+t untags all
        await pilot.press("k" if messages.cursor else "j")
        await wait_for(pilot, lambda: messages.highlighted.id == first.id or messages.cursor == 0)
        while messages.highlighted.id != first.id:
            await pilot.press("j")
        await pilot.press("t")
        await wait_for(pilot, lambda: not messages.tagged and "tagged" not in title(app))
        # * tags every row that matches the search; t on the neighbour untags it
        await pilot.press("asterisk")
        await wait_for(pilot, lambda: len(messages.tagged) == 4)
        assert f"that match \u201c{word}\u201d" in status(app) and "4 rows tagged" in status(app)
        await pilot.press("g")
        while not messages.highlighted.subject.startswith("Untagged"):
            await pilot.press("j")
        await pilot.press("t")
        await wait_for(pilot, lambda: len(messages.tagged) == 3 and "3 tagged" in title(app))
        # u: all tagged were unread, so all are marked read (the neighbour is untouched)
        await pilot.press("u")
        await wait_for(pilot, lambda: "Marked 3 messages read." in status(app))
        with pen.as_user("ann") as c:
            state_of = {m["subject"]: m["unread"]
                        for m in c.get("/messages", params={"folder": "inbox", "q": word}).json()["items"]}
        assert state_of == {**{s: False for s in subjects}, f"Untagged neighbour {word}": True}
        # d: the three go to Trash, one request each; the sentence counts them
        await pilot.press("d")
        await wait_for(pilot, lambda: "Moved 3 messages to Trash; press z to undo." in status(app))
        assert folder_of(pen, "ann", word) == {**{s: "trash" for s in subjects}, f"Untagged neighbour {word}": "inbox"}
        await wait_for(pilot, lambda: messages.total == 1 and not messages.tagged)
        assert "tagged" not in title(app)
        # z: back where they were
        await pilot.press("z")
        await wait_for(pilot, lambda: "Moved 3 messages back to Inbox" in status(app))
        assert set(folder_of(pen, "ann", word).values()) == {"inbox"}
        await wait_for(pilot, lambda: messages.total == 4)
        await pilot.press("z")
        await wait_for(pilot, lambda: status(app) == "There is no move to undo.")


async def test_a_bulk_action_says_how_many_failed_and_which(pen, send, state):
    word = token()
    kept, gone = f"Kept {word}", f"Gone meanwhile {word}"
    send("bob", ["ann"], subject=kept)
    gone_id = send("bob", ["ann"], subject=gone)["id"]
    app = app_for(pen, state)
    async with app.run_test(size=(100, 30)) as pilot:
        mailbox, messages = await searched(pilot, word, 2)
        await pilot.press("asterisk")
        await wait_for(pilot, lambda: len(messages.tagged) == 2)
        with pen.as_user("ann") as c:  # another device deletes one of them
            assert c.delete(f"/messages/{gone_id}").status_code == 204
        await pilot.press("a")
        await wait_for(pilot, lambda: "Moved 1 of 2 messages to Archive; 1 failed: \u201c" in status(app))
        said = status(app)
        assert f"\u201c{gone}\u201d (" in said and said.endswith(").") and "\n" not in said
        assert folder_of(pen, "ann", word) == {kept: "archive"}
        # the failed one stays tagged; the archived one is untagged
        assert messages.tagged == {gone_id}


async def test_delete_for_good_only_in_trash_and_only_after_yes(pen, send, state):
    word = token()
    subject = f"Delete me {word}"
    sent = send("bob", ["ann"], subject=subject)
    app = app_for(pen, state)
    async with app.run_test(size=(100, 30)) as pilot:
        mailbox, messages = await searched(pilot, word, 1)
        assert "d Trash" in rendered(app)[0].splitlines()[-1]  # the footer
        await pilot.press("D")
        await pilot.pause()
        assert status(app) == "Delete for good works in Trash; press d to move to Trash first."
        assert not isinstance(app.screen, ConfirmScreen)
        assert folder_of(pen, "ann", word) == {subject: "inbox"}
        await pilot.press("d")
        await wait_for(pilot, lambda: status(app) == f"Moved \u201c{subject}\u201d to Trash; press z to undo.")
        await pilot.press("4")
        await wait_for(pilot, lambda: mailbox.folder == "trash" and messages.total == 1
                       and messages.highlighted is not None and messages.highlighted.folder == "trash")
        # In Trash the footer does not offer to move there (D is the key here).
        await wait_for(pilot, lambda: "d Trash" not in rendered(app)[0].splitlines()[-1])
        # D asks; the cursor is on "No", and enter means No
        await pilot.press("D")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        confirm = app.screen
        await pilot.pause()
        choices = confirm.query_one("#confirm-choices")
        assert app.focused is choices and choices.highlighted == 0
        assert app.cursor_position.y == choices.content_region.y
        await wait_for(pilot, lambda: f"Delete the message \u201c{subject}\u201d for good?" in rendered(app)[0])
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.screen is mailbox and status(app) == "Nothing was deleted.")
        assert folder_of(pen, "ann", word) == {subject: "trash"}
        # escape and n are No too; y deletes
        for key in ("escape", "n"):
            await pilot.press("D")
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
            await pilot.press(key)
            await wait_for(pilot, lambda: app.screen is mailbox)
        assert folder_of(pen, "ann", word) == {subject: "trash"}
        await pilot.press("D")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await wait_for(pilot, lambda: status(app) == f"Deleted \u201c{subject}\u201d for good.")
        with pen.as_user("ann") as c:
            assert c.get(f"/messages/{sent['id']}").status_code == 404
        await wait_for(pilot, lambda: messages.total == 0)


async def test_undo_a_move_made_in_the_reader_and_one_out_of_sent(pen, send, state):
    word = token()
    subject, mine = f"Archived from the reader {word}", f"Sent then trashed {word}"
    send("bob", ["ann"], subject=subject)
    send("ann", ["bob"], subject=mine)
    app = app_for(pen, state)
    async with app.run_test(size=(100, 30)) as pilot:
        mailbox, messages = await searched(pilot, word, 1)
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.screen is not mailbox and getattr(app.screen, "body_shown", False))
        await pilot.press("a")
        await wait_for(pilot, lambda: app.screen is mailbox and messages.total == 0)
        assert folder_of(pen, "ann", word)[subject] == "archive"
        await pilot.press("z")
        await wait_for(pilot, lambda: status(app) == f"Moved \u201c{subject}\u201d back to Inbox; the move to "
                       f"Archive is undone.")
        assert folder_of(pen, "ann", word)[subject] == "inbox"
        # The PEN moves nothing into Sent: z says the message stays where it went.
        await pilot.press("2")
        await wait_for(pilot, lambda: mailbox.folder == "sent" and messages.highlighted is not None
                       and messages.highlighted.subject == mine)
        await pilot.press("d")
        await wait_for(pilot, lambda: status(app) == f"Moved \u201c{mine}\u201d to Trash.")
        await pilot.press("z")
        await wait_for(pilot, lambda: status(app) == "The PEN moves no message into Sent, so it stays in Trash; "
                                                     "move it to the inbox or the archive.")
        assert folder_of(pen, "ann", word)[mine] == "trash"


async def test_reply_reply_all_and_forward_from_the_list(pen, send, state):
    word = token()
    with pen.as_user("bob") as c:
        upload = c.post("/uploads?filename=plan.txt", content=b"plan", headers={"Content-Type": "text/plain"}).json()
    sent = send("bob", ["ann", "cat"], subject=f"Plan {word}", body="The plan is attached.\nSecond line.",
                attachments=[upload["id"]])
    app = app_for(pen, state)
    async with app.run_test(size=(100, 30)) as pilot:
        mailbox, messages = await searched(pilot, word, 1)
        # Reply to all: the sender and the others in To stay in To (docs/pen-api.md, "Replying and forwarding").
        expected = {"r": (["bob@abc.example"], []), "R": (["bob@abc.example", "cat@abc.example"], [])}
        for key, (to, cc) in expected.items():
            await pilot.press(key)
            await wait_for(pilot, lambda: isinstance(app.screen, ComposeScreen) and app.focused is not None)
            compose = app.screen
            d = compose.draft
            assert d.in_reply_to == sent["id"] and d.subject == f"Re: Plan {word}"
            assert [a.split("<")[-1].rstrip(">") for a in d.to] == to
            assert [a.split("<")[-1].rstrip(">") for a in d.cc] == cc
            assert "> The plan is attached.\n> Second line." in compose.query_one("#compose-body").text
            assert app.focused.id == "compose-body"
            await pilot.press("f12", "y")  # discard: nothing kept
            await wait_for(pilot, lambda: app.screen is mailbox)
        await pilot.press("f")
        await wait_for(pilot, lambda: isinstance(app.screen, ComposeScreen) and app.focused is not None)
        d = app.screen.draft
        assert d.forward_of == sent["id"] and d.forward_attachment_ids == [sent["attachments"][0]["id"]]
        assert "The plan is attached." in app.screen.query_one("#compose-body").text
        assert app.focused.id == "to"
