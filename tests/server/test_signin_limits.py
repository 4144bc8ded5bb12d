"""Sign-in limits under hostile load, against a real server of this module's own over TLS.
It trusts X-Forwarded-For from loopback, so that each test can speak from addresses of its
own, and its delays are short (signin_max_delay 4 s) to keep the tests fast."""

from __future__ import annotations

import os
import threading
import time
import uuid

import httpx
import pytest
from sqlalchemy import text

from pen_devstack import add_user, cli_in_process
from tests.conftest import PASSWORD, TEARDOWN_STOP_SECONDS, Pen, make_pen

MAX_DELAY = 4
LIMITS = f"""
trusted_proxy = "X-Forwarded-For"
trusted_proxy_addresses = ["127.0.0.1"]
signin_max_delay = {MAX_DELAY}
address_max_delay = 8
"""


@pytest.fixture(scope="module")
def lpen(tmp_path_factory, db_smtp, database):
    # The standard cost: the flood's hashes fill the pool, and renewed hashes get its parameters.
    process = make_pen(tmp_path_factory.mktemp("limits"), db_smtp, env={"PEN_PASSWORD_COST": "standard"},
                       database_url=database())
    config = process.data / "pen-server.toml"
    config.write_text(config.read_text() + LIMITS)  # [limits] is the file's last table
    process.start()
    yield Pen(process, db_smtp)
    process.stop(TEARDOWN_STOP_SECONDS)


def _slots(seconds: float) -> int:
    """How many tries the documented delays (1, 2, 4 ... s, at most MAX_DELAY) let through in
    `seconds` once the free ones are used."""
    count, spent = 0, 0.0
    while spent + min(MAX_DELAY, 2 ** count) <= seconds:
        spent += min(MAX_DELAY, 2 ** count)
        count += 1
    return count


def _try(c: httpx.Client, email: str, password: str, address: str) -> httpx.Response:
    return c.post("/auth/login", json={"email": email, "password": password}, headers={"X-Forwarded-For": address})


