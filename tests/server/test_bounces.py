"""Bounces reach the sender: each notification goes out with its own envelope sender, a relay
that accepted it and later sends a delivery status notification to the PEN's bounce port
(or pipes it to `pen-server bounce`) makes it `bounced`, visible through the API, the event
stream and `penmail status`. Forged bounces and auto-replies change nothing, and a server
killed while recording a bounce never acknowledged it, so the relay's retry loses nothing."""

from __future__ import annotations

import json
import smtplib
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import uuid

import httpx
import pytest
from sqlalchemy import create_engine, text

from pen_devstack import free_port
from pen_server import bounces
from tests.conftest import Pen, make_pen

STRANGER = "stranger@elsewhere.example"
DIAG = "550 5.1.1 <stranger@elsewhere.example>: Recipient address rejected: User unknown"


def dsn(to: str, action: str = "failed", status: str = "5.1.1", diag: str = DIAG) -> bytes:
    """A delivery status notification as Postfix writes one (it is Auto-Submitted too)."""
    return f"""From: MAILER-DAEMON@mx.elsewhere.example (Mail Delivery System)
To: {to}
Subject: Undelivered Mail Returned to Sender
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="B0"

--B0
Content-Type: text/plain

I'm sorry to have to inform you that your message could not be delivered.

--B0
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.elsewhere.example

Final-Recipient: rfc822; {STRANGER}
Original-Recipient: rfc822;{STRANGER}
Action: {action}
Status: {status}
Diagnostic-Code: smtp; {diag}

--B0
Content-Type: text/rfc822-headers

Subject: Lab results

--B0--
""".replace("\n", "\r\n").encode()


QMAIL = """From: MAILER-DAEMON@mx.other.example
To: {to}
Subject: failure notice

Hi. This is the qmail-send program at mx.other.example.
I'm afraid I wasn't able to deliver your message to the following addresses.
This is a permanent error; I've given up. Sorry it didn't work out.

<{rcpt}>:
550 5.1.1 mailbox unavailable: no such user here

--- Below this line is a copy of the message.
"""

AUTO_REPLY = """From: {rcpt}
To: {to}
Subject: Out of office: Lab results
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: text/plain

I am away until Monday and will read your message then.
"""


@pytest.fixture(scope="module")
def bpen(tmp_path_factory, db_smtp, database):
    port = free_port()
    process = make_pen(tmp_path_factory.mktemp("bounce-pen"), db_smtp, env={"PEN_BOUNCE_PORT": str(port)},
                       database_url=database())
    process.bounce_port = port
    process.start()
    yield Pen(process, db_smtp)
    process.kill()


@pytest.fixture(autouse=True)
def _off_the_suppression_list(bpen):
    """A permanent bounce puts STRANGER on the suppression list (test_suppression.py): each
    test here starts with the list empty, so that its notifications go out."""
    with bpen.sql() as db:
        db.execute(text("DELETE FROM suppressions"))


def send(pen: Pen, to: str, who: str = "ann") -> tuple[str, str]:
    """Send a message to one address; returns its id and the envelope sender it went out with."""
    subject = f"Lab results {uuid.uuid4().hex[:6]}"
    with pen.as_user(who) as c:
        r = c.post("/messages", json={"to": [{"email": to}], "subject": subject, "body_text": "x"},
                   headers={"Idempotency-Key": uuid.uuid4().hex})
        assert r.status_code == 201, r.text
    mail = pen.mails_to(to, subject)
    assert mail, "the notification did not arrive"
    wait_status(pen, r.json()["id"], "sent", who)
    return r.json()["id"], mail[0].mail_from


def notification(pen: Pen, message_id: str, who: str = "ann") -> dict:
    with pen.as_user(who) as c:
        items = c.get(f"/messages/{message_id}/notifications").json()["items"]
    assert len(items) == 1
    return items[0]


