"""The notification status view against the real server over TLS and a real SMTP sink:
opened with n from the sender's copy, rows for to, cc and bcc whose statuses follow the
event stream without a key press, a failure with the mail server's reply, and r sending
the failed ones again. The SMTP sink is shared: every test puts it right in a finally."""

from __future__ import annotations

import uuid

import pytest

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
from tui.pen_client import Summary
from tui.screens.notifications import NotificationsScreen
from tui.screens.reader import ReaderScreen
from tui.widgets.notification_table import NotificationTable


@pytest.fixture
def state(tmp_path, monkeypatch):
    monkeypatch.setenv("PENMAIL_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("PENMAIL_PASSWORD", raising=False)
    # Live means the event stream: the safety-net poll must not be what updates the rows.
    monkeypatch.setattr(NotificationsScreen, "POLL_SECONDS", 3600.0)
    return tmp_path


def ann_app(pen, tmp) -> PenmailApp:
    app = PenmailApp(config_for(pen, "ann@abc.example", tmp=tmp), env={"PENMAIL_PASSWORD": PASSWORD},
                     use_keyring=False)
    record_events(app)
    return app


def statuses(screen: NotificationsScreen) -> dict[str, tuple[str, str]]:
    return {n.recipient.email: (n.kind, n.status) for n in screen.query_one(NotificationTable).items}


def flat(text: str) -> str:
    return " ".join(line.strip(" │▏▕") for line in text.splitlines() if line.strip())


async def signed_in(pilot) -> None:
    await wait_for(pilot, lambda: at_mailbox(pilot.app))
    await wait_for(pilot, lambda: stream_is_up(pilot.app))  # the event stream is up


async def open_from_reader(pilot, sent: dict) -> NotificationsScreen:
    app = pilot.app
    app.open_message(Summary.of(sent))
    await wait_for(pilot, lambda: isinstance(app.screen, ReaderScreen) and app.screen.body_shown)
    assert "You sent this message; press n to see who was notified." in rendered(app)[0]
    await pilot.press("n")
    await wait_for(pilot, lambda: isinstance(app.screen, NotificationsScreen) and app.screen.loaded)
    return app.screen


async def test_statuses_follow_the_event_stream(pen, send, state):
    subject = f"Live delivery {uuid.uuid4().hex[:8]}"
    guest = f"guest-{uuid.uuid4().hex[:6]}@elsewhere.example"
    async with ann_app(pen, state).run_test(size=(120, 40)) as pilot:
        await signed_in(pilot)
        # The relay says "later" first, so the rows are seen waiting before they are sent.
        pen.smtp.handler.reply = "451 4.3.0 try again later"
        try:
            sent = send("ann", ["bob"], cc=["cat"], bcc=[guest], subject=subject)
            screen = await open_from_reader(pilot, sent)
            assert statuses(screen) == {"bob@abc.example": ("to", statuses(screen)["bob@abc.example"][1]),
                                        "cat@abc.example": ("cc", statuses(screen)["cat@abc.example"][1]),
                                        guest: ("bcc", statuses(screen)[guest][1])}
            # (Retries go deferred, sending, deferred ... until the relay takes them.)
            await wait_for(pilot, lambda: all(s == "deferred" for _, s in statuses(screen).values())
                           and "3 recipients: 3 deferred. Updated as it happens." in flat(rendered(pilot.app)[0]))
            assert "451 4.3.0 try again later" in rendered(pilot.app)[0]
        finally:
            pen.smtp.handler.reply = None
        seen: set[str] = set()

        def all_sent() -> bool:
            seen.update(s for _, s in statuses(screen).values())
            return all(s == "sent" for _, s in statuses(screen).values())

        # No key is pressed from here on: the event stream brings every change.
        await wait_for(pilot, all_sent, timeout=45)
        await pilot.pause(0.5)
        text = rendered(pilot.app)[0]
        for who, kind in (("bob@abc.example", "to"), ("cat@abc.example", "cc"), (guest, "bcc")):
            row = next(line for line in text.splitlines() if who in line)
            assert f" {kind} " in row and " sent " in row, row
        assert "try again later" not in text  # a reply is shown only while it explains the status
        assert "3 recipients: 3 sent." in flat(text)
        # The highlighted row has the ">" and the terminal cursor; j moves both, and the
        # sentence under the table speaks for it.
        table = screen.query_one(NotificationTable)
        assert pilot.app.focused is table
        first = pilot.app.cursor_position.y
        assert text.splitlines()[first].lstrip(" │").startswith(">")
        await pilot.press("j")
        await pilot.pause()
        assert pilot.app.cursor_position.y == first + 1
        assert rendered(pilot.app)[0].splitlines()[first + 1].lstrip(" │").startswith(">")
        assert "cat@abc.example (cc): sent; the mail server took it after" in flat(rendered(pilot.app)[0])
        await pilot.press("f1")
        await wait_for(pilot, lambda: "Resend failed: r" in rendered(pilot.app)[0])
        await pilot.press("escape")
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, ReaderScreen))


