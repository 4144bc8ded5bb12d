"""Nothing lost: kill -9 with 200 notifications waiting, a clean restart, a relay that is
down and then up. Each test runs its own server on its own data folder: a process where
it is killed and restarted, in this process (tests/conftest.py in_process) for the relay."""

import collections
import time
import uuid

import pytest

from pen_devstack import SmtpSink, free_port
from tests.conftest import TEARDOWN_STOP_SECONDS, Pen, in_process, make_pen


def _send_many(pen: Pen, count: int) -> str:
    with pen.as_user("ann") as c:
        subject = f"many {uuid.uuid4().hex[:6]}"
        r = c.post("/messages", headers={"Idempotency-Key": subject},
                   json={"to": [{"email": f"r{i}@outside.example"} for i in range(count)],
                         "subject": subject, "body_text": "x"})
        assert r.status_code == 201, r.text
        return subject


def _ids(sink: SmtpSink, subject: str) -> collections.Counter:
    return collections.Counter(m.message["Message-ID"] for m in list(sink.received)
                               if m.message["Subject"] == subject)


def _until(condition, timeout: float = 60.0, what: str = "the condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _wait(sink, subject, count, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and len(_ids(sink, subject)) < count:
        time.sleep(0.1)
    return _ids(sink, subject)


@pytest.mark.timeout(240)
def test_kill_9_then_restart_delivers_all_once(tmp_path, database):
    # The relay refuses for now (421 at DATA), so all 200 wait in the outbox.
    sink = SmtpSink().start()
    sink.handler.reply = "421 not now"
    process = make_pen(tmp_path / "pen", sink, database_url=database())
    # A short lease, so that what the killed server had claimed comes back within the test.
    with open(process.data / "pen-server.toml", "a") as f:
        f.write("\n[delivery]\nlease_seconds = 3\n")
    process.start()
    try:
        subject = _send_many(Pen(process, sink), 200)
        # The worker has claimed rows and tried the relay (refused).
        _until(lambda: sink.handler.sessions > 0, what="a delivery attempt")
        process.kill()  # kill -9: no chance to tidy up
        sink.handler.reply = None
        process.start()
        ids = _wait(sink, subject, 200)
        assert len(ids) == 200
        assert max(ids.values()) == 1, "a notification was sent twice"
        # A clean restart (SIGTERM) sends nothing again.
        before = sum(_ids(sink, subject).values())
        assert process.stop() == 0
        process.start()
        # A message sent after the restart is delivered after anything the restart would
        # have sent again (those rows would be due at once).
        marker = _send_many(Pen(process, sink), 1)
        assert len(_wait(sink, marker, 1)) == 1
        assert sum(_ids(sink, subject).values()) == before
    finally:
        process.stop(TEARDOWN_STOP_SECONDS)
        sink.stop()


def _tried(c, subject: str) -> bool:
    """Every notification of the message has been tried at least once and waits (the
    sender's view through the API, `c` signed in as the sender)."""
    [sent] = c.get("/messages", params={"folder": "sent", "q": subject}).json()["items"]
    items = c.get(f"/messages/{sent['id']}/notifications").json()["items"]
    return bool(items) and all(n["attempts"] >= 1 and n["status"] == "deferred" for n in items)


@pytest.mark.timeout(240)
def test_relay_down_then_up_loses_nothing(tmp_path, database):
    port = free_port()
    sink = SmtpSink(port)  # not started: the relay is down
    try:
        with in_process(make_pen(tmp_path / "pen", sink, database_url=database()), sink) as pen:
            subject = _send_many(pen, 20)
            with pen.as_user("ann") as c:
                _until(lambda: _tried(c, subject), what="a failed delivery attempt while the relay is down")
            sink.start()
            ids = _wait(sink, subject, 20)
            assert len(ids) == 20 and max(ids.values()) == 1
    finally:
        if sink.controller._thread is not None:
            sink.stop()
