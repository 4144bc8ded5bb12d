"""The delivery worker (pen_server.outbox) against real SMTP servers (aiosmtpd) and a real
database, SQLite and PostgreSQL: what the relay receives, retries, leases, stopping, and TLS."""

from __future__ import annotations

import asyncio
import email.policy
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from email.parser import BytesParser

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from sqlalchemy import select, update

from pen_server import security
from pen_server.db import Database, migrate
from pen_server.models import MailboxEntry, Message, Notification, Package, User, new_id, utcnow
from pen_server.outbox import DeliveryWorker
from pen_server.settings import Settings, SmtpSettings

SECRET = b"k" * 32
FOOTER = "Sent by ABC Medical of 123 ABC Street Beverly Hills, CA 90210, Call: (555) 555-7323"
DISCLAIMER = "Confidential: for the named recipient only."
FROM = "pen@pen.example"


# -- SMTP servers ---------------------------------------------------------------------------

@dataclass
class Mail:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    session: int

    @property
    def parsed(self):
        return BytesParser(policy=email.policy.default).parsebytes(self.data)


class Recorder:
    """Accepts everything and keeps what arrived, and on which connection."""

    def __init__(self, delay: float = 0.0):
        self.mails: list[Mail] = []
        self.sessions: dict[int, object] = {}  # keeps the sessions alive, so ids stay unique
        self.delay = delay
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        if self.delay:
            await asyncio.sleep(self.delay)
        self.keep(session, envelope)
        return "250 2.0.0 OK"

    def keep(self, session, envelope):
        with self.lock:
            self.sessions[id(session)] = session
            self.mails.append(Mail(envelope.mail_from, list(envelope.rcpt_tos),
                                   envelope.original_content, id(session)))

    def rcpts(self) -> list[str]:
        return sorted(r for m in self.mails for r in m.rcpt_tos)


class TempFailFirst(Recorder):
    """Answers 451 to the first DATA for each recipient, then accepts."""

    def __init__(self):
        super().__init__()
        self.refused: list[Mail] = []

    async def handle_DATA(self, server, session, envelope):
        first = envelope.rcpt_tos[0] not in {r for m in self.refused for r in m.rcpt_tos}
        if first:
            self.refused.append(Mail(envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content, 0))
            return "451 4.3.0 Mailbox busy, try again later"
        self.keep(session, envelope)
        return "250 2.0.0 OK"


class RejectNobody(Recorder):
    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.startswith("nobody@"):
            return "550 5.1.1 <nobody@x.example>: Recipient address rejected: User unknown"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(handler, port: int | None = None, **kw) -> Controller:
    controller = Controller(handler, hostname="127.0.0.1", port=port or free_port(), **kw)
    controller.start()
    return controller


@pytest.fixture
def servers():
    started: list[Controller] = []

    def run(handler, port=None, **kw):
        controller = start(handler, port, **kw)
        started.append(controller)
        return controller

    yield run
    for controller in started:
        controller.stop()


# -- database and worker -----------------------------------------------------------------------

class FakeHub:
    def __init__(self):
        self.events: list[tuple[str, str, dict]] = []

    def publish(self, user_id, event, data):
        self.events.append((user_id, event, data))


@pytest.fixture
def db(tmp_path, monkeypatch, database):
    """A migrated database of the test's own: a SQLite file, or a new PostgreSQL database."""
    for name in ("PEN_SMTP_HOST", "PEN_SMTP_PORT", "PEN_SMTP_SECURITY"):
        monkeypatch.delenv(name, raising=False)
    url = database() or f"sqlite:///{tmp_path / 'pen.db'}"
    migrate(url)
    database = Database(url)
    yield database
    database.dispose()


def make_settings(tmp_path, port: int, **smtp) -> Settings:
    return Settings(
        data_dir=tmp_path, name="ABC Medical PEN", base_url="https://pen.example", footer=FOOTER,
        smtp=SmtpSettings(host="127.0.0.1", port=port, security="none", from_address=FROM, timeout=5,
                          **smtp),
        retry_base_seconds=0.0, retry_max_seconds=0.0, max_attempts=5, worker_batch=100,
        worker_concurrency=4, lease_seconds=60)