async def test_a_failure_shows_the_reply_and_r_sends_it_again(pen, send, state):
    subject = f"Bounce {uuid.uuid4().hex[:8]}"
    async with ann_app(pen, state).run_test(size=(100, 30)) as pilot:
        await signed_in(pilot)
        pen.smtp.handler.reply = "550 mailbox unavailable"
        try:
            sent = send("ann", ["bob"], subject=subject)
            pilot.app.show_notifications(sent["id"], subject)
            await wait_for(pilot, lambda: isinstance(pilot.app.screen, NotificationsScreen)
                           and pilot.app.screen.loaded)
            screen = pilot.app.screen
            await wait_for(pilot, lambda: statuses(screen).get("bob@abc.example") == ("to", "failed"))
            await pilot.pause(0.5)
            text = flat(rendered(pilot.app)[0])
            assert "550 mailbox unavailable" in text
            assert ("bob@abc.example (to): failed after 1 attempt; the mail server answered: "
                    "550 mailbox unavailable; press r to send it again.") in text
            assert "Press r to send the failed ones again." in text
        finally:
            pen.smtp.handler.reply = None
        await pilot.press("r")
        await wait_for(pilot, lambda: "Queued again for bob@abc.example" in rendered(pilot.app)[0])
        await wait_for(pilot, lambda: statuses(screen).get("bob@abc.example") == ("to", "sent"), timeout=30)
        await pilot.pause(0.3)
        assert "550 mailbox unavailable" not in rendered(pilot.app)[0]
        await pilot.press("r")
        await wait_for(pilot, lambda: "No notification has failed, so there is nothing to send again."
                       in rendered(pilot.app)[0])
    assert pen.mails_to("bob@abc.example", subject=None)  # it did arrive


async def test_hostile_subject_and_names_in_the_view(pen, send, state, hostile):
    subject = f"[@click=app.quit]x[/] {uuid.uuid4().hex[:6]}"
    name = "[b]Bold[/b] [@click=app.quit]Quit[/]"
    async with ann_app(pen, state).run_test(size=(80, 24)) as pilot:
        await signed_in(pilot)
        sent = send("ann", [{"email": f"odd-{uuid.uuid4().hex[:6]}@elsewhere.example", "name": name}],
                    subject=subject)
        pilot.app.show_notifications(sent["id"], subject)
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, NotificationsScreen)
                       and pilot.app.screen.loaded)
        await pilot.pause(0.3)
        text = assert_clean_render(pilot.app)
        assert subject in text and "[b]Bold[/b]" in text
        assert pilot.app.is_running


