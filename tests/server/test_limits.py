"""Hostile load (issue 16): body limits before anything is read, head and idle timeouts,
the connection cap, event streams that end with their sign-in, and the server's log.
Each test runs against a real pen-server of its own over TLS, with settings of its own."""

from __future__ import annotations

import re
import socket
import ssl
import subprocess
import sys
import threading
import time
import uuid

import httpx
import pytest

from tests.conftest import PASSWORD, TEARDOWN_STOP_SECONDS, USERS, make_pen

MiB = 1 << 20
HEAD_TIMEOUT = 2


def _configure(process, limits: str, extra: str = "") -> None:
    toml = process.data / "pen-server.toml"
    text = toml.read_text()
    assert "[limits]\n" in text
    toml.write_text(text.replace("[limits]\n", "[limits]\n" + limits, 1) + extra)


@pytest.fixture(scope="module")
def quick(tmp_path_factory, db_smtp, database):
    """Short head timeout, frequent stream checks, two streams a user, a log file."""
    process = make_pen(tmp_path_factory.mktemp("pen-limits"), db_smtp, database_url=database())
    _configure(process, f"head_timeout_seconds = {HEAD_TIMEOUT}\nbody_timeout_seconds = {HEAD_TIMEOUT}\n"
               f"handshake_timeout_seconds = {HEAD_TIMEOUT}\n"
               "stream_check_seconds = 1\nmax_event_streams = 2\n",
               '\n[log]\nfile = "pen.log"\n')
    process.start()
    yield process
    process.stop(TEARDOWN_STOP_SECONDS)


def client(process, token: str | None = None, timeout: float = 30, **kw) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=process.api, verify=str(process.ca_file), headers=headers, timeout=timeout, **kw)


def login(process, who: str, password: str = PASSWORD) -> str:
    with client(process) as c:
        r = c.post("/auth/login", json={"email": USERS[who][0], "password": password})
    assert r.status_code == 200, r.text
    return r.json()["access_token"]


def rss(process) -> int:
    status = open(f"/proc/{process.proc.pid}/status").read()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) * 1024


def post_mib(process, path: str, mib: int, chunked: bool = False) -> tuple[bytes, int]:
    """POST `mib` MiB (with a Content-Length, or chunked) by hand, as a client that reads an
    early answer; the answer and how many MiB went out. (httpx reads only after writing.)"""
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {mib * MiB}"
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n{framing}\r\n\r\n"
    chunk = b"100000\r\n" + b"x" * MiB + b"\r\n" if chunked else b"x" * MiB
    return process.post_raw(head.encode(), chunk, mib)


def closed_within(sock: ssl.SSLSocket, seconds: float) -> bool:
    """True once the server has closed the connection; False if it is still open after `seconds`."""
    sock.settimeout(seconds)
    try:
        while sock.recv(4096):
            pass
    except TimeoutError:
        return False
    except (ssl.SSLError, OSError):
        pass
    return True


# -- request bodies ---------------------------------------------------------------------------

def test_huge_bodies_are_refused_before_they_are_read(quick):
    with client(quick) as c:
        assert c.post("/auth/login", json={"email": "x@y.example", "password": "p" * 10}).status_code == 401
    before = rss(quick)
    started = time.monotonic()
    # 300 MiB with a Content-Length, without signing in: 413 before a byte is read.
    answer, sent = post_mib(quick, "/api/v1/messages", 300)
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:300]
    assert b'"too_large"' in answer and b"connection: close" in answer.lower()
    # 300 MiB chunked (no Content-Length) to the sign-in: cut off at the small limit.
    answer, sent = post_mib(quick, "/api/v1/auth/login", 300, chunked=True)
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:300]
    assert b'"too_large"' in answer and b"connection: close" in answer.lower()
    assert sent < 300
    assert time.monotonic() - started < 10
    assert rss(quick) - before < 64 * MiB