def seed(db, *, to=(), cc=(), bcc=(), role="member", package="employees", disclaimer=DISCLAIMER,
         subject="Your lab results", sender_email="zoe@clinic.example", in_reply_to=None,
         thread_id=None) -> str:
    """A sent message and its outbox rows, as POST /messages writes them."""
    def addr(e):
        return {"email": e, "name": e.split("@")[0].title()} if isinstance(e, str) else e

    now = utcnow()
    with db.session() as s:
        if package and s.get(Package, package) is None:
            s.add(Package(name=package, disclaimer=disclaimer))
        sender = s.scalar(select(User).where(User.email == sender_email))
        if sender is None:
            sender = User(id=new_id(), email=sender_email, display_name="Zoe Park", role=role,
                          package=package, password_hash="x")
            s.add(sender)
        s.flush()
        lists = {"to": [addr(e) for e in to], "cc": [addr(e) for e in cc], "bcc": [addr(e) for e in bcc]}
        message = Message(id=new_id(), thread_id=thread_id or new_id(), sender_id=sender.id,
                          from_email=sender.email, from_name=sender.display_name, to_list=lists["to"],
                          cc_list=lists["cc"], bcc_list=lists["bcc"], subject=subject,
                          body_text="THE-SECRET-BODY", in_reply_to=in_reply_to, sent_at=now)
        s.add(message)
        s.flush()
        s.add(MailboxEntry(user_id=sender.id, message_id=message.id, folder="sent", unread=False,
                           is_sender=True, sent_at=now, thread_id=message.thread_id))
        position = 0
        for kind in ("to", "cc", "bcc"):
            for a in lists[kind]:
                nid = new_id()
                s.add(Notification(
                    id=nid, message_id=message.id, position=position, recipient_email=a["email"],
                    recipient_name=a["name"], kind=kind, status="queued", updated_at=now,
                    next_attempt_at=now, smtp_message_id=f"<{nid}@pen.example>",
                    token_hash=security.token_hash(security.derived_token(SECRET, "invite", nid)),
                    token_expires_at=now + timedelta(days=30)))
                position += 1
        return message.id


def rows(db, message_id=None) -> list[Notification]:
    with db.session() as s:
        q = select(Notification).order_by(Notification.position)
        if message_id:
            q = q.where(Notification.message_id == message_id)
        return list(s.scalars(q))


@pytest.fixture
async def workers():
    """Makes workers, and stops each at the end (closing its SMTP connections)."""
    made: list[DeliveryWorker] = []

    def make(db, settings, hub=None) -> DeliveryWorker:
        worker = DeliveryWorker(db, settings, SECRET, hub)
        made.append(worker)
        return worker

    yield make
    for worker in made:
        await worker.stop()


async def drain(worker: DeliveryWorker, limit: int = 50) -> int:
    total = 0
    for _ in range(limit):
        n = await worker.deliver_due()
        if n == 0:
            return total
        total += n
    raise AssertionError("the outbox never emptied")


def header_names(mail: Mail) -> set[str]:
    return {k.lower() for k in mail.parsed.keys()}


# -- what the relay receives -------------------------------------------------------------------