def wait_status(pen: Pen, message_id: str, status: str, who: str = "ann", timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        n = notification(pen, message_id, who)
        if n["status"] == status or time.monotonic() > deadline:
            assert n["status"] == status, n
            return n
        time.sleep(0.1)


def relay_sends(pen: Pen, rcpt: str, data: bytes) -> None:
    with smtplib.SMTP("127.0.0.1", pen.process.bounce_port, timeout=30) as s:  # type: ignore[attr-defined]
        s.sendmail("", [rcpt], data)


class Events:
    """The sender's event stream, read in a thread until the awaited event comes; the thread
    closes its own connection (closing it from here could let it read another socket that
    reuses the descriptor)."""

    def __init__(self, pen: Pen, message_id: str, status: str, who: str = "ann"):
        self.want, self.found = (message_id, status), None
        self.frames: list = []
        self.ready, self.done = threading.Event(), threading.Event()
        self.token = pen.login(who)["access_token"]
        self.thread = threading.Thread(target=self._read, args=(pen,), daemon=True)
        self.thread.start()
        assert self.ready.wait(30)

    def _read(self, pen: Pen):
        try:
            with pen.client(self.token, timeout=httpx.Timeout(30)) as client, \
                    client.stream("GET", "/events") as r:
                event = None
                for line in r.iter_lines():
                    self.ready.set()
                    if line.startswith("event: "):
                        event = line[7:]
                    elif line.startswith("data: ") and event == "notification.updated":
                        frame = json.loads(line[6:])
                        self.frames.append(frame)
                        if (frame["message_id"], frame["status"]) == self.want:
                            self.found = frame
                            return
        finally:
            self.done.set()

    def wait(self, timeout: float = 30) -> dict:
        assert self.done.wait(timeout), f"no {self.want[1]} event: {self.frames}"
        self.thread.join()
        assert self.found, self.frames
        return self.found


def test_each_notification_has_its_own_verifiable_envelope_sender(bpen):
    _mid, first = send(bpen, "bob@abc.example")
    _mid, second = send(bpen, "bob@abc.example")
    assert first != second and first.startswith("bounces+") and first.endswith("@localhost")
    assert len(first.partition("@")[0]) <= 64
    secret = bytes.fromhex((bpen.data / "secret.key").read_text().strip())
    ident = bounces.notification_of(secret, first)
    assert ident and bounces.notification_of(secret, first.upper()) == ident  # a relay that lowercases/uppercases
    assert bounces.notification_of(b"another PEN's secret" * 2, first) is None


def test_a_dsn_from_the_relay_makes_it_bounced_everywhere(bpen, tmp_path):
    from tests.client.test_line_mode import Line

    mid, envelope = send(bpen, STRANGER)
    events = Events(bpen, mid, "bounced")
    relay_sends(bpen, envelope, dsn(envelope))
    frame = events.wait()
    assert frame["recipient"]["email"] == STRANGER
    n = notification(bpen, mid)
    assert n["status"] == "bounced" and DIAG in n["last_error"] and "5.1.1" in n["last_error"]
    done = Line(tmp_path, bpen)("status", mid)
    assert done.code == 0, done.err
    assert done.lines == [f"{STRANGER}\tto\tbounced\t1 attempt\t{DIAG}"]
    # The same DSN again (a relay's retry) changes nothing more.
    relay_sends(bpen, envelope, dsn(envelope))
    assert notification(bpen, mid) == n


def test_a_delay_is_noted_and_the_status_stays(bpen):
    mid, envelope = send(bpen, STRANGER)
    relay_sends(bpen, envelope, dsn(envelope, action="delayed", status="4.4.1",
                                     diag="451 4.4.1 mx2.elsewhere.example: connection timed out"))
    deadline = time.monotonic() + 30
    while (n := notification(bpen, mid))["last_error"] is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert n["status"] == "sent" and n["last_error"].startswith("delayed: ") and "4.4.1" in n["last_error"]


def test_forged_and_unknown_bounce_addresses_are_refused_and_change_nothing(bpen):
    mid, envelope = send(bpen, STRANGER)
    local, _, domain = envelope.partition("@")
    ident, mac = local.removeprefix("bounces+").rsplit("-", 1)
    forged = [f"bounces+{ident}-{'a' * 16}@{domain}",           # the right notification, a made-up MAC
              f"bounces+{'b' * len(ident)}-{mac}@{domain}",      # the MAC of another notification
              f"postmaster@{domain}"]
    for address in forged:
        with smtplib.SMTP("127.0.0.1", bpen.process.bounce_port, timeout=30) as s:
            s.ehlo()
            s.mail("")
            code, _ = s.rcpt(address)
            assert code == 550, address
    # Through the pipe, a forged address is dropped with a log line (exit 0: nothing to retry).
    done = pipe(bpen, dsn(forged[0]))
    assert done.returncode == 0 and "not a bounce address of this PEN, or a forged one" in done.stderr.decode()
    assert notification(bpen, mid)["status"] == "sent"


def test_an_auto_reply_is_not_a_bounce(bpen):
    mid, envelope = send(bpen, STRANGER)
    relay_sends(bpen, envelope, AUTO_REPLY.format(rcpt=STRANGER, to=envelope).encode())
    done = pipe(bpen, AUTO_REPLY.format(rcpt=STRANGER, to=envelope).replace("Auto-Submitted: auto-replied\n", "")
                .encode())
    assert done.returncode == 0 and "an auto-reply" in done.stderr.decode()
    n = notification(bpen, mid)
    assert n["status"] == "sent" and n["last_error"] is None


def pipe(pen: Pen, data: bytes) -> subprocess.CompletedProcess:
    """`pen-server bounce` as an MTA runs it: the message on standard input."""
    return subprocess.run([sys.executable, "-m", "pen_server", "bounce", "--data", str(pen.data)],
                          input=data, capture_output=True, timeout=60, encoding=None, errors=None)


def test_a_non_standard_bounce_through_the_mta_pipe(bpen):
    mid, envelope = send(bpen, STRANGER)
    done = pipe(bpen, QMAIL.format(to=envelope, rcpt=STRANGER).encode())
    assert done.returncode == 0, done.stderr
    n = notification(bpen, mid)
    assert n["status"] == "bounced" and "550 5.1.1 mailbox unavailable" in n["last_error"]


def test_a_bounce_port_in_use_is_one_sentence(bpen, monkeypatch):
    from pen_devstack import run_cli

    monkeypatch.setenv("PEN_BOUNCE_PORT", str(bpen.process.bounce_port))  # the running PEN holds it
    with pytest.raises(RuntimeError) as failed:
        run_cli("run", "--data", str(bpen.data), "--port", str(free_port()))
    assert str(failed.value) == (f"pen-server: Could not take bounces on 127.0.0.1:{bpen.process.bounce_port} "
                                 "(Address already in use); change [bounces] port or free it.")


def test_kill_9_while_recording_loses_nothing(bpen):
    mid, envelope = send(bpen, STRANGER)
    # The server's write waits on this lock: it is recording.
    if bpen.on_postgres:
        engine = create_engine(bpen.process.database_url)
        db = engine.connect()
        db.begin()
        db.execute(text("LOCK TABLE notifications IN EXCLUSIVE MODE"))  # reads go on, writes wait
    else:
        db = sqlite3.connect(bpen.data / "pen.db", isolation_level=None, timeout=30)
        db.execute("BEGIN IMMEDIATE")
    relay = socket.create_connection(("127.0.0.1", bpen.process.bounce_port), timeout=30)
    replies = relay.makefile("rb")

    def say(line: bytes) -> int:
        if line:
            relay.sendall(line)
        while (answer := replies.readline())[3:4] == b"-":
            pass
        return int(answer[:3])

    try:
        assert say(b"") == 220
        assert say(b"EHLO relay.example\r\n") == 250
        assert say(b"MAIL FROM:<>\r\n") == 250
        assert say(f"RCPT TO:<{envelope}>\r\n".encode()) == 250
        assert say(b"DATA\r\n") == 354
        relay.sendall(dsn(envelope) + b".\r\n")
        relay.settimeout(1.0)
        with pytest.raises(socket.timeout):  # no answer while the record waits for the database
            relay.recv(1)
        bpen.process.kill()  # kill -9
    finally:
        db.rollback()
        db.close()
    relay.settimeout(10)
    try:
        answer = relay.recv(100)
    except ConnectionResetError:
        answer = b""
    assert answer == b""  # never a 250: the relay keeps the bounce and tries again later
    relay.close()
    bpen.process.start()
    assert notification(bpen, mid)["status"] == "sent"  # nothing half-recorded
    relay_sends(bpen, envelope, dsn(envelope))  # the relay's retry
    assert notification(bpen, mid)["status"] == "bounced"