def test_a_large_message_body_only_from_a_signed_in_caller(quick):
    # Within the message limit but past the small one, without a token: 401 before the body
    # is read, so a stranger cannot make the server hold 40 MiB per connection.
    answer, sent = post_mib(quick, "/api/v1/messages", 40)
    assert answer.startswith(b"HTTP/1.1 401 "), answer[:300]
    assert b'"unauthenticated"' in answer
    assert sent < 20
    # A signed-in member sends a 2 MiB body as before.
    body = "Lab results.\n" * (2 * MiB // 13)
    with client(quick, login(quick, "ann")) as c:
        r = c.post("/messages", json={"to": [{"email": USERS["bob"][0]}], "subject": "Long", "body_text": body},
                   headers={"Idempotency-Key": uuid.uuid4().hex})
    assert r.status_code == 201, r.text
    assert len(r.json()["body_text"]) == len(body)


def test_a_refused_upload_is_not_read_to_its_end(quick):
    # Refused before its body is read: the server closes instead of reading 300 MiB to throw away.
    answer, sent = post_mib(quick, "/api/v1/uploads?filename=big.bin", 300)
    assert answer.startswith(b"HTTP/1.1 401 "), answer[:300]
    assert b"connection: close" in answer.lower()
    assert sent < 100


def test_small_calls_take_small_bodies(quick):
    with client(quick, login(quick, "ann")) as c:
        r = c.patch("/messages/whatever", content=b'{"unread": true, "pad": "' + b"x" * 200_000 + b'"}',
                    headers={"Content-Type": "application/json"})
    assert r.status_code == 413, r.text


# -- connections --------------------------------------------------------------------------------

def test_half_sent_heads_and_idle_connections_are_dropped(quick):
    half = [quick.tls_socket() for _ in range(4)]
    for s in half:
        s.sendall(b"GET /api/v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
    idle = quick.tls_socket()  # a handshake, then nothing at all
    kept = quick.tls_socket()  # one whole request, then half of the next
    kept.sendall(b"GET /api/v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    answer = b""
    while b'"ok"' not in answer:
        answer += kept.recv(4096)
    kept.sendall(b"GET /api/v1/health HTTP/1.1\r\nHo")
    started = time.monotonic()
    with client(quick) as good:  # a well-behaved client is answered all the while
        assert good.get("/health").status_code == 200
    for s in [*half, idle, kept]:
        assert closed_within(s, 20), "the server kept a connection that never sent a whole request head"
        s.close()
    assert time.monotonic() - started < 20
    with client(quick) as good:
        assert good.get("/health").status_code == 200


def test_a_tls_handshake_that_never_comes_is_given_up(quick):
    # A TCP connection that never says hello: asyncio waits 60 s by default.
    with socket.create_connection(("127.0.0.1", quick.port), timeout=20) as raw:
        started = time.monotonic()
        try:
            assert raw.recv(100) == b""
        except ConnectionResetError:
            pass
        assert time.monotonic() - started < 15


def test_a_body_that_stops_arriving_is_answered_408(quick):
    with quick.tls_socket() as s:
        s.sendall(b"POST /api/v1/auth/login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 100\r\n\r\n{\"email\": ")
        s.settimeout(20)
        answer = b""
        try:
            while data := s.recv(4096):
                answer += data
        except (ssl.SSLError, OSError):
            pass
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:300]
    assert b"stopped arriving" in answer


def test_many_half_open_connections_do_not_lock_out_a_real_client(tmp_path, smtp):
    # 256 open files: before the connection cap, 300 half-open connections used them all and
    # every new client waited for ever. The head timeout is long here, so only the cap helps.
    process = make_pen(tmp_path / "pen", smtp)
    process.nofile = 256
    _configure(process, "head_timeout_seconds = 60\n")
    process.start()
    held = []
    with client(process) as c:
        assert c.get("/health").status_code == 200
    before = rss(process)
    try:
        for _ in range(300):
            try:
                s = process.tls_socket(timeout=5)
            except OSError:
                break  # the server stopped accepting: the good client below will fail too
            s.sendall(b"GET /api/v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            held.append(s)
        for _attempt in range(3):
            with client(process, timeout=5) as good:
                assert good.get("/health").status_code == 200
        assert len(held) == 300
        # Each TLS connection waiting for its head costs little memory (asyncio's own TLS
        # layer gives each 256 KiB to begin with: 48 MiB for the 192 connections let in here).
        assert rss(process) - before < 32 * MiB
        log = process.log_tail(200)
        assert "Too many open files" not in log
        assert "pushed out at the connection cap" in log  # the cap, not the head timeout, let us in
    finally:
        for s in held:
            s.close()
        process.stop(TEARDOWN_STOP_SECONDS)


# -- event streams ----------------------------------------------------------------------------

class Stream:
    """GET /events read in a thread: `connected` once the server says so, `ended` when the
    server ends the stream cleanly."""

    def __init__(self, process, token: str):
        self.connected, self.ended = threading.Event(), threading.Event()
        self.lines: list[str] = []
        self.error: Exception | None = None
        self.thread = threading.Thread(target=self._read, args=(process, token), daemon=True)
        self.thread.start()
        assert self.connected.wait(15), self.error

    def _read(self, process, token):
        try:
            with client(process, token) as c, c.stream("GET", "/events") as r:
                assert r.status_code == 200
                for line in r.iter_lines():
                    self.lines.append(line)
                    if line.startswith(": connected"):
                        self.connected.set()
            self.ended.set()
        except Exception as exc:  # noqa: BLE001  (shown by the test that waits)
            self.error = exc

    def saw(self, text: str, timeout: float = 15) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(text in line for line in list(self.lines)):
                return True
            time.sleep(0.05)
        return False


def test_the_stream_ends_at_sign_out_and_only_that_sign_ins(quick):
    first, second = login(quick, "ann"), login(quick, "ann")
    out, stays = Stream(quick, first), Stream(quick, second)
    with client(quick, first) as c:
        assert c.post("/auth/logout").status_code == 204
    assert out.ended.wait(10), out.error or "the stream of the ended sign-in is still open"
    with client(quick, login(quick, "bob")) as c:
        r = c.post("/messages", json={"to": [{"email": USERS["ann"][0]}], "subject": "Still here", "body_text": "x"},
                   headers={"Idempotency-Key": uuid.uuid4().hex})
    assert r.status_code == 201
    assert stays.saw(r.json()["id"]), "the other sign-in's stream stopped receiving events"
    assert not stays.ended.is_set()
    assert not any(r.json()["id"] in line for line in out.lines)


def test_the_stream_ends_after_a_password_change_by_the_command_line(quick):
    stream = Stream(quick, login(quick, "cat"))
    done = subprocess.run([sys.executable, "-m", "pen_server", "user", "passwd", "--data", str(quick.data),
                           "--email", USERS["cat"][0]], input="a brand new password\n", text=True,
                          capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert stream.ended.wait(15), stream.error or "the stream outlived the password change"


def test_the_stream_ends_when_a_reused_refresh_token_ends_the_sign_in(quick):
    with client(quick) as c:
        tokens = c.post("/auth/login", json={"email": USERS["bob"][0], "password": PASSWORD}).json()
        stream = Stream(quick, tokens["access_token"])
        assert c.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]}).status_code == 200
        assert c.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]}).status_code == 401
    assert stream.ended.wait(15), stream.error or "the stream outlived its revoked sign-in"