async def test_one_email_per_recipient_with_the_sender_headers(db, tmp_path, servers, workers):
    recorder = Recorder()
    server = servers(recorder)
    hub = FakeHub()
    mid = seed(db, to=["ann@a.example", "bob@b.example"], cc=["cat@c.example"], bcc=["dan@d.example"],
               subject="Results =?UTF-8?Q?=0A?=Bcc: x@evil.example")
    worker = workers(db, make_settings(tmp_path, server.port), hub)
    assert await drain(worker) == 4

    assert recorder.rcpts() == ["ann@a.example", "bob@b.example", "cat@c.example", "dan@d.example"]
    by_rcpt = {m.rcpt_tos[0]: m for m in recorder.mails}
    notes = {n.recipient_email: n for n in rows(db, mid)}
    for rcpt, mail in by_rcpt.items():
        assert mail.rcpt_tos == [rcpt]
        assert mail.mail_from.startswith("bounces+") and mail.mail_from.endswith("@pen.example")
        parsed = mail.parsed
        assert header_names(mail) == {"date", "from", "reply-to", "to", "cc", "subject", "message-id",
                                      "references", "auto-submitted", "mime-version", "content-type",
                                      "x-pen-message"}
        assert parsed["X-PEN-Message"] == f"https://pen.example/m/{mid}"  # the link without its token
        assert [a.addr_spec for a in parsed["To"].addresses] == ["ann@a.example", "bob@b.example"]
        assert [a.display_name for a in parsed["To"].addresses] == ["Ann", "Bob"]
        assert [a.addr_spec for a in parsed["Cc"].addresses] == ["cat@c.example"]
        assert b"dan@d.example" not in mail.data.split(b"\r\n\r\n")[0]  # Bcc: in no header
        assert parsed["Subject"] == "Results =?UTF-8?Q?=0A?=Bcc: x@evil.example"
        assert parsed["From"].addresses[0].addr_spec == FROM
        assert parsed["From"].addresses[0].display_name == "Zoe Park"
        assert parsed["Reply-To"].addresses[0].addr_spec == "zoe@clinic.example"
        assert parsed["Auto-Submitted"] == "auto-generated"
        assert parsed["Message-ID"] == notes[rcpt].smtp_message_id
        text = parsed.get_body(("plain",)).get_content()
        page = parsed.get_body(("html",)).get_content()
        token = security.derived_token(SECRET, "invite", notes[rcpt].id)
        assert security.token_hash(token) == notes[rcpt].token_hash
        assert f"https://pen.example/m/{mid}?t={token}" in text and f"/m/{mid}?t={token}" in page
        assert (
            "Zoe Park <zoe@clinic.example> sent you a secure message through ABC Medical PEN; "
            "the link below opens it in any web browser."
            in text
        )
        assert FOOTER in text and DISCLAIMER in text and DISCLAIMER in page
        assert b"THE-SECRET-BODY" not in mail.data

    for n in notes.values():
        assert (n.status, n.attempts, n.last_error, n.lease_owner, n.lease_until) == ("sent", 1, None, None, None)
    sender_id = {e[0] for e in hub.events}
    assert len(sender_id) == 1
    statuses = [(e[2]["recipient"]["email"], e[2]["status"]) for e in hub.events if e[1] == "notification.updated"]
    for rcpt in by_rcpt:
        assert [s for r, s in statuses if r == rcpt] == ["sending", "sent"]
    assert all(e[2]["message_id"] == mid for e in hub.events)


async def test_guest_sender_and_package_without_disclaimer_send_none(db, tmp_path, servers, workers):
    recorder = Recorder()
    server = servers(recorder)
    seed(db, to=["ann@a.example"], role="guest", sender_email="guest@g.example")
    seed(db, to=["bob@b.example"], package="clients", disclaimer=None, sender_email="max@clinic.example")
    seed(db, to=["cat@c.example"], package=None, sender_email="nopack@clinic.example")
    await drain(workers(db, make_settings(tmp_path, server.port), None))
    assert len(recorder.mails) == 3
    for mail in recorder.mails:
        text = mail.parsed.get_body(("plain",)).get_content()
        assert DISCLAIMER not in text and FOOTER in text


async def test_replies_thread_on_the_earlier_notification(db, tmp_path, servers, workers):
    recorder = Recorder()
    server = servers(recorder)
    worker = workers(db, make_settings(tmp_path, server.port), None)
    first = seed(db, to=["ann@a.example"], thread_id="T1")
    await drain(worker)
    reply = seed(db, to=["ann@a.example", "new@n.example"], in_reply_to=first, thread_id="T1")
    await drain(worker)
    parent_id = rows(db, first)[0].smtp_message_id
    got = {(m.rcpt_tos[0], m.parsed["Message-ID"]): m.parsed for m in recorder.mails}
    own = {n.recipient_email: n.smtp_message_id for n in rows(db, reply)}
    to_ann = got[("ann@a.example", own["ann@a.example"])]
    assert to_ann["In-Reply-To"] == parent_id
    assert to_ann["References"].split() == ["<thread.T1@pen.example>", parent_id]
    to_new = got[("new@n.example", own["new@n.example"])]  # never got the first one
    assert to_new["In-Reply-To"] == "<thread.T1@pen.example>"
    assert got[("ann@a.example", parent_id)]["References"] == "<thread.T1@pen.example>"


