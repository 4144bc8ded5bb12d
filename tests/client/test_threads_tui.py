"""The thread view (T), a thread opened under its newest message (space), the rest of the
thread in the reader (T, enter), and the list as a mail user expects: Sent shows whom each
message went to, the sidebar's unread counts follow reads and new mail, the current folder
carries a ">" beside its shade, names and subjects end in an ellipsis at 80 columns, and
"1 draft" in the title. Against the real PEN over TLS, by keys alone."""

from __future__ import annotations

import re
import uuid

from tests.client.test_key_bursts import app_for, state  # noqa: F401  (state: a fixture)
from tests.tui_helpers import at_mailbox, rendered, wait_for
from tui.bulk import plural
from tui.drafts import Draft, DraftStore
from tui.screens.drafts import DraftsScreen
from tui.screens.reader import ReaderScreen
from tui.widgets.message_list import MessageList
from tui.widgets.message_rows import ELLIPSIS, fit
from tui.widgets.thread_list import ThreadList


async def mailbox_of(pilot) -> tuple:
    app = pilot.app
    await wait_for(pilot, lambda: at_mailbox(app) and app.screen.query_one(MessageList).loaded_once)
    await pilot.pause()
    return app.screen, app.screen.query_one(MessageList)


def screen_line(app, text: str) -> str:
    """The one line of the screen that holds `text`."""
    [line] = [line for line in rendered(app)[0].splitlines() if text in line]
    return line


def list_row(app, text: str) -> str:
    """The message list's row that holds `text` (right of the sidebar)."""
    return screen_line(app, text).split("\u2502", 1)[1]


def sidebar_row(app, label: str) -> str:
    """The sidebar's row of a folder (left of the list)."""
    [row] = [line.split("\u2502", 1)[0] for line in rendered(app)[0].splitlines()
             if "\u2502" in line and label in line.split("\u2502", 1)[0]]
    return row


def conversation(send, pen, tag: str) -> dict:
    """In ann's inbox, a thread of three from bob (the first read), with ann's reply in her
    sent folder; and a newer message alone from cat."""
    first = send("bob", ["ann"], subject=f"Thread {tag}")
    reply = send("ann", ["bob"], subject=f"Re: Thread {tag}", in_reply_to=first["id"])
    second = send("bob", ["ann"], subject=f"Re: Thread {tag} two", in_reply_to=reply["id"])
    third = send("bob", ["ann"], subject=f"Re: Thread {tag} three", in_reply_to=second["id"])
    with pen.as_user("ann") as c:
        assert c.patch(f"/messages/{first['id']}", json={"unread": False}).status_code == 200
    alone = send("cat", ["ann"], subject=f"Alone {tag}")
    return {"first": first, "reply": reply, "second": second, "third": third, "alone": alone}


async def test_thread_view_counts_expand_and_the_thread_in_the_reader(pen, send, state):
    tag = uuid.uuid4().hex[:8]
    m = conversation(send, pen, tag)
    app = app_for(pen, state)
    async with app.run_test(size=(120, 40)) as pilot:
        mailbox, messages = await mailbox_of(pilot)
        await pilot.press("T")
        await wait_for(pilot, lambda: messages.threads and messages.loaded_once and messages.highlighted is not None
                       and messages.highlighted.id == m["alone"]["id"])
        await pilot.pause()
        assert f"Inbox ({plural(messages.total, 'thread')})" in rendered(app)[0]
        # The thread under its newest message, with its count and unread count in words.
        assert messages.summary_at(1).id == m["third"]["id"]
        row = list_row(app, f"Re: Thread {tag} three")
        assert "[3, 2 unread] Re: Thread" in row and row[2:4] == "U-"
        assert "[" not in list_row(app, f"Alone {tag}")  # one message: no count
        total = messages.total

        await pilot.press("j", "space")  # open the thread: its older messages here, newest first
        await wait_for(pilot, lambda: messages.rows == total + 2)
        await pilot.pause()
        lines = [line.split("\u2502", 1)[-1] for line in rendered(app)[0].splitlines()]
        at = [i for i, line in enumerate(lines) if f"Re: Thread {tag} three" in line][0]
        assert f"\u2514 Re: Thread {tag} two" in lines[at + 1] and lines[at + 1][2:4] == "U-"
        assert f"\u2514 Thread {tag}" in lines[at + 2] and lines[at + 2][2:4] == "--"
        assert messages.cursor == 1 and messages.highlighted.id == m["third"]["id"]

        # Reading an older one from the thread: its row and the thread's count follow.
        await pilot.press("j", "enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ReaderScreen) and app.screen.body_shown)
        reader = app.screen
        assert reader.summary.id == m["second"]["id"]
        thread = reader.query_one(ThreadList)
        await wait_for(pilot, lambda: len(thread.summaries) == 4)
        await pilot.pause()
        # The whole conversation, oldest first, ann's own reply (in Sent) too; this one said.
        assert [s.id for s in thread.summaries] == [m[k]["id"] for k in ("first", "reply", "second", "third")]
        text = rendered(app)[0]
        assert "This conversation: 4 messages" in text
        assert f"Re: Thread {tag} two  (this message)" in text and f"Re: Thread {tag}  (sent)" in text
        await pilot.press("T")  # to the thread list; the cursor on the message being read
        await wait_for(pilot, lambda: app.focused is thread)
        await pilot.pause()
        assert thread.highlighted == 2
        assert app.cursor_position.y == thread.content_region.y + 2
        await pilot.press("k", "enter")  # ann's reply: read in place of this reader
        await wait_for(pilot, lambda: isinstance(app.screen, ReaderScreen) and app.screen is not reader
                       and app.screen.body_shown)
        assert app.screen.summary.id == m["reply"]["id"] and len(app.screen_stack) == 3
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is mailbox)
        await wait_for(pilot, lambda: "[3, 1 unread] Re: Thread" in list_row(app, f"Re: Thread {tag} three"))
        assert list_row(app, f"Re: Thread {tag} two")[2:4] == "--"

        await pilot.press("k", "space")  # closes the thread from any of its rows
        await wait_for(pilot, lambda: messages.rows == total)
        assert messages.cursor == 1
        await pilot.press("T")
        await wait_for(pilot, lambda: not messages.threads and messages.loaded_once and messages.highlighted)
        await wait_for(pilot, lambda: "messages" in screen_line(app, "Inbox ("))


