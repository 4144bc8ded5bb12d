"""The blocklist watch against a DNS server of the test's own on loopback (pen_devstack.dns):
the real PEN over TLS, on both databases, checks at start; `pen-server deliverability check`
(another process) checks at once and records it too. A zone that lists the relay's address
is reported as exactly that listing, logged once; once the zone stops listing it, none; a
resolver that does not answer is reported as not answering, never as clean, and leaves a
listing in place."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from pen_devstack.dns import DnsServer
from tests.conftest import Pen, make_pen

ZONE, CLEAN_ZONE, DOMAIN_ZONE = "bl.test.example", "clean.test.example", "dbl.test.example"
RELAY = "127.0.0.1"  # the SMTP sink, the relay of the test's PENs
LISTED_NAME = f"1.0.0.127.{ZONE}"
# How long a question waits for the silent resolver (the setting's default is 5): long
# enough for the test's DNS server to answer on a loaded machine, short enough that the
# two checks against the silent resolver wait seconds, not ten.
QUERY_SECONDS = 2
DOMAIN = "abc.example"  # of the PEN's from_address


@pytest.fixture(scope="module")
def dns_server():
    server = DnsServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def watched(tmp_path_factory, db_smtp, database, dns_server):
    process = make_pen(tmp_path_factory.mktemp("watched"), db_smtp, database_url=database())
    config = process.data / "pen-server.toml"
    config.write_text(config.read_text().replace('from_address = "pen@localhost"', f'from_address = "pen@{DOMAIN}"')
                      + f'\n[deliverability]\ndnsbl_zones = ["{ZONE}", "{CLEAN_ZONE}", "domain:{DOMAIN_ZONE}"]\n'
                        f'resolver = "{dns_server.address}"\nquery_seconds = {QUERY_SECONDS}\n')
    dns_server.records = {LISTED_NAME: ["127.0.0.2"]}
    process.start()
    yield Pen(process, db_smtp)
    process.stop(2)


def _check(pen: Pen) -> subprocess.CompletedProcess:
    """`pen-server deliverability check` as an administrator runs it beside the server."""
    env = dict(os.environ, **pen.process.env, PEN_SMTP_HOST=RELAY, PEN_SMTP_PORT=str(pen.smtp.port))
    return subprocess.run([sys.executable, "-m", "pen_server", "deliverability", "check", "--data", str(pen.data)],
                          capture_output=True, text=True, timeout=120, env=env)


def _state(pen: Pen) -> dict:
    with pen.as_user("admin") as c:
        r = c.get("/admin/deliverability")
    assert r.status_code == 200, r.text
    return r.json()


def test_listed_then_clean_then_a_silent_resolver(watched, dns_server):
    # The check at start: exactly the one listing, the other zones asked and clean.
    deadline = time.monotonic() + 30
    while (state := _state(watched))["checked_at"] is None and time.monotonic() < deadline:
        time.sleep(0.2)
    [listing] = state["listings"]
    assert {k: listing[k] for k in ("zone", "subject", "answer")} == {"zone": ZONE, "subject": RELAY,
                                                                    "answer": "127.0.0.2"}
    assert state["unanswered"] == [] and state["zones"] == [ZONE, CLEAN_ZONE, DOMAIN_ZONE]
    assert state["subjects"] == [RELAY, DOMAIN]
    assert {LISTED_NAME, f"1.0.0.127.{CLEAN_ZONE}", f"{DOMAIN}.{DOMAIN_ZONE}"} <= set(dns_server.asked)
    since = listing["since"]
    with watched.as_user("ann") as c:
        assert c.get("/admin/deliverability").status_code == 403
    logged = [line for line in watched.process.log_tail(400).splitlines() if "is listed in" in line]
    assert len(logged) == 1 and f"{RELAY} is listed in {ZONE} (answer 127.0.0.2)" in logged[0]

    # The command agrees, exits 1 while listed, and does not log the same listing again.
    done = _check(watched)
    assert done.returncode == 1, done.stderr
    assert f"LISTED     {RELAY} in {ZONE} (answer 127.0.0.2, since" in done.stdout
    assert "is listed in" not in done.stderr
    assert _state(watched)["listings"][0]["since"] == since

    # The zone stops listing it: none.
    dns_server.records = {}
    done = _check(watched)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[-1] == "Nothing is listed."
    assert f"{RELAY} is no longer listed in {ZONE}" in done.stderr
    state = _state(watched)
    assert state["listings"] == [] and state["unanswered"] == []

    # Listed again, then the resolver goes silent: not answering, never clean, and the
    # listing it can no longer see stays.
    dns_server.records = {LISTED_NAME: ["127.0.0.2"]}
    assert _check(watched).returncode == 1
    dns_server.silent = True
    try:
        done = _check(watched)
    finally:
        dns_server.silent = False
    assert done.returncode == 1, done.stdout  # still listed, as far as anyone knows
    assert done.stdout.count("NO ANSWER") == 3
    assert f"NO ANSWER  {RELAY} in {ZONE}: the resolver {dns_server.address} did not answer within {QUERY_SECONDS} s" \
        in done.stdout
    state = _state(watched)
    assert [(u["zone"], u["subject"]) for u in state["unanswered"]] == [(ZONE, RELAY), (CLEAN_ZONE, RELAY),
                                                                        (DOMAIN_ZONE, DOMAIN)]
    assert [(x["zone"], x["subject"]) for x in state["listings"]] == [(ZONE, RELAY)]

    # Nothing listed and a silent resolver: exit 3, "incomplete", never "Nothing is listed".
    dns_server.records = {}
    assert _check(watched).returncode == 0
    dns_server.silent = True
    try:
        done = _check(watched)
    finally:
        dns_server.silent = False
    assert done.returncode == 3, done.stdout
    assert "Nothing is listed." not in done.stdout
    assert done.stdout.splitlines()[-1] == ("Nothing is listed among the answers, but 3 questions got none, so this "
                                            "check is incomplete.")
    assert len(_state(watched)["unanswered"]) == 3


def test_a_refusal_code_is_not_a_listing(watched, dns_server):
    """Spamhaus answers 127.255.255.254 to questions through public resolvers: that is the
    zone refusing, reported as no answer, not as a listing."""
    dns_server.records = {LISTED_NAME: ["127.255.255.254"], f"{DOMAIN}.{DOMAIN_ZONE}": ["127.0.1.2"]}
    try:
        done = _check(watched)
    finally:
        dns_server.records = {}
    assert done.returncode == 1, done.stdout
    state = _state(watched)
    assert [(x["zone"], x["subject"], x["answer"]) for x in state["listings"]] == [(DOMAIN_ZONE, DOMAIN, "127.0.1.2")]
    [refused] = state["unanswered"]
    assert (refused["zone"], refused["subject"]) == (ZONE, RELAY)
    assert refused["reason"].startswith("the zone refused the question (answer 127.255.255.254)")
    assert _check(watched).returncode == 0