# -- outcomes and retries ------------------------------------------------------------------------


async def test_4xx_is_deferred_then_sent_with_the_same_message_id(db, tmp_path, servers, workers):
    recorder = TempFailFirst()
    server = servers(recorder)
    settings = make_settings(tmp_path, server.port)
    settings.retry_base_seconds, settings.retry_max_seconds = 30.0, 3600.0
    mid = seed(db, to=["ann@a.example"])
    worker = workers(db, settings, None)
    before = utcnow()
    assert await worker.deliver_due() == 1
    [n] = rows(db, mid)
    assert (n.status, n.attempts) == ("deferred", 1)
    assert n.last_error.startswith("451") and "try again later" in n.last_error
    assert before + timedelta(seconds=26) < n.next_attempt_at < utcnow() + timedelta(seconds=31)
    assert await worker.deliver_due() == 0  # not due yet
    with db.session() as s:
        s.execute(update(Notification).values(next_attempt_at=utcnow()))
    assert await worker.deliver_due() == 1
    [n] = rows(db, mid)
    assert (n.status, n.attempts, n.last_error) == ("sent", 2, None)
    first, second = recorder.refused[0].parsed, recorder.mails[0].parsed
    assert first["Message-ID"] == second["Message-ID"] == n.smtp_message_id
    assert first.get_body(("plain",)).get_content() == second.get_body(("plain",)).get_content()


async def test_delays_grow_and_give_up_after_max_attempts(db, tmp_path, servers, workers):
    class AlwaysBusy(Recorder):
        async def handle_DATA(self, server, session, envelope):
            return "452 4.2.2 Over quota for now"

    server = servers(AlwaysBusy())
    settings = make_settings(tmp_path, server.port)
    settings.retry_base_seconds, settings.retry_max_seconds, settings.max_attempts = 10.0, 35.0, 4
    mid = seed(db, to=["ann@a.example"])
    worker = workers(db, settings, None)
    delays = []
    for attempt in range(1, 5):
        with db.session() as s:
            s.execute(update(Notification).values(next_attempt_at=utcnow()))
        start_at = utcnow()
        assert await worker.deliver_due() == 1
        [n] = rows(db, mid)
        assert n.attempts == attempt
        if attempt < 4:
            assert n.status == "deferred"
            delays.append((n.next_attempt_at - start_at).total_seconds())
    assert n.status == "failed" and "452" in n.last_error and "4 attempts" in n.last_error
    assert 8.5 < delays[0] <= 10.5 and 17.5 < delays[1] <= 20.5 and 31 < delays[2] <= 35.5


async def test_5xx_fails_with_the_reply_and_the_connection_goes_on(db, tmp_path, servers, workers):
    recorder = RejectNobody()
    server = servers(recorder)
    settings = make_settings(tmp_path, server.port)
    settings.worker_concurrency = 1  # both on one connection: the refusal must not spoil it
    mid = seed(db, to=["nobody@x.example", "ann@a.example"])
    await drain(workers(db, settings, None))
    bad, good = rows(db, mid)
    assert bad.status == "failed" and bad.attempts == 1
    assert bad.last_error == "550 5.1.1 <nobody@x.example>: Recipient address rejected: User unknown"
    assert good.status == "sent"
    assert recorder.rcpts() == ["ann@a.example"] and len(recorder.sessions) == 1


async def test_relay_down_then_up_loses_nothing(db, tmp_path, servers, workers):
    port = free_port()
    mid = seed(db, to=["ann@a.example", "bob@b.example"], bcc=["dan@d.example"])
    worker = workers(db, make_settings(tmp_path, port), None)
    assert await worker.deliver_due() == 3
    for n in rows(db, mid):
        assert (n.status, n.attempts) == ("deferred", 1)
        assert "cannot reach the SMTP relay 127.0.0.1" in n.last_error
    recorder = Recorder()
    servers(recorder, port=port)
    await drain(worker)
    assert [n.status for n in rows(db, mid)] == ["sent"] * 3
    assert recorder.rcpts() == ["ann@a.example", "bob@b.example", "dan@d.example"]


