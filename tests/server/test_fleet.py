"""A PEN as a fleet, on SQLite and on PostgreSQL with an S3 bucket: two API processes (`pen-server run` on two
ports, as two hosts behind a load balancer) and one delivery worker (`pen-server worker`) on one database, the API
processes not delivering (`PEN_DELIVERY_IN_API=0`). Everything that must be shared is:
events reach a stream open on the other process, a reconnect with Last-Event-ID to the
other process misses nothing, an upload through one downloads through the other with
Range, the sign-in limit holds across both, and a worker killed with kill -9 leaves its
notifications to the next worker, each delivered once."""

from __future__ import annotations

import asyncio
import email
import os
import threading
import time
import tomllib
import uuid
from urllib.parse import quote

import httpx
import pytest
import tomli_w
from sqlalchemy import create_engine, text

from pen_devstack import PenProcess, SinkHandler, SmtpSink, free_port
from pen_devstack.fleet import EventReader, WorkerProcess
from pen_devstack.s3 import HOW_TO_ENABLE as S3_HOW_TO_ENABLE
from pen_devstack.s3 import S3Server, rclone_binary
from pen_server.settings import load_settings
from tests.conftest import PASSWORD, TEARDOWN_STOP_SECONDS, USERS, make_pen

LEASE_SECONDS = 3


class GatedSink(SinkHandler):
    """An SMTP sink that takes the first `open_for` e-mails at once and holds every later
    MAIL FROM until `release()`; held ones are then answered 451 (their client is gone)."""

    def __init__(self):
        super().__init__()
        self.open_for: int | None = None
        self.mails = 0
        self.held = 0
        self.released = threading.Event()

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        with self.lock:
            self.mails += 1
            hold = self.open_for is not None and self.mails > self.open_for and not self.released.is_set()
            self.held += hold
        if hold:
            while not self.released.is_set():
                await asyncio.sleep(0.05)
            return "451 4.3.0 Try again later"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    def gate(self, open_for: int) -> None:
        with self.lock:
            self.open_for, self.mails, self.held = open_for, 0, 0
            self.released.clear()

    def release(self) -> None:
        self.released.set()


@pytest.fixture(scope="module")
def sink():
    s = SmtpSink(handler=GatedSink()).start()
    yield s
    s.handler.release()
    s.stop()


def _bucket(root):
    """The fleet on PostgreSQL keeps its attachments in one S3 bucket (rclone serve s3)."""
    if rclone_binary() is None:
        if os.environ.get("PEN_REQUIRE_TOOLS") == "1":
            pytest.fail(f"{S3_HOW_TO_ENABLE} (PEN_REQUIRE_TOOLS=1)")
        pytest.skip(S3_HOW_TO_ENABLE)
    return S3Server(root).start()


@pytest.fixture(scope="module")
def fleet(tmp_path_factory, sink, database):
    """(first API process, second API process, worker, the S3 server or None)."""
    root = tmp_path_factory.mktemp("fleet")
    url = database()
    bucket = _bucket(tmp_path_factory.mktemp("fleet-s3")) if url else None
    env = {"PEN_DELIVERY_IN_API": "0", **(bucket.env() if bucket else {})}
    first = make_pen(root, sink, env, database_url=url)
    config = root / "pen-server.toml"
    doc = tomllib.loads(config.read_text())
    doc.setdefault("delivery", {})["lease_seconds"] = LEASE_SECONDS
    config.write_text(tomli_w.dumps(doc))
    first.start()
    second = PenProcess(root, free_port(), smtp_port=sink.port, env=first.env).start()
    worker = WorkerProcess(root, smtp_port=sink.port, env=first.env).start()
    yield first, second, worker, bucket
    worker.stop(TEARDOWN_STOP_SECONDS)
    second.stop(2)
    first.stop(2)
    if bucket is not None:
        bucket.stop()


def _client(process: PenProcess, token: str | None = None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=process.api, verify=str(process.ca_file), headers=headers, timeout=30)


def _login(process: PenProcess, who: str) -> str:
    with _client(process) as c:
        r = c.post("/auth/login", json={"email": USERS[who][0], "password": PASSWORD})
    assert r.status_code == 200, r.text
    return r.json()["access_token"]