def _at_once(pen: Pen, count: int, request) -> tuple[list[httpx.Response], float]:
    """`count` requests at the same moment, each on a connection made beforehand; returns
    the answers and the seconds from the start to the last answer."""
    barrier = threading.Barrier(count + 1)
    answers: list = [None] * count

    def go(i: int) -> None:
        with pen.client(timeout=120) as c:
            c.get("/health")
            barrier.wait()
            answers[i] = request(c, i)

    threads = [threading.Thread(target=go, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.monotonic()
    for t in threads:
        t.join()
    return answers, time.monotonic() - start


def _sign_in_within(pen: Pen, email: str, address: str, limit: float) -> float:
    """Signs in with the right password, waiting as Retry-After says; the seconds waited."""
    waited = 0.0
    with pen.client() as c:
        while True:
            r = _try(c, email, PASSWORD, address)
            if r.status_code == 200:
                return waited
            assert r.status_code == 429, r.text
            wait = int(r.headers["Retry-After"])
            assert 1 <= wait <= MAX_DELAY, r.headers
            waited += wait
            assert waited <= limit, f"still refused after {waited} s"
            time.sleep(wait)


def test_simultaneous_wrong_guesses_get_at_most_the_limit(lpen):
    answers, elapsed = _at_once(lpen, 100, lambda c, i: _try(c, "ann@abc.example", f"guess-{i:04d}", "10.1.0.1"))
    codes = [r.status_code for r in answers]
    assert set(codes) <= {401, 429}, codes
    # Five free failures; after them one try per delay (1 s, then 2, 4 ...).
    allowed = 5 + _slots(elapsed)
    assert 1 <= codes.count(401) <= allowed, (codes.count(401), elapsed)
    for r in answers:
        if r.status_code == 429:
            assert r.json()["error"]["code"] == "rate_limited" and int(r.headers["Retry-After"]) >= 1
    # Ann elsewhere is not slowed at all; at the guessed address, after the documented delay.
    with lpen.client() as c:
        assert _try(c, "ann@abc.example", PASSWORD, "10.1.0.2").status_code == 200
    assert _sign_in_within(lpen, "ann@abc.example", "10.1.0.1", 2 * MAX_DELAY) <= 2 * MAX_DELAY


def test_a_stranger_cannot_lock_the_person_out(lpen):
    with lpen.client() as c:
        assert _try(c, "bob@abc.example", PASSWORD, "10.2.0.1").status_code == 200  # bob's usual place
    stop = threading.Event()
    stranger: list[int] = []

    def guess() -> None:  # from a new address each time, all the while bob signs in
        with lpen.client() as c:
            n = 0
            while not stop.is_set() and n < 60:
                n += 1
                stranger.append(_try(c, "bob@abc.example", "not-his-password", f"10.3.0.{n}").status_code)

    t = threading.Thread(target=guess)
    started = time.monotonic()
    t.start()
    try:
        deadline = time.monotonic() + 60
        while stranger.count(429) < 3 and t.is_alive() and time.monotonic() < deadline:
            time.sleep(0.05)  # until the account-wide limit answers the stranger
        assert stranger.count(429) >= 3, stranger
        with lpen.client() as c:
            r = _try(c, "bob@abc.example", PASSWORD, "10.2.0.1")
        assert r.status_code == 200, r.text  # at once, where bob signed in before
    finally:
        stop.set()
        t.join()
    assert stranger.count(401) <= 20 + _slots(time.monotonic() - started), stranger
    # From a new place bob waits at most the documented maximum delay.
    assert _sign_in_within(lpen, "bob@abc.example", "10.2.0.2", MAX_DELAY) <= MAX_DELAY


def test_one_address_guessing_many_accounts_is_slowed(lpen):
    with lpen.client() as c:
        for i in range(10):
            r = _try(c, f"nobody{i}@abc.example", "guess-guess", "10.4.0.1")
            assert r.status_code == 401, r.text
        r = _try(c, "nobody10@abc.example", "guess-guess", "10.4.0.1")
        assert r.status_code == 429 and "network" in r.json()["error"]["message"]
        first = int(r.headers["Retry-After"])
        # An address the client puts in front of the header is the client's own word: the
        # last one, which the proxy saw, counts.
        r = _try(c, "nobody10@abc.example", "guess-guess", "10.99.0.1, 10.4.0.1")
        assert r.status_code == 429 and "network" in r.json()["error"]["message"]
        # Other addresses are not slowed by it.
        assert _try(c, "cat@abc.example", PASSWORD, "10.4.0.2").status_code == 200
        time.sleep(first)
        assert _try(c, "nobody11@abc.example", "guess-guess", "10.4.0.1").status_code == 401
        r = _try(c, "nobody12@abc.example", "guess-guess", "10.4.0.1")
        assert r.status_code == 429 and int(r.headers["Retry-After"]) > first  # growing


def _rss_kib(pid: int, field: str = "VmRSS") -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for {pid}")


def test_a_flood_of_sign_ins_costs_megabytes_and_other_calls_go_on(lpen):
    token = lpen.login("cat")["access_token"]
    pid = lpen.process.proc.pid
    # The peak counts from here (earlier tests of this module, run in another order, may
    # have raised it); "5" resets VmHWM to the current VmRSS (Linux 4.0 and later).
    with open(f"/proc/{pid}/clear_refs", "w") as f:
        f.write("5")
    before = _rss_kib(pid)
    slowest: list[float] = []
    flooding = threading.Event()

    def read_mail() -> None:
        with lpen.client(token) as c:
            while flooding.is_set():
                start = time.monotonic()
                assert c.get("/messages", params={"folder": "inbox"}).status_code == 200
                slowest.append(time.monotonic() - start)

    flooding.set()
    reader = threading.Thread(target=read_mail)
    reader.start()
    try:
        answers, _ = _at_once(lpen, 40, lambda c, i: _try(c, f"unknown{i}-{uuid.uuid4().hex[:6]}@abc.example",
                                                          "some password", f"10.5.0.{i + 1}"))
    finally:
        flooding.clear()
        reader.join()
    peak = _rss_kib(pid, "VmHWM")
    codes = [r.status_code for r in answers]
    # Two hashes at a time and eight waiting: 40 at once cannot all be taken (26 were 503 here).
    assert set(codes) <= {401, 503} and codes.count(401) >= 2 and codes.count(503) >= 1, codes
    for r in answers:
        if r.status_code == 503:
            assert r.json()["error"]["code"] == "unavailable" and int(r.headers["Retry-After"]) >= 1
    assert (peak - before) < 64 * 1024, f"server memory grew {(peak - before) // 1024} MiB"
    assert slowest and max(slowest) < 5, slowest


def test_old_password_hashes_are_renewed_at_sign_in(lpen):
    from argon2 import PasswordHasher

    # The library's default parameters, and the test cost (PEN_PASSWORD_COST=test, which the
    # rest of the suite runs with): both are renewed at the standard cost.
    for old in (PasswordHasher(memory_cost=65536, time_cost=3, parallelism=4).hash(PASSWORD),
                PasswordHasher(memory_cost=8, time_cost=1, parallelism=1).hash(PASSWORD)):
        with lpen.sql() as db:
            db.execute(text("update users set password_hash = :h where email = 'admin@abc.example'"), {"h": old})
        lpen.login("admin")
        with lpen.sql() as db:
            stored = db.execute(text("select password_hash from users where email = 'admin@abc.example'")).scalar()
        assert stored.startswith("$argon2id$v=19$m=19456,t=2,p=1$"), stored
        lpen.login("admin")  # and the new hash signs in


def test_the_test_cost_is_said_in_the_log_and_a_misspelt_one_refused(pen, tmp_path):
    """The suite's PENs hash at the test cost: `pen-server run` says in its log that it is for
    test suites only, and hashes are made with its parameters; a value other than test or
    standard stops any command with one sentence."""
    assert os.environ["PEN_PASSWORD_COST"] == "test"
    assert ("Passwords are hashed at the test cost (PEN_PASSWORD_COST=test), which is for test suites only: "
            "unset it for a real PEN") in pen.process.log_path.read_text()
    email = f"cost-{uuid.uuid4().hex[:8]}@abc.example"
    add_user(pen.data, email, "Cost", PASSWORD)
    assert pen.login(email)["access_token"]
    with pen.sql() as db:
        stored = db.execute(text("select password_hash from users where email = :e"), {"e": email}).scalar()
    assert stored.startswith("$argon2id$v=19$m=8,t=1,p=1$"), stored
    done = cli_in_process("user", "list", "--data", str(pen.data), env={"PEN_PASSWORD_COST": "fast"})
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == "pen-server: PEN_PASSWORD_COST must be test (for test suites only) or unset, not 'fast'.\n"


def test_one_registration_per_invitation(lpen):
    guest = f"guest-{uuid.uuid4().hex[:8]}@outside.example"
    with lpen.as_user("ann") as c:
        r = c.post("/messages", headers={"Idempotency-Key": uuid.uuid4().hex},
                   json={"to": [{"email": guest}], "subject": "Your scan", "body_text": "ready"})
        assert r.status_code == 201, r.text
    mails = lpen.mails_to(guest)
    assert mails, "the guest got no notification"
    _, token = lpen.link_token(mails[-1])
    answers, _ = _at_once(lpen, 8, lambda c, i: c.post(f"/invitations/{token}/register",
                                                      json={"display_name": f"Guest {i}", "password": f"password {i}"}))
    codes = sorted(r.status_code for r in answers)
    assert codes == [201] + [409] * 7, codes
    winner = next(i for i, r in enumerate(answers) if r.status_code == 201)
    assert all(r.json()["error"]["code"] == "account_exists" for r in answers if r.status_code == 409)
    with lpen.client() as c:
        refreshed = c.post("/auth/refresh", json={"refresh_token": answers[winner].json()["refresh_token"]})
        assert refreshed.status_code == 200
        # The account has the winner's password and name, and nobody else's.
        loser = (winner + 1) % 8
        assert _try(c, guest, f"password {loser}", "10.6.0.1").status_code == 401
        signed = _try(c, guest, f"password {winner}", "10.6.0.1")
        assert signed.status_code == 200 and signed.json()["user"]["display_name"] == f"Guest {winner}"
        # The link still says where to go, and makes no more accounts or sessions.
        assert c.get(f"/invitations/{token}").json()["registered"] is True
        again = c.post(f"/invitations/{token}/register", json={"display_name": "Late", "password": "password late"})
        assert again.status_code == 409


def test_the_proxy_header_is_not_trusted_unless_configured(pen):
    """The shared server has no trusted_proxy: X-Forwarded-For cannot make each guess look
    like another address (then the sixth would be 401, counted apart)."""
    email = f"xff-{uuid.uuid4().hex[:8]}@abc.example"
    with pen.client() as c:
        codes = [_try(c, email, "guess-guess", f"10.7.0.{i}").status_code for i in range(6)]
    assert codes == [401] * 5 + [429], codes
