"""DKIM: every notification that reaches the real SMTP sink verifies (dkimpy) against the
record that `pen-server dkim init` printed, served by a DNS stub; also after a relay adds
headers and across a key rotation. Changed content fails."""

from __future__ import annotations

import hashlib
import re
import stat
import uuid
from collections.abc import Sequence

import dkim
import pytest

from pen_devstack import run_cli
from pen_server import dkim as pen_dkim
from tests.conftest import TEARDOWN_STOP_SECONDS, USERS, make_pen

DOMAIN = "abc.example"


def published(output: str) -> dict[bytes, bytes]:
    """The DNS stub's zone: every TXT record the command printed, its strings joined."""
    zone = {}
    for name, strings in re.findall(r"^(\S+) IN TXT \( (.*) \)$", output, re.M):
        zone[name.encode()] = "".join(re.findall(r'"([^"]*)"', strings)).encode()
    assert zone, output
    return zone


def verifies(data: bytes, zone: dict) -> bool:
    return dkim.verify(data, dnsfunc=lambda name, timeout=5: zone.get(name, b""))


def tag(data: bytes, name: str) -> str:
    sig = dkim.DKIM(data)
    value = [v for k, v in sig.headers if k.lower() == b"dkim-signature"][0]
    return dkim.util.parse_tag_value(value)[name.encode()].decode()


@pytest.fixture(scope="module")
def signed_pen(tmp_path_factory, smtp):
    process = make_pen(tmp_path_factory.mktemp("dkim-pen"), smtp)
    conf = process.data / "pen-server.toml"
    conf.write_text(re.sub(r'from_address = ".*"', f'from_address = "pen@{DOMAIN}"', conf.read_text()))
    out = run_cli("dkim", "init", "--data", str(process.data), "--domain", DOMAIN, "--selector", "s1")
    process.zone = published(out)
    process.start()
    yield process
    process.stop(TEARDOWN_STOP_SECONDS)


def send_and_receive(pen, smtp, to: list[str], cc: Sequence[str] = (), who: str = "ann", **extra) -> list:
    """Send one message (a fresh subject) and wait until the sink has one e-mail per recipient."""
    import httpx

    subject = f"Results {uuid.uuid4().hex[:8]}"
    with httpx.Client(base_url=pen.api, verify=str(pen.ca_file), timeout=30) as c:
        login = c.post("/auth/login", json={"email": USERS[who][0], "password": "correct horse battery"})
        token = login.json()["access_token"]
        r = c.post("/messages", headers={"Authorization": f"Bearer {token}", "Idempotency-Key": uuid.uuid4().hex},
                   json={"to": [{"email": a} for a in to], "cc": [{"email": a} for a in cc],
                         "subject": subject, "body_text": "x", **extra})
        assert r.status_code == 201, r.text
    want = len(to) + len(cc)
    import time

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        got = [m for m in list(smtp.received) if m.message["Subject"] == subject]
        if len(got) >= want:
            return got
        time.sleep(0.05)
    raise AssertionError(f"{len(got)} of {want} notifications arrived")


def test_key_file_is_private_and_the_record_is_rsa_2048(signed_pen):
    key = signed_pen.data / "dkim" / DOMAIN / "s1.pem"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    value = signed_pen.zone[f"s1._domainkey.{DOMAIN}.".encode()]
    assert value.startswith(b"v=DKIM1; k=rsa; p=")
    import base64

    from cryptography.hazmat.primitives.serialization import load_der_public_key

    assert load_der_public_key(base64.b64decode(value.split(b"p=")[1])).key_size == 2048


def test_every_notification_verifies_and_signs_the_headers_that_matter(signed_pen, smtp):
    mails = send_and_receive(signed_pen, smtp, ["bob@abc.example", "stranger-dkim@elsewhere.example"],
                             cc=["cat@abc.example"])
    for mail in mails:
        assert verifies(mail.data, signed_pen.zone), mail.data[:600]
        assert tag(mail.data, "d") == DOMAIN and tag(mail.data, "s") == "s1"
        assert tag(mail.data, "c") == "relaxed/relaxed"
        signed = {h.strip() for h in tag(mail.data, "h").split(":")}
        assert {"from", "to", "cc", "subject", "date", "message-id", "reply-to", "in-reply-to",
                "references", "mime-version", "content-type", "content-transfer-encoding", "x-pen-message"} <= signed


def test_untouched_dkimpy_in_a_process_of_its_own_agrees(signed_pen, smtp):
    """pen_server.dkim speeds dkimpy up inside the server; dkimpy as shipped, in a process
    that never imports pen_server, verifies the result all the same (a 90-address To)."""
    import json
    import subprocess
    import sys

    mails = send_and_receive(signed_pen, smtp, [f"many{i}@elsewhere.example" for i in range(90)])
    script = ("import dkim, json, sys; zone = {k.encode(): v.encode() for k, v in json.loads(sys.argv[1]).items()}; "
              "print(dkim.verify(sys.stdin.buffer.read(), dnsfunc=lambda n, timeout=5: zone.get(n, b'')), "
              "'pen_server' in sys.modules)")
    zone = json.dumps({k.decode(): v.decode() for k, v in signed_pen.zone.items()})
    for mail in (mails[0], mails[-1]):
        done = subprocess.run([sys.executable, "-c", script, zone], input=mail.data, capture_output=True, timeout=60)
        assert done.stdout.decode().split() == ["True", "False"], done.stderr.decode()[-2000:]
        broken = mail.data.replace(b"many1@", b"manyX@", 1)
        done = subprocess.run([sys.executable, "-c", script, zone], input=broken, capture_output=True, timeout=60)
        assert done.stdout.decode().split() == ["False", "False"]