async def test_relay_that_drops_the_connection_defers(db, tmp_path, workers):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()

    def drop_all():
        for _ in range(8):
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            conn.sendall(b"220 hello\r\n")
            conn.close()

    threading.Thread(target=drop_all, daemon=True).start()
    mid = seed(db, to=["ann@a.example"])
    try:
        await workers(db, make_settings(tmp_path, listener.getsockname()[1]), None).deliver_due()
    finally:
        listener.close()
    [n] = rows(db, mid)
    assert n.status == "deferred" and n.last_error


async def test_thousand_recipients_on_reused_connections(db, tmp_path, servers, workers):
    recorder = Recorder()
    server = servers(recorder)
    settings = make_settings(tmp_path, server.port)
    to = [f"to{i}@t.example" for i in range(10)]
    bcc = [f"user{i}@example.org" for i in range(990)]
    mid = seed(db, to=to, bcc=bcc)
    worker = workers(db, settings, None)
    # No time bound here (a loaded CI machine is no measure): reuse is what is checked, by
    # the count of SMTP sessions; bench/fanout.py measures the speed.
    started = time.monotonic()
    assert await drain(worker) == 1000
    elapsed = time.monotonic() - started
    assert recorder.rcpts() == sorted(to + bcc)
    assert all(len(m.rcpt_tos) == 1 for m in recorder.mails)
    assert len(recorder.sessions) <= settings.worker_concurrency
    assert {n.status for n in rows(db, mid)} == {"sent"}
    print(f"1000 notifications in {elapsed:.2f}s over {len(recorder.sessions)} connections")


# -- leases, waking and stopping ---------------------------------------------------------------


async def test_a_dead_workers_lease_is_reclaimed(db, tmp_path, servers, workers):
    recorder = Recorder()
    server = servers(recorder)
    mid = seed(db, to=["ann@a.example"])
    with db.session() as s:
        s.execute(
            update(Notification).values(
                status="sending", attempts=1, lease_owner="dead-worker", lease_until=utcnow() - timedelta(seconds=1)
            )
        )
    await drain(workers(db, make_settings(tmp_path, server.port), None))
    [n] = rows(db, mid)
    assert (n.status, n.attempts, n.lease_owner) == ("sent", 2, None)
    assert recorder.rcpts() == ["ann@a.example"]


async def test_a_live_lease_is_left_alone(db, tmp_path, servers, workers):
    recorder = Recorder()
    server = servers(recorder)
    mid = seed(db, to=["ann@a.example"])
    until = utcnow() + timedelta(minutes=5)
    with db.session() as s:
        s.execute(
            update(Notification).values(status="sending", attempts=1, lease_owner="busy-worker", lease_until=until)
        )
    assert await workers(db, make_settings(tmp_path, server.port), None).deliver_due() == 0
    [n] = rows(db, mid)
    assert (n.status, n.attempts, n.lease_owner) == ("sending", 1, "busy-worker")
    assert recorder.mails == []


async def test_the_lease_is_renewed_while_a_slow_relay_works(db, tmp_path, servers, workers):
    recorder = Recorder(delay=3.0)
    server = servers(recorder)
    settings = make_settings(tmp_path, server.port)
    settings.lease_seconds = 2.0  # renewed every second; without that it ends at 2 s
    seed(db, to=["ann@a.example"])
    slow = asyncio.create_task(workers(db, settings, None).deliver_due())
    first = None
    while first is None:  # the slow worker has claimed the row
        await asyncio.sleep(0.02)
        first = rows(db)[0].lease_until
    # Until the first lease has run out, and a renewal has moved it on.
    while utcnow() <= first or rows(db)[0].lease_until <= first:
        assert not slow.done(), "the relay answered before the first lease ran out"
        await asyncio.sleep(0.05)
    assert await workers(db, settings, None).deliver_due() == 0
    assert await slow == 1
    assert recorder.rcpts() == ["ann@a.example"] and rows(db)[0].status == "sent"


async def test_two_workers_never_send_the_same_row(db, tmp_path, servers, workers):
    recorder = Recorder()
    server = servers(recorder)
    settings = make_settings(tmp_path, server.port)
    settings.worker_batch = 7
    seed(db, bcc=[f"u{i}@example.org" for i in range(60)])
    one, two = (workers(db, settings, None) for _ in range(2))
    await asyncio.gather(drain(one), drain(two))
    assert recorder.rcpts() == sorted(f"u{i}@example.org" for i in range(60))
    assert {(n.status, n.attempts) for n in rows(db)} == {("sent", 1)}