def _send(process: PenProcess, token: str, to: list[str], subject: str, **extra) -> dict:
    with _client(process, token) as c:
        r = c.post("/messages", json={"to": [{"email": a} for a in to], "subject": subject, "body_text": "x", **extra},
                   headers={"Idempotency-Key": uuid.uuid4().hex})
    assert r.status_code == 201, r.text
    return r.json()


def _stream(process: PenProcess, token: str, last_event_id: str | None = None) -> EventReader:
    return EventReader(process.api, process.ca_file, token, last_event_id)


def _rows(process: PenProcess, sql: str, **params) -> list:
    engine = create_engine(load_settings(process.data, env={}).database_url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(text(sql), params))
    finally:
        engine.dispose()


def _user_id(process: PenProcess, who: str) -> str:
    return _rows(process, "SELECT id FROM users WHERE email = :e", e=USERS[who][0])[0][0]


def test_a_message_sent_through_one_reaches_a_stream_open_on_the_other(fleet):
    first, second, *_ = fleet
    stream = _stream(first, _login(first, "ann"))
    try:
        sent = _send(second, _login(second, "bob"), [USERS["ann"][0]], "Across the fleet")
        events = stream.wait_for(lambda evs: any(k == "message.new" and d["id"] == sent["id"] for _, k, d in evs))
        ids = [i for i, _, _ in events]
        assert all(isinstance(i, int) for i in ids) and ids == sorted(ids)
        if load_settings(first.data, env={}).database_url.startswith("postgresql"):
            # Each process holds one LISTEN connection (the worker's starts a delivery pass).
            listening = _rows(first, "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                     "AND query = 'LISTEN pen_events'")
            assert listening == [(3,)], listening
    finally:
        stream.close()


def test_the_worker_s_events_reach_the_sender_s_stream(fleet):
    first, second, *_ = fleet
    stream = _stream(second, _login(second, "cat"))
    try:
        sent = _send(first, _login(first, "cat"), ["outside@far.example"], "Told by the worker")
        stream.wait_for(lambda evs: any(k == "notification.updated" and d["message_id"] == sent["id"]
                                        and d["status"] == "sent" for _, k, d in evs))
    finally:
        stream.close()


def test_a_reconnect_with_last_event_id_to_the_other_process_misses_nothing(fleet):
    first, second, *_ = fleet
    bob = _user_id(first, "bob")
    stream = _stream(first, _login(first, "bob"))
    token = _login(first, "ann")
    _send(first, token, [USERS["bob"][0]], "Before the break")
    seen = stream.wait_for(lambda evs: any(k == "message.new" for _, k, _ in evs))
    last = stream.last_id
    stream.close()
    # While bob is away: messages through both processes, and the worker's events for his own.
    missed = [_send(p, token, [USERS["bob"][0]], f"While away {i}")["id"] for i, p in enumerate((first, second) * 3)]
    _send(second, _login(second, "bob"), ["far@away.example"], "His own, delivered while away")
    back = _stream(second, _login(second, "bob"), last_event_id=str(last))
    try:
        events = back.wait_for(lambda evs: {d.get("id") for _, k, d in evs if k == "message.new"} >= set(missed))
        in_table = [r[0] for r in _rows(first, "SELECT id FROM events WHERE user_id = :u AND id > :i ORDER BY id",
                                        u=bob, i=last)]
        events = back.wait_for(lambda evs: {i for i, _, _ in evs} >= set(in_table))
        got = [i for i, _, _ in events]
        assert got[:len(in_table)] == in_table, "replayed out of order, twice, or with a gap"
        assert not {i for i, _, _ in events} & {i for i, _, _ in seen}
        assert all(k != "resync" for _, k, _ in events)
    finally:
        back.close()


def test_an_upload_through_one_downloads_through_the_other_with_range(fleet):
    first, second, _, bucket = fleet
    data = os.urandom((2 << 20) + 11)
    with _client(first, _login(first, "ann")) as c:
        r = c.post(f"/uploads?filename={quote('scan.bin')}", content=data,
                   headers={"Content-Type": "application/octet-stream"})
        assert r.status_code == 201, r.text
        att = r.json()
    sent = _send(first, _login(first, "ann"), [USERS["bob"][0]], "With a scan", attachments=[att["id"]])
    with _client(second, _login(second, "bob")) as c:
        part = c.get(f"/messages/{sent['id']}/attachments/{att['id']}", headers={"Range": "bytes=1000-1999"})
    assert part.status_code == 206 and part.content == data[1000:2000]
    assert part.headers["content-range"] == f"bytes 1000-1999/{len(data)}"
    if bucket is not None:  # in the bucket, not on either process's disk
        assert any(key.endswith(att["sha256"]) for key in bucket.objects())
        assert not list((first.data / "blobs").rglob(att["sha256"]))


def test_the_sign_in_limit_holds_across_both_processes(fleet):
    import hashlib

    first, second, *_ = fleet
    email = USERS["admin"][0]

    def guess(i: int) -> httpx.Response:  # alternating between the processes, from one address
        with _client((first, second)[i % 2]) as c:
            return c.post("/auth/login", json={"email": email, "password": f"wrong-{i}"})

    assert [guess(i).status_code for i in range(5)] == [401] * 5
    own = hashlib.sha256(f"own\x00{email}\x00127.0.0.1".encode()).hexdigest()
    assert _rows(first, "SELECT failures FROM signin_counts WHERE key_hash = :k", k=own) == [(5,)]
    # Five free failures in all (each process alone used to allow five: ten before any 429);
    # the next try waits 1 s, then 2 s: one of the next three comes sooner on any machine.
    later = [guess(i) for i in range(5, 8)]
    refused = [r for r in later if r.status_code == 429]
    assert refused, [r.status_code for r in later]
    assert refused[0].json()["error"]["code"] == "rate_limited" and int(refused[0].headers["Retry-After"]) >= 1


def test_a_killed_worker_s_notifications_are_delivered_by_the_next_each_once(fleet, sink):
    first, second, worker, _ = fleet
    handler: GatedSink = sink.handler
    deadline = time.monotonic() + 60
    while _rows(first, "SELECT count(*) FROM notifications WHERE status IN ('queued', 'sending', 'deferred')")[0][0]:
        assert time.monotonic() < deadline, "the earlier tests' notifications are still going out"
        time.sleep(0.1)
    worker.stop()
    before = len(sink.received)
    recipients = [f"person{i:03d}@many.example" for i in range(200)]
    sent = _send(first, _login(first, "cat"), recipients, "Two hundred at once")
    handler.gate(50)
    doomed = WorkerProcess(first.data, smtp_port=sink.port, env=first.env, name="doomed").start()

    def settled() -> bool:  # 50 accepted and recorded; the next sends held at MAIL FROM
        rows = _rows(first, "SELECT status, count(*) FROM notifications WHERE message_id = :m GROUP BY status",
                     m=sent["id"])
        return dict(rows).get("sent") == 50 and handler.held > 0

    deadline = time.monotonic() + 60
    while not settled():
        assert time.monotonic() < deadline, ("the first worker never got 50 sent with more in flight",
                                             handler.mails, handler.held, doomed.log_tail(),
                                             _rows(first, "SELECT status, count(*) FROM notifications GROUP BY status"))
        time.sleep(0.05)
    doomed.kill()  # kill -9 with 150 to go, some of them leased and in flight
    handler.release()
    worker.start()
    def statuses() -> dict:
        return dict(_rows(first, "SELECT status, count(*) FROM notifications WHERE message_id = :m GROUP BY status",
                          m=sent["id"]))

    deadline = time.monotonic() + 120
    while statuses() != {"sent": 200}:  # every row sent: none is left that could go a second time
        assert time.monotonic() < deadline, statuses()
        time.sleep(0.1)
    mails = sink.received[before:]
    ids = [email.message_from_bytes(m.data)["Message-ID"] for m in mails]
    assert len(ids) == 200 and len(set(ids)) == 200, (len(ids), len(set(ids)))
    assert sorted(r for m in mails for r in m.rcpt_tos) == recipients