def test_rows_and_sentences_in_words():
    from tui.pen_client import Address, Notification
    from tui.widgets.notification_table import detail, recipient_text, reply_text, summary

    failed = Notification(Address("lab@partner.example", "Partner Lab"), "bcc", "failed", 3, "550 5.1.1 no", None)
    deferred = Notification(Address("x@y.example"), "cc", "deferred", 1, "451 later", None)
    sent = Notification(Address("d@r.example", "Dana"), "to", "sent", 1, None, None)
    assert detail(failed) == ("Partner Lab <lab@partner.example> (bcc): failed after 3 attempts; the mail server "
                              "answered: 550 5.1.1 no; press r to send it again.")
    assert detail(deferred) == ("x@y.example (cc): deferred after 1 attempt, and tried again later; the mail server "
                                "answered: 451 later.")
    assert detail(sent) == "Dana <d@r.example> (to): sent; the mail server took it after 1 attempt."
    assert summary([failed, deferred, sent, sent]) == "4 recipients: 2 sent, 1 failed, 1 deferred"
    assert reply_text(sent) == "" and reply_text(failed) == "550 5.1.1 no"
    assert recipient_text(failed, 20) == "lab@partner.example"  # the address, when both do not fit


def test_a_bounce_and_a_reported_delay_in_words():
    from tui.pen_client import Address, Notification
    from tui.widgets.notification_table import detail, reply_text, summary

    said = "the recipient's mail server said: "  # how the PEN marks a bounce's words as the remote server's
    bounced = Notification(Address("x@elsewhere.example"), "to", "bounced", 1, said + "550 5.1.1 User unknown", None)
    silent = Notification(Address("z@elsewhere.example"), "to", "bounced", 1, None, None)
    delayed = Notification(Address("y@elsewhere.example"), "cc", "sent", 1, "delayed: 451 4.4.1 timed out", None)
    assert detail(bounced) == ("x@elsewhere.example (to): bounced: sent after 1 attempt, then returned as "
                               "undeliverable by the recipient's mail server, which said: 550 5.1.1 User unknown.")
    assert reply_text(bounced) == said + "550 5.1.1 User unknown"
    assert detail(silent) == ("z@elsewhere.example (to): bounced: sent after 1 attempt, then returned as "
                              "undeliverable by the recipient's mail server.")
    assert detail(delayed) == ("y@elsewhere.example (cc): sent; the mail server took it after 1 attempt; "
                               "since then: delayed: 451 4.4.1 timed out.")
    assert summary([bounced, delayed]) == "2 recipients: 1 sent, 1 bounced"


async def test_a_bounce_shows_as_a_word_with_the_reply(pen, send, state):
    """A notification that the relay took and that bounced later (piped in as an MTA would)."""
    import subprocess
    import sys
    import time

    from tests.server.test_bounces import dsn

    subject = f"Later bounce {uuid.uuid4().hex[:8]}"
    rcpt = f"gone.{uuid.uuid4().hex[:6]}@elsewhere.example"
    sent = send("ann", [rcpt], subject=subject)
    envelope = pen.mails_to(rcpt, subject)[0].mail_from
    deadline = time.monotonic() + 30
    with pen.as_user("ann") as c:  # the worker records "sent" just after the relay's 250
        while c.get(f"/messages/{sent['id']}/notifications").json()["items"][0]["status"] != "sent":
            assert time.monotonic() < deadline
            time.sleep(0.1)
    done = subprocess.run([sys.executable, "-m", "pen_server", "bounce", "--data", str(pen.data)],
                          input=dsn(envelope), capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode()
    async with ann_app(pen, state).run_test(size=(110, 30)) as pilot:
        await signed_in(pilot)
        pilot.app.show_notifications(sent["id"], subject)
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, NotificationsScreen) and pilot.app.screen.loaded)
        await pilot.pause(0.3)
        assert statuses(pilot.app.screen) == {rcpt: ("to", "bounced")}
        text = flat(rendered(pilot.app)[0])
        assert "1 recipient: 1 bounced." in text
        assert (f"{rcpt} (to): bounced: sent after 1 attempt, then returned as undeliverable by the "
                "recipient's mail server, which said: 550 5.1.1") in text