async def test_sent_shows_recipients_and_folder_counts_follow(pen, send, state):
    tag = uuid.uuid4().hex[:8]
    send("ann", [{"email": "bob@abc.example", "name": "Bob Stone"}, "cat"], subject=f"Sent {tag}")
    app = app_for(pen, state)
    async with app.run_test(size=(80, 24)) as pilot:
        mailbox, messages = await mailbox_of(pilot)
        with pen.as_user("ann") as c:
            unread = {f["name"]: f["unread"] for f in c.get("/folders").json()["items"]}
        await wait_for(pilot, lambda: mailbox.folder_counts.get("inbox") == unread["inbox"])
        await pilot.pause()
        assert sidebar_row(app, "Inbox").startswith(">1 Inbox") and sidebar_row(app, "Sent").startswith(" 2 Sent")
        assert sidebar_row(app, "Inbox").rstrip().endswith(str(unread["inbox"] or "Inbox"))  # no count for none

        await pilot.press("2")
        await wait_for(pilot, lambda: mailbox.folder == "sent" and messages.loaded_once
                       and messages.highlighted is not None and messages.highlighted.subject == f"Sent {tag}")
        await pilot.pause()
        assert sidebar_row(app, "Sent").startswith(">2 Sent") and sidebar_row(app, "Inbox").startswith(" 1 Inbox")
        row = list_row(app, f"Sent {tag}")
        # Whom it went to, cut with an ellipsis (where depends on the list's width: a long Sent
        # folder has a scroll bar).
        who = row.split(f"Sent {tag}")[0]
        assert "to Bob Stone," in who and who.rstrip().endswith(ELLIPSIS) and "Ann Lee" not in row

        # New mail while looking at Sent: the inbox's count goes up without a reload.
        send("bob", ["ann"], subject=f"Counted {tag}")
        await wait_for(pilot, lambda: mailbox.folder_counts.get("inbox") == unread["inbox"] + 1)
        await pilot.pause()
        assert sidebar_row(app, "Inbox").rstrip().endswith(str(unread["inbox"] + 1))
        # Read in the inbox: down again.
        await pilot.press("1")
        await wait_for(pilot, lambda: mailbox.folder == "inbox" and messages.loaded_once
                       and messages.highlighted is not None and messages.highlighted.subject == f"Counted {tag}")
        await pilot.press("u")
        await wait_for(pilot, lambda: mailbox.folder_counts.get("inbox") == unread["inbox"])
        await pilot.pause()
        assert sidebar_row(app, "Inbox").rstrip().endswith(str(unread["inbox"] or "Inbox"))


async def test_rows_fit_80_columns_with_an_ellipsis_and_one_message_is_singular(pen, send, state):
    tag = uuid.uuid4().hex[:8]
    long_name = "Catherine Moss-Featherstonehaugh of the Riverside Clinic"
    long_subject = f"Long {tag} " + "about the quarterly review of the clinic's patient records " * 2
    send("ann", [{"email": "cat@abc.example", "name": long_name}], subject=long_subject)
    store = DraftStore(state / "state" / "drafts")
    store.save(Draft(to=[f"{long_name} <cat@abc.example>"], subject=f"Draft {tag}", body="..."))
    app = app_for(pen, state)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, DraftsScreen))  # offered at sign-in: later
        await pilot.press("escape")
        mailbox, messages = await mailbox_of(pilot)
        await pilot.press("2")
        await wait_for(pilot, lambda: mailbox.folder == "sent" and messages.loaded_once
                       and messages.highlighted is not None and messages.highlighted.subject == long_subject)
        await pilot.pause()
        assert len(screen_line(app, f"Long {tag}")) == 80
        row = list_row(app, f"Long {tag}")
        width = messages.scrollable_content_region.width
        who = fit(f"to {long_name}", max(8, min(24, width // 4)))
        assert who.endswith(ELLIPSIS) and who in row  # the name, cut with an ellipsis
        subject = row.split(who, 1)[1]  # the subject, cut with an ellipsis, then the date
        assert subject.startswith(f" Long {tag} about the") and ELLIPSIS + " " in subject
        assert long_subject not in row

        # A search that finds one message: "1 of N messages matches", not "1 ... match".
        await pilot.press("slash", *f"Long {tag}", "enter")
        await wait_for(pilot, lambda: mailbox.query_text and messages.loaded_once and messages.total == 1
                       and "matches" in rendered(app)[0])
        assert re.search(rf"Sent: 1 of \d+ messages? matches Long {tag}", screen_line(app, "Sent: "))
        await pilot.press("escape")  # the search cleared
        await wait_for(pilot, lambda: not mailbox.query_text)
        # One draft: "1 draft", not "1 drafts"; its row shows whom it is to.
        await pilot.press("5")
        await wait_for(pilot, lambda: mailbox.folder == "drafts" and messages.loaded_once and messages.total == 1)
        await pilot.pause()
        assert "Drafts (1 draft)" in screen_line(app, "penmail")
        assert f"to {long_name[:10]}" in list_row(app, f"Draft {tag}")
