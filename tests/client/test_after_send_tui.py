"""After sending, in the TUI, driven by keys against the real server over TLS: the
notification view shows when each recipient opened the message, live from the event stream
(`message.opened`); the sender's reader withdraws it (from everyone, or from the recipients
marked; asked once, No first) and sets its end date; compose sets an end date; a
recipient's withdrawn or expired message says so in the list and the reader. Every
assertion on an action checks what the PEN has afterwards, through its API."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

from tests.client import test_notifications_tui
from tests.client.test_notifications_tui import flat
from tests.conftest import PASSWORD
from tests.tui_helpers import (
    assert_clean_render,
    at_mailbox,
    config_for,
    record_events,
    rendered,
    stream_is_up,
    wait_for,
)
from tui.app import PenmailApp
from tui.pen_client import Summary, parse_time
from tui.screens.compose import ComposeScreen
from tui.screens.notifications import NotificationsScreen
from tui.screens.reader import ReaderScreen
from tui.screens.withdraw import WithdrawScreen
from tui.text.format import long_date
from tui.widgets.message_list import MessageList
from tui.widgets.notification_table import NotificationTable

state = test_notifications_tui.state  # the fixture: a state folder of its own, no safety-net poll


def app_for(pen, state, who: str = "ann@abc.example") -> PenmailApp:
    app = PenmailApp(config_for(pen, who, tmp=state), env={"PENMAIL_PASSWORD": PASSWORD}, use_keyring=False)
    record_events(app)
    return app


def tag() -> str:
    return uuid.uuid4().hex[:8]


def status(app) -> str:
    return str(app.screen.query_one("#reader-status").render())


async def signed_in(pilot) -> None:
    await wait_for(pilot, lambda: at_mailbox(pilot.app) and stream_is_up(pilot.app))


async def ask_withdraw(pilot) -> None:
    """V in the reader, and the question is up."""
    await pilot.press("V")
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, WithdrawScreen))


async def reading(pilot, message: dict) -> ReaderScreen:
    app = pilot.app
    app.open_message(Summary.of(message))
    await wait_for(pilot, lambda: isinstance(app.screen, ReaderScreen) and (app.screen.body_shown
                                                                              or app.screen._shown.is_set()))
    return app.screen


def read_as(pen, who: str, message_id: str):
    with pen.as_user(who) as c:
        return c.get(f"/messages/{message_id}")


def server_copy(pen, message_id: str, who: str = "ann") -> dict:
    r = read_as(pen, who, message_id)
    assert r.status_code == 200, r.text
    return r.json()


async def deferred_for_a_while(pen, message_id: str, email: str, attempts: int = 5) -> None:
    """Wait until the notification to `email` has just been deferred for the `attempts`th time
    or later. The session PEN retries after 0.2 s, doubling, so right after attempt 5 the next
    is 3.2 s away: a window in which the notification is surely not being sent, whatever the
    load (a withdrawal meeting "sending" cancels nothing)."""
    import asyncio

    first = None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        n = next(n for n in server_copy(pen, message_id)["notifications"] if n["recipient"]["email"] == email)
        first = n["attempts"] if first is None else first
        if n["status"] == "deferred" and n["attempts"] >= max(attempts, first + 1):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"the notification to {email} was never deferred {attempts} times")


async def test_opened_shows_live_with_its_time(pen, send, state):
    subject = f"Opened {tag()}"
    sent = send("ann", ["bob"], cc=["cat"], subject=subject)
    async with app_for(pen, state).run_test(size=(120, 30)) as pilot:
        await signed_in(pilot)
        reader = await reading(pilot, sent)
        assert ("press n to see who was notified and who opened it, V to withdraw it, e to set its end date"
                in flat(rendered(pilot.app)[0]))
        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, NotificationsScreen) and pilot.app.screen.loaded)
        screen = pilot.app.screen
        table = screen.query_one(NotificationTable)
        assert all(n.opened_at is None for n in table.items)
        text = rendered(pilot.app)[0]
        rows = [ln for ln in text.splitlines() if "@abc.example" in ln and "):" not in ln]  # not the sentence
        assert "Opened" in text and len(rows) == 2 and all("not yet" in ln for ln in rows)
        # Bob reads it, over the API: no key is pressed here, the event stream brings it.
        assert read_as(pen, "bob", sent["id"]).status_code == 200

        def bob_opened():
            return next(n for n in table.items if n.recipient.email == "bob@abc.example").opened_at

        await wait_for(pilot, lambda: bob_opened() is not None)
        await pilot.pause(0.2)
        # What crossed the wire: the PEN's opened_at is the time shown, to the minute.
        with pen.as_user("ann") as c:
            items = {n["recipient"]["email"]: n for n in c.get(f"/messages/{sent['id']}/notifications").json()["items"]}
        opened = parse_time(items["bob@abc.example"]["opened_at"])
        assert opened is not None and items["cat@abc.example"]["opened_at"] is None
        assert bob_opened() == opened
        text = rendered(pilot.app)[0]
        bob_row = next(ln for ln in text.splitlines() if "bob@abc.example" in ln and "):" not in ln)
        cat_row = next(ln for ln in text.splitlines() if "cat@abc.example" in ln and "):" not in ln)
        assert opened.astimezone().strftime("%H:%M") in bob_row and "not yet" in cat_row
        assert "2 recipients: 2 " in flat(text) and "; 1 opened." in flat(text)
        # A second read changes nothing: opened is the first time.
        assert read_as(pen, "bob", sent["id"]).status_code == 200
        await pilot.pause(0.5)
        assert bob_opened() == opened
        # The highlighted row's sentence says it in words.
        await pilot.press("g")
        await wait_for(pilot, lambda: f"bob@abc.example (to): sent; the mail server took it after 1 attempt; "
                                      f"opened {long_date(opened)}." in flat(rendered(pilot.app)[0]))
        await pilot.press("escape")
        await wait_for(pilot, lambda: pilot.app.screen is reader)


async def test_withdraw_asks_once_and_no_is_the_default(pen, send, state):
    subject = f"Withdraw all {tag()}"
    sent = send("ann", ["bob"], cc=["cat"], subject=subject)
    async with app_for(pen, state).run_test(size=(100, 30)) as pilot:
        await signed_in(pilot)
        reader = await reading(pilot, sent)
        await ask_withdraw(pilot)
        text = flat(rendered(pilot.app)[0])
        assert f"Withdraw \u201c{subject}\u201d?" in text
        assert "> No, keep it (n, enter)" in text and "Withdraw it from everyone (y)" in text
        assert "[ ] bob@abc.example (to)" in text and "[ ] cat@abc.example (cc)" in text
        # The cursor starts on No: enter keeps it.
        await pilot.press("enter")
        await wait_for(pilot, lambda: pilot.app.screen is reader)
        assert "Not withdrawn" in status(pilot.app)
        assert read_as(pen, "bob", sent["id"]).status_code == 200
        # escape and n keep it too.
        for key in ("escape", "n"):
            await ask_withdraw(pilot)
            await pilot.press(key)
            await wait_for(pilot, lambda: pilot.app.screen is reader)
        assert read_as(pen, "cat", sent["id"]).status_code == 200
        # y withdraws it from everyone, at once: no second question.
        await ask_withdraw(pilot)
        await pilot.press("y")
        await wait_for(pilot, lambda: "Withdrew" in status(pilot.app))
        assert status(pilot.app).startswith(f"Withdrew \u201c{subject}\u201d from everyone; you keep your copy")
        for who in ("bob", "cat"):
            r = read_as(pen, who, sent["id"])
            assert r.status_code == 410 and r.json()["error"]["code"] == "revoked"
        assert read_as(pen, "ann", sent["id"]).status_code == 200  # the sender keeps reading
        copy = server_copy(pen, sent["id"])
        assert all(n["revoked_at"] for n in copy["notifications"])
        # Asked again, everyone says withdrawn, and cannot be marked again.
        await ask_withdraw(pilot)
        text = flat(rendered(pilot.app)[0])
        assert "bob@abc.example (to) (withdrawn)" in text and "[ ]" not in text
        await pilot.press("j", "j", "space")
        await wait_for(pilot, lambda: "was withdrawn before" in flat(rendered(pilot.app)[0]))
        await pilot.press("escape")


async def test_withdraw_from_the_recipients_marked(pen, send, state):
    subject = f"Withdraw some {tag()}"
    pen.smtp.handler.reply = "451 4.3.0 try again later"  # cat's notification waits: it is cancelled
    try:
        sent = send("ann", ["bob"], cc=["cat"], subject=subject)
        async with app_for(pen, state).run_test(size=(100, 30)) as pilot:
            await signed_in(pilot)
            reader = await reading(pilot, sent)
            await ask_withdraw(pilot)
            # Space on No or everyone marks nobody, and says where to go.
            await pilot.press("space")
            await wait_for(pilot, lambda: "Move to a recipient first" in flat(rendered(pilot.app)[0]))
            await pilot.press("j", "j", "j", "space")  # down to Cat, marked
            await wait_for(pilot, lambda: "[x] cat@abc.example (cc)" in flat(rendered(pilot.app)[0]))
            text = flat(rendered(pilot.app)[0])
            assert "Withdraw it from the 1 marked (y)" in text and "[ ] bob@abc.example" in text
            # The highlighted row carries ">" and the terminal cursor.
            line = rendered(pilot.app)[0].splitlines()[pilot.app.cursor_position.y]
            assert "> [x] cat@abc.example" in line
            await deferred_for_a_while(pen, sent["id"], "cat@abc.example")
            await pilot.press("y")
            await wait_for(pilot, lambda: pilot.app.screen is reader and "Withdrew" in status(pilot.app))
            assert status(pilot.app) == (f"Withdrew \u201c{subject}\u201d from cat@abc.example; you keep your copy; "
                                         f"the notification to cat@abc.example, not sent yet, was "
                                         f"cancelled.")
            r = read_as(pen, "cat", sent["id"])
            assert r.status_code == 410 and r.json()["error"]["code"] == "revoked"
            assert read_as(pen, "bob", sent["id"]).status_code == 200
            by_email = {n["recipient"]["email"]: n for n in server_copy(pen, sent["id"])["notifications"]}
            assert by_email["cat@abc.example"]["status"] == "cancelled" and by_email["cat@abc.example"]["revoked_at"]
            assert by_email["bob@abc.example"]["revoked_at"] is None
    finally:
        pen.smtp.handler.reply = None
    # The relay takes mail again: bob's goes on its next attempt; cat's, cancelled, never does.
    assert pen.mails_to("bob@abc.example", subject)
    assert pen.mails_to("cat@abc.example", subject, timeout=0) == []


async def test_the_end_date_from_the_reader(pen, send, state):
    subject = f"End date {tag()}"
    sent = send("ann", ["bob"], subject=subject)
    async with app_for(pen, state).run_test(size=(100, 30)) as pilot:
        await signed_in(pilot)
        reader = await reading(pilot, sent)
        assert "Expires:" not in rendered(pilot.app)[0]
        await pilot.press("e")
        field = reader.query_one("#end-date")
        await wait_for(pilot, lambda: pilot.app.focused is field)
        assert field.value == ""  # none yet
        # Something that is not a date: one sentence, the field stays, nothing is sent.
        await pilot.press(*"soon", "enter")
        await wait_for(pilot, lambda: "'soon' is not an end date" in status(pilot.app))
        assert pilot.app.focused is field and server_copy(pen, sent["id"])["expires_at"] is None
        await pilot.press("ctrl+u", *"7d", "enter")
        asked = datetime.now(UTC)
        await wait_for(pilot, lambda: "The recipients can read it until" in status(pilot.app))
        expires = parse_time(server_copy(pen, sent["id"])["expires_at"])
        assert expires is not None and abs(expires - (asked + timedelta(days=7))) < timedelta(seconds=30)
        assert f"Expires: {long_date(expires)}" in flat(rendered(pilot.app)[0])
        # e again offers the end date as it is; "none" removes it.
        await pilot.press("e")
        await wait_for(pilot, lambda: pilot.app.focused is field)
        assert field.value == expires.astimezone().strftime("%Y-%m-%d %H:%M")
        await pilot.press("ctrl+u", *"none", "enter")
        await wait_for(pilot, lambda: "It has no end date now" in status(pilot.app))
        assert server_copy(pen, sent["id"])["expires_at"] is None
        assert "Expires:" not in rendered(pilot.app)[0]
        # Escape closes the field, and its instructions with it: the sender's hint is back.
        await pilot.press("e")
        await wait_for(pilot, lambda: pilot.app.focused is field and "escape cancels" in status(pilot.app))
        await pilot.press("escape")
        await wait_for(pilot, lambda: not field.display)
        assert "escape cancels" not in status(pilot.app) and "You sent this message" in status(pilot.app)
        # F1 lists the new keys with their ids; the palette has them.
        await pilot.press("f1")
        await wait_for(pilot, lambda: "Withdraw: V  (id reader.withdraw)" in rendered(pilot.app)[0])
        assert "End date: e  (id reader.end_date)" in rendered(pilot.app)[0]
        await pilot.press("escape")
        commands = {c.title for c in pilot.app.get_system_commands(reader)}
        assert {"Withdraw", "End date", "Notifications"} <= commands


async def test_a_recipient_has_no_withdraw_nor_end_date(pen, send, state):
    sent = send("ann", ["bob"], subject=f"Not mine {tag()}")
    async with app_for(pen, state, "bob@abc.example").run_test(size=(100, 30)) as pilot:
        await signed_in(pilot)
        reader = await reading(pilot, sent)
        assert not reader.own
        commands = {c.title for c in pilot.app.get_system_commands(reader)}
        assert "Withdraw" not in commands and "End date" not in commands
        await pilot.press("V", "e")
        await pilot.pause(0.3)
        assert pilot.app.screen is reader and not reader.query_one("#end-date").display


async def test_compose_sets_an_end_date(pen, state):
    subject = f"Compose ends {tag()}"
    async with app_for(pen, state).run_test(size=(100, 30)) as pilot:
        await signed_in(pilot)
        await pilot.press("c")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, ComposeScreen) and pilot.app.focused is not None)
        screen = pilot.app.screen
        assert not screen.query_one("#expires-row").display  # no end date: no row
        await pilot.press(*"bob@abc.example", "tab", "tab", "tab", *subject, "tab", *"Read by Friday.")
        await pilot.press("f5")
        field = screen.query_one("#expires")
        await wait_for(pilot, lambda: pilot.app.focused is field)
        assert "Ends:" in rendered(pilot.app)[0]
        await pilot.press(*"soon")
        await wait_for(pilot, lambda: "Ends: 'soon' is not an end date" in flat(rendered(pilot.app)[0]))
        assert "!Ends:" in rendered(pilot.app)[0]
        await pilot.press("f9")  # refused here, the cursor stays in the field
        await wait_for(pilot, lambda: "Not sent: Ends:" in flat(rendered(pilot.app)[0]))
        await pilot.press("ctrl+u", *"2w", "enter")
        asked = datetime.now(UTC)
        # "2w" becomes the time it means, so the draft sends the same thing every time.
        await wait_for(pilot, lambda: field.value[:2] == "20" and len(field.value) == 16)
        fixed = datetime.fromisoformat(field.value).astimezone()
        assert abs(fixed - (asked + timedelta(weeks=2))) < timedelta(minutes=2)
        await pilot.press("f9")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, NotificationsScreen), timeout=30)
    with pen.as_user("bob") as c:
        [found] = [m for m in c.get("/messages", params={"q": f'"{subject}"'}).json()["items"]
                   if m["subject"] == subject]
    assert parse_time(found["expires_at"]) == fixed


async def test_a_recipient_s_withdrawn_and_expired_messages_say_so(pen, send, state):
    word = tag()
    withdrawn = send("ann", ["bob"], subject=f"Gone {word} withdrawn")
    soon = (datetime.now(UTC) + timedelta(seconds=3)).isoformat(timespec="seconds").replace("+00:00", "Z")
    expired = send("ann", ["bob"], subject=f"Gone {word} expired", expires_at=soon)
    later = send("ann", ["bob"], subject=f"Gone {word} later")
    with pen.as_user("ann") as c:
        assert c.post(f"/messages/{withdrawn['id']}/revoke", json={}).status_code == 200
    while datetime.now(UTC) <= parse_time(soon):
        time.sleep(0.2)
    async with app_for(pen, state, "bob@abc.example").run_test(size=(100, 30)) as pilot:
        await signed_in(pilot)
        messages = pilot.app.screen.query_one(MessageList)
        # (Words do not find a copy that can no longer be read; subject: does.)
        await pilot.press("slash", *f"subject:{word}", "enter")
        await wait_for(pilot, lambda: messages.total == 3 and messages.highlighted is not None)
        await pilot.pause(0.2)
        text = rendered(pilot.app)[0]
        assert f"(withdrawn) Gone {word} withdrawn" in text
        assert f"(expired) Gone {word} expired" in text
        assert f"Gone {word} later" in text and f"(withdrawn) Gone {word} later" not in text
        # The sender withdraws the third while it is listed here: opening it says so, and
        # its row does too from then on.
        with pen.as_user("ann") as c:
            assert c.post(f"/messages/{later['id']}/revoke", json={}).status_code == 200
        reader = await reading(pilot, later)
        await wait_for(pilot, lambda: "The sender withdrew this message" in flat(rendered(pilot.app)[0]))
        assert f"Subject: Gone {word} later" in rendered(pilot.app)[0] and reader.message is None
        # Nothing to reply to or open: those keys are gone from the footer, leaving and moving stay.
        footer = rendered(pilot.app)[0].splitlines()[-1]
        assert "Reply" not in footer and "Open link" not in footer and "Back" in footer and "Trash" in footer
        await pilot.press("r")
        await pilot.pause(0.2)
        assert pilot.app.screen is reader and "Replying" not in flat(rendered(pilot.app)[0])
        await pilot.press("escape")
        await wait_for(pilot, lambda: f"(withdrawn) Gone {word} later" in rendered(pilot.app)[0])
        await reading(pilot, expired)
        await wait_for(pilot, lambda: "it has expired" in flat(rendered(pilot.app)[0]))
        assert_clean_render(pilot.app)