async def test_on_postgresql_a_claim_skips_the_rows_another_claim_holds(postgres, tmp_path, servers, workers):
    """PostgreSQL: rows are picked FOR UPDATE SKIP LOCKED, so a worker neither waits for
    another process's claim in flight nor takes its rows (SQLite has one writer at a time)."""
    url = postgres.create_database()
    migrate(url)
    db = Database(url)
    recorder = Recorder()
    settings = make_settings(tmp_path, servers(recorder).port)
    settings.worker_batch = 5
    seed(db, bcc=[f"u{i:02}@example.org" for i in range(20)])
    held = db.engine.connect()
    held.begin()  # another worker's claim, between its SELECT and its commit
    locked = held.scalars(select(Notification.recipient_email).order_by(Notification.position).limit(5)
                          .with_for_update()).all()
    try:
        # Without SKIP LOCKED this claim waits until the other one commits.
        assert await asyncio.wait_for(workers(db, settings, None).deliver_due(), 15) == 5
        assert recorder.rcpts() == [f"u{i:02}@example.org" for i in range(5, 10)]
    finally:
        held.rollback()
        held.close()
    assert locked == [f"u{i:02}@example.org" for i in range(5)]
    await drain(workers(db, settings, None))
    assert recorder.rcpts() == sorted(f"u{i:02}@example.org" for i in range(20))
    assert {(n.status, n.attempts) for n in rows(db)} == {("sent", 1)}
    db.dispose()


async def test_run_wakes_at_once_and_stops_cleanly(db, tmp_path, servers, workers):
    recorder = Recorder()
    server = servers(recorder)
    worker = workers(db, make_settings(tmp_path, server.port), None)
    worker.poll_interval = 60  # only wake() can start the pass in time
    passed = asyncio.Event()
    real_pass = worker.deliver_due

    async def one_pass() -> int:  # the real pass, noting that it ran
        done = await real_pass()
        passed.set()
        return done

    worker.deliver_due = one_pass
    task = asyncio.create_task(worker.run())
    await asyncio.wait_for(passed.wait(), 10)  # the first pass found nothing; the worker waits
    seed(db, to=["ann@a.example"])
    started = time.monotonic()
    await asyncio.to_thread(worker.wake)  # as an API handler in the thread pool does
    while not recorder.mails:
        assert time.monotonic() - started < 5
        await asyncio.sleep(0.02)
    assert time.monotonic() - started < 2
    await asyncio.wait_for(worker.stop(), 5)
    assert task.done() and task.exception() is None


async def test_stop_finishes_in_flight_sends_and_a_restart_sends_none_twice(db, tmp_path, servers, workers):
    recorder = Recorder(delay=0.3)
    server = servers(recorder)
    settings = make_settings(tmp_path, server.port)
    settings.worker_concurrency = 2
    everyone = [f"u{i}@example.org" for i in range(12)]
    seed(db, bcc=everyone)
    hub = FakeHub()
    worker = workers(db, settings, hub)
    task = asyncio.create_task(worker.run())
    while not recorder.mails:
        await asyncio.sleep(0.01)
    await asyncio.wait_for(worker.stop(), 10)
    assert task.done()
    after_stop = rows(db)
    sent = sorted(n.recipient_email for n in after_stop if n.status == "sent")
    assert sent == recorder.rcpts() and 0 < len(sent) < 12  # every send in flight was recorded
    for n in after_stop:
        assert n.lease_owner is None and n.lease_until is None
        if n.status != "sent":  # handed back untouched, the try not counted
            assert (n.status, n.attempts) == ("queued", 0)
    assert hub.events[-1][2]["status"] in ("queued", "sent")

    restarted = workers(db, settings, None)
    await drain(restarted)
    assert recorder.rcpts() == sorted(everyone)  # each exactly once
    assert {n.status for n in rows(db)} == {"sent"}