def test_a_relay_that_adds_headers_and_refolds_keeps_it_valid(signed_pen, smtp):
    mail = send_and_receive(signed_pen, smtp, ["bob@abc.example"])[0]
    relayed = (b"Received: from pen.abc.example (127.0.0.1) by mx.elsewhere.example with ESMTPS;\r\n"
               b"\tSun, 29 Nov 2026 16:00:00 +0000\r\n"
               b"Return-Path: <bounces@abc.example>\r\nX-Spam-Status: No, score=0.1\r\n" + mail.data)
    # relaxed/relaxed: a relay that changes whitespace inside a header value is fine too
    relayed = relayed.replace(b"\r\nSubject: ", b"\r\nSubject:   ", 1)
    assert verifies(relayed, signed_pen.zone)


def test_changed_content_fails(signed_pen, smtp):
    mail = send_and_receive(signed_pen, smtp, ["bob@abc.example"])[0]
    zone = signed_pen.zone
    head, _, body = mail.data.partition(b"\r\n\r\n")
    assert not verifies(head + b"\r\n\r\n" + body.replace(b"Read it here", b"Read it HERE", 1), zone)
    assert not verifies(mail.data.replace(b"Subject: Results", b"Subject: Resultz", 1), zone)
    # the message a program (penmail intercept) fetches for it cannot be changed on the way
    assert b"\r\nX-PEN-Message: https://" in head
    assert not verifies(mail.data.replace(b"\r\nX-PEN-Message: https://", b"\r\nX-PEN-Message: https://x", 1), zone)
    # a header that the notification does not have, added on the way, breaks it too
    assert b"\r\nIn-Reply-To:" not in head
    assert not verifies(b"In-Reply-To: <phish@evil.example>\r\n" + mail.data, zone)
    # and a key that is not the published one
    assert not verifies(mail.data, {k: v[:-12] + b"AAAAAAAAAAAA" for k, v in zone.items()})


def test_rotation_to_a_second_selector_leaves_no_gap(signed_pen, smtp):
    data = str(signed_pen.data)
    out = run_cli("dkim", "init", "--data", data, "--domain", DOMAIN, "--selector", "s2")
    assert "s1 still signs" in out
    zone = {**signed_pen.zone, **published(out)}
    before = send_and_receive(signed_pen, smtp, [f"r{i}@elsewhere.example" for i in range(10)])
    run_cli("dkim", "use", "--data", data, "--domain", DOMAIN, "--selector", "s2")
    after = send_and_receive(signed_pen, smtp, [f"r{i}@elsewhere.example" for i in range(10)])
    assert {tag(m.data, "s") for m in before} == {"s1"}
    assert {tag(m.data, "s") for m in after} == {"s2"}
    assert all(verifies(m.data, zone) for m in before + after)
    # once s1 is retired, s2's mail verifies without it
    with pytest.raises(RuntimeError, match="signs the notifications now"):
        run_cli("dkim", "remove", "--data", data, "--domain", DOMAIN, "--selector", "s2")
    run_cli("dkim", "remove", "--data", data, "--domain", DOMAIN, "--selector", "s1")
    only_s2 = {k: v for k, v in zone.items() if k.startswith(b"s2.")}
    assert all(verifies(m.data, only_s2) for m in after)
    later = send_and_receive(signed_pen, smtp, ["bob@abc.example"])
    assert verifies(later[0].data, only_s2)


def test_openssl_gives_dkimpys_own_signature(tmp_path):
    pen_dkim.make_key(tmp_path, DOMAIN, "t1")
    pk = dkim.crypto.parse_pem_private_key(pen_dkim.key_path(tmp_path, DOMAIN, "t1").read_bytes())
    digest = hashlib.sha256(b"the canonical headers")
    assert pen_dkim._openssl_rsa_sign(digest.copy(), pk) == pen_dkim._dkimpy_rsa_sign(digest.copy(), pk)


def test_no_signature_for_an_ip_address_and_one_log_line(tmp_path, caplog):
    signer = pen_dkim.Signer(tmp_path)
    data = b"From: <pen@127.0.0.1>\r\nSubject: x\r\n\r\nbody\r\n"
    with caplog.at_level("WARNING", logger="pen_server.dkim"):
        assert signer.sign(data, "pen@127.0.0.1") == data
        assert signer.sign(data, "pen@127.0.0.1") == data
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "IP address 127.0.0.1" in lines[0], lines
    with pytest.raises(RuntimeError, match="not the IP address"):
        run_cli("init", "--data", str(tmp_path / "p"), "--name", "X", "--base-url", "https://127.0.0.1:1")
        run_cli("dkim", "init", "--data", str(tmp_path / "p"), "--selector", "s1")