def test_a_third_stream_ends_the_oldest(quick):
    token = login(quick, "bob")
    oldest, middle = Stream(quick, token), Stream(quick, token)
    newest = Stream(quick, token)
    assert oldest.ended.wait(10), oldest.error
    assert not middle.ended.is_set() and not newest.ended.is_set()


# -- the log --------------------------------------------------------------------------------------

def _wait_for_line(path, pattern: str, timeout: float = 15) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = path.read_text(errors="replace") if path.exists() else ""
        found = re.search(pattern, text, re.M)
        if found:
            return text
        time.sleep(0.05)
    raise AssertionError(f"no line matching {pattern!r} in {path}:\n{text[-3000:]}")


def test_run_says_where_it_listens_and_logs_requests_and_deliveries(quick):
    printed = quick.log_path.read_text().splitlines()
    assert f"pen-server listening on https://127.0.0.1:{quick.port}, data in {quick.data}" in printed
    token = login(quick, "ann")
    with client(quick, token) as c:
        assert c.get("/messages", params={"q": "secret words"}).status_code == 200
        assert c.get("/invitations/Tok3nThatMustNotBeLogged").status_code == 404
        r = c.post("/messages", json={"to": [{"email": "pat@outside.example"}], "subject": "Hi", "body_text": "x"},
                   headers={"Idempotency-Key": uuid.uuid4().hex})
    assert r.status_code == 201
    log_file = quick.data / "pen.log"
    text = _wait_for_line(log_file, r"^.* 127\.0\.0\.1 GET /api/v1/messages 200 \d+ ms$")
    text = _wait_for_line(log_file, r"delivery \S+ to outside\.example: sent$")
    assert "GET /api/v1/invitations/- 404" in text
    for secret in ("secret", "Tok3n", token, "pat@"):
        assert secret not in text