async def test_a_row_that_cannot_be_built_fails_alone(db, tmp_path, servers, workers):
    recorder = Recorder()
    server = servers(recorder)
    mid = seed(db, to=["ann@a.example", "bad address@x.example"])
    await drain(workers(db, make_settings(tmp_path, server.port), None))
    states = {n.recipient_email: (n.status, n.last_error) for n in rows(db, mid)}
    # The bad address is in the To list, so no notification of this message can name it safely.
    assert all(status == "failed" and "deliverable" in error for status, error in states.values())
    assert recorder.mails == []
    other = seed(db, to=["bob@b.example"])
    await drain(workers(db, make_settings(tmp_path, server.port), None))
    assert rows(db, other)[0].status == "sent"


async def test_a_bad_from_address_defers_until_the_admin_fixes_it(db, tmp_path, servers, workers):
    recorder = Recorder()
    server = servers(recorder)
    settings = make_settings(tmp_path, server.port)
    settings.smtp.from_address = "pen@bad host\r\nBcc: x@evil.example"
    mid = seed(db, to=["ann@a.example"])
    await workers(db, settings, None).deliver_due()
    [n] = rows(db, mid)
    assert n.status == "deferred" and "from_address" in n.last_error and recorder.mails == []
    settings.smtp.from_address = FROM
    await drain(workers(db, settings, None))
    assert rows(db, mid)[0].status == "sent" and recorder.rcpts() == ["ann@a.example"]


# -- TLS and AUTH -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls():
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_ctx)
    return ca, server_ctx


def authenticator(server, session, envelope, mechanism, auth_data):
    ok = auth_data.login == b"pen" and auth_data.password == b"s3cret"
    return AuthResult(success=ok, handled=False)


async def test_starttls_with_auth_and_a_private_ca(db, tmp_path, servers, tls, workers):
    ca, server_ctx = tls
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))

    class TlsRecorder(Recorder):
        async def handle_DATA(self, server, session, envelope):
            assert session.ssl is not None and session.authenticated
            return await super().handle_DATA(server, session, envelope)

    recorder = TlsRecorder()
    server = servers(
        recorder, tls_context=server_ctx, require_starttls=True, authenticator=authenticator, auth_required=True
    )
    settings = make_settings(tmp_path, server.port, username="pen", password="s3cret", ca_file=str(ca_file))
    settings.smtp.security = "starttls"
    mid = seed(db, to=["ann@a.example"])
    await drain(workers(db, settings, None))
    assert rows(db, mid)[0].status == "sent"
    assert recorder.rcpts() == ["ann@a.example"]


async def test_implicit_tls(db, tmp_path, servers, tls, workers):
    ca, server_ctx = tls
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    recorder = Recorder()
    server = servers(recorder, ssl_context=server_ctx)
    settings = make_settings(tmp_path, server.port, ca_file=str(ca_file))
    settings.smtp.security = "tls"
    mid = seed(db, to=["ann@a.example"])
    await drain(workers(db, settings, None))
    assert rows(db, mid)[0].status == "sent" and recorder.rcpts() == ["ann@a.example"]


async def test_untrusted_relay_certificate_or_bad_login_sends_nothing(db, tmp_path, servers, tls, workers):
    _, server_ctx = tls
    other_ca = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other_ca))
    recorder = Recorder()
    server = servers(
        recorder, tls_context=server_ctx, require_starttls=True, authenticator=authenticator, auth_required=True
    )
    settings = make_settings(tmp_path, server.port, username="pen", password="s3cret", ca_file=str(other_ca))
    settings.smtp.security = "starttls"
    mid = seed(db, to=["ann@a.example"])
    await workers(db, settings, None).deliver_due()
    [n] = rows(db, mid)
    assert n.status == "deferred" and "certificate" in n.last_error.lower()

    good_ca = tmp_path / "ca.pem"
    tls[0].cert_pem.write_to_path(str(good_ca))
    settings = make_settings(tmp_path, server.port, username="pen", password="wrong", ca_file=str(good_ca))
    settings.smtp.security = "starttls"
    await workers(db, settings, None).deliver_due()
    [n] = rows(db, mid)
    assert n.status == "deferred" and n.last_error.startswith("535")  # the PEN's problem, not Ann's
    assert recorder.mails == []
