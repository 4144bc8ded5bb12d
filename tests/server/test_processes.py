"""Operating one PEN process (SQLite): readiness, a clean SIGTERM that ends event streams at
once and lets requests in flight finish, and `--workers N` refused on SQLite in one sentence."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
import threading
import time

import pytest

from pen_devstack import PenProcess, free_port
from pen_devstack.fleet import EventReader
from tests.conftest import PASSWORD, USERS, make_pen


@pytest.fixture
def own(tmp_path, smtp):
    process = make_pen(tmp_path / "pen", smtp).start()
    yield process
    process.stop(5)


def _token(process: PenProcess, who: str = "ann") -> str:
    import httpx

    r = httpx.post(process.api + "/auth/login", json={"email": USERS[who][0], "password": PASSWORD},
                   verify=str(process.ca_file), timeout=30)
    assert r.status_code == 200, r.text
    return r.json()["access_token"]


def test_ready_names_what_does_not_answer(own):
    import httpx

    with httpx.Client(base_url=own.api, verify=str(own.ca_file), timeout=30) as c:
        assert c.get("/health").json() == {"status": "ok"}
        assert c.get("/health/ready").json() == {"status": "ready"}
        blobs = own.data / "blobs"
        blobs.rename(own.data / "blobs-away")
        try:
            r = c.get("/health/ready")
        finally:
            (own.data / "blobs-away").rename(blobs)
        assert r.status_code == 503 and r.headers["retry-after"] == "5"
        assert r.json()["error"] == {"code": "unavailable", "message": "The attachment store does not answer; "
                                     "check that it is running and reachable."}
        assert c.get("/health/ready").status_code == 200


def test_sigterm_ends_streams_at_once_and_finishes_requests_in_flight(own):
    token = _token(own)
    stream = EventReader(own.api, own.ca_file, token)
    body = os.urandom(4 << 20)
    answer: list[bytes] = []
    started = threading.Event()

    def slow_upload() -> None:  # by hand, so that it is half sent when SIGTERM comes
        head = (f"POST /api/v1/uploads?filename=big.bin HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                f"Authorization: Bearer {token}\r\nContent-Type: application/octet-stream\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode()
        with own.tls_socket(timeout=30) as s:
            s.sendall(head + body[:1 << 20])
            started.set()
            time.sleep(1.0)  # the stop begins while the rest is on its way
            for i in range(1 << 20, len(body), 1 << 18):
                s.sendall(body[i:i + (1 << 18)])
            while data := s.recv(65536):
                answer.append(data)
                if b"\r\n\r\n" in b"".join(answer) and b"}" in data:
                    break

    sender = threading.Thread(target=slow_upload)
    sender.start()
    assert started.wait(20)
    began = time.monotonic()
    own.proc.send_signal(15)
    assert stream.ended.wait(5), "the event stream held the stop up"
    sender.join(30)
    assert b"".join(answer).startswith(b"HTTP/1.1 201"), b"".join(answer)[:300]
    assert own.proc.wait(30) == 0
    assert time.monotonic() - began < 25
    with pytest.raises((ConnectionError, ssl.SSLError, OSError)):
        own.tls_socket(timeout=2)  # nothing listens any more


def test_several_api_processes_are_refused_on_sqlite(tmp_path, smtp):
    process = make_pen(tmp_path / "pen", smtp)
    done = subprocess.run([sys.executable, "-m", "pen_server", "run", "--data", str(process.data), "--port",
                           str(process.port), "--workers", "2"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "pen-server: SQLite takes one writer at a time, so more API processes would only wait for each other; "
        "run with --workers 1, or use PostgreSQL ([database] url) for several.")


def _children(pid: int) -> set[int]:
    return {int(c) for c in open(f"/proc/{pid}/task/{pid}/children").read().split()}


def _listening(url: str) -> int:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.scalar(text("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                    "AND query = 'LISTEN pen_events'"))
    finally:
        engine.dispose()


def test_workers_share_the_port_are_restarted_and_stop_together(tmp_path, smtp, postgres):
    url = postgres.create_database()
    process = make_pen(tmp_path / "pen", smtp, database_url=url)
    process.args = ("--workers", "2")
    process.start()
    try:
        deadline = time.monotonic() + 30
        while len(_children(process.proc.pid)) != 2 or _listening(url) != 2:
            assert time.monotonic() < deadline, (_children(process.proc.pid), _listening(url))
            time.sleep(0.1)
        for _ in range(20):  # every connection is answered, by whichever process takes it
            assert _token(process)
        first = _children(process.proc.pid)
        os.kill(min(first), 9)
        while len(_children(process.proc.pid) - {min(first)}) != 2 or _listening(url) != 2:
            assert time.monotonic() < deadline + 30, "the killed API process was not replaced"
            time.sleep(0.1)
        assert _token(process)
        children = _children(process.proc.pid)
        began = time.monotonic()
        process.proc.send_signal(15)
        assert process.proc.wait(45) == 0 and time.monotonic() - began < 45
        for pid in children:
            assert not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split()[2] == "Z"
    finally:
        process.stop(5)


def test_concurrent_sends_through_two_processes_cannot_pass_the_hourly_limit(tmp_path, smtp, postgres):
    """PostgreSQL: one user's sends at one moment through two processes are counted one after
    the other (the sender's row is locked), so exactly the limit of three gets through."""
    import concurrent.futures
    import uuid

    import httpx

    limits = {"PEN_SEND_MESSAGES_PER_HOUR": "3", "PEN_DELIVERY_IN_API": "0"}
    first = make_pen(tmp_path / "pen", smtp, limits, database_url=postgres.create_database()).start()
    second = PenProcess(first.data, free_port(), smtp_port=smtp.port, env=first.env).start()
    try:
        token = _token(first)
        start = threading.Barrier(8)

        def send_one(i: int) -> int:
            process = (first, second)[i % 2]
            with httpx.Client(base_url=process.api, verify=str(process.ca_file), timeout=60) as c:
                start.wait()
                return c.post("/messages", headers={"Idempotency-Key": uuid.uuid4().hex,
                                                    "Authorization": f"Bearer {token}"},
                              json={"to": [{"email": f"r{i}@outside.example"}], "subject": f"race {i}",
                                    "body_text": "x"}).status_code

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            codes = sorted(pool.map(send_one, range(8)))
        assert codes == [201] * 3 + [429] * 5, codes
    finally:
        second.stop(5)
        first.stop(5)
