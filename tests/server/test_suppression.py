"""The suppression list against the real server over TLS, on both databases: after a real
DSN for an address (sent to the bounce port, as a relay does), the next message to it shows
`suppressed` with the date and the reason at once (the API's answer, the event stream, the
web page), and the SMTP sink receives nothing for it; an administrator lists the address and
takes it off the list, after which a resend goes out. A notification queued before the bounce
is suppressed when the worker claims it. A temporary failure never suppresses."""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from urllib.parse import quote

import httpx
import pytest

from pen_devstack import run_cli
from tests.conftest import PASSWORD, USERS, Pen
from tests.server.test_bounces import (
    DIAG,
    SAID,
    bpen,  # noqa: F401 - the fixture: a PEN with a bounce port
    dsn,
    notification,
    relay_sends,
    send,
    wait_status,
)
from tests.web.conftest import Web

SINCE = re.compile(r"^on the suppression list since \d{4}-\d\d-\d\d \d\d:\d\d UTC, after a permanent bounce: ")


def gone_address() -> str:
    return f"gone-{uuid.uuid4().hex[:8]}@elsewhere.example"


def bounced(pen: Pen, address: str) -> str:
    """A message to `address` that the relay took and that then bounced for good; its id."""
    mid, envelope = send(pen, address)
    relay_sends(pen, envelope, dsn(envelope))
    wait_status(pen, mid, "bounced")
    return mid


class Updates:
    """The sender's `notification.updated` events, read in a thread."""

    def __init__(self, pen: Pen, who: str = "ann"):
        self.frames: list[dict] = []
        self.ready = threading.Event()
        self.token = pen.login(who)["access_token"]
        threading.Thread(target=self._read, args=(pen,), daemon=True).start()
        assert self.ready.wait(30)

    def _read(self, pen: Pen) -> None:
        try:
            with pen.client(self.token, timeout=httpx.Timeout(30, read=120)) as client, \
                    client.stream("GET", "/events") as r:
                event = None
                for line in r.iter_lines():
                    self.ready.set()
                    if line.startswith("event: "):
                        event = line[7:]
                    elif line.startswith("data: ") and event == "notification.updated":
                        self.frames.append(json.loads(line[6:]))
        except httpx.HTTPError:  # the test is over and its PEN stopped
            pass

    def wait(self, message_id: str, status: str, timeout: float = 30) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for frame in list(self.frames):
                if (frame["message_id"], frame["status"]) == (message_id, status):
                    return frame
            time.sleep(0.05)
        raise AssertionError(f"no {status} event for {message_id}: {self.frames}")


def test_after_a_permanent_bounce_the_next_message_is_suppressed_everywhere(bpen):
    address = gone_address()
    bounced(bpen, address)
    updates = Updates(bpen)
    subject = f"After the bounce {uuid.uuid4().hex[:6]}"
    with bpen.as_user("ann") as c:  # with a recipient whose notification does go out
        r = c.post("/messages", json={"to": [{"email": address}], "cc": [{"email": USERS["bob"][0]}],
                                      "subject": subject, "body_text": "x"},
                   headers={"Idempotency-Key": uuid.uuid4().hex})
    assert r.status_code == 201, r.text
    message = r.json()
    at_once = {n["recipient"]["email"]: n for n in message["notifications"]}[address]
    assert (at_once["status"], at_once["attempts"]) == ("suppressed", 0)
    assert SINCE.match(at_once["last_error"]) and at_once["last_error"].endswith(DIAG), at_once["last_error"]
    assert updates.wait(message["id"], "suppressed")["recipient"] == {"email": address, "name": None}

    assert bpen.mails_to(USERS["bob"][0], subject)  # the delivery pass of this message is done ...
    wait_status_of(bpen, message["id"], USERS["bob"][0], "sent")
    assert bpen.mails_to(address, subject, timeout=0) == []  # ... and nothing went to the address
    assert len(bpen.mails_to(address, timeout=0)) == 1  # only the notification that bounced

    web = Web(bpen)
    web.login(USERS["ann"][0], PASSWORD)
    page = web.get(f"/m/{message['id']}").text
    web.close()
    row = page[page.index(f'<th scope="row">{address}</th>'):]  # its row of the recipients' table
    assert row[:row.index("</tr>")].count("Suppressed (on the suppression list since") == 1, page

    with bpen.as_user("admin") as c:
        [listed] = c.get("/admin/suppressions", params={"q": address}).json()["items"]
        assert listed["email"] == address and listed["reason"] == SAID + DIAG and listed["created_at"].endswith("Z")
    line = [r for r in run_cli("suppression", "list", "--data", str(bpen.data)).splitlines() if r.startswith(address)]
    assert len(line) == 1 and line[0].endswith(f" UTC\t{SAID}{DIAG}")

    with bpen.as_user("admin") as c:
        assert c.delete(f"/admin/suppressions/{quote(address)}").status_code == 204
        assert c.get("/admin/suppressions", params={"q": address}).json()["items"] == []
        again = c.delete(f"/admin/suppressions/{quote(address)}")
        assert again.status_code == 404 and again.json()["error"]["message"] == (
            "That address is not on the suppression list.")
    with bpen.as_user("ann") as c:  # off the list: the sender's r sends it now
        resent = c.post(f"/messages/{message['id']}/notifications/resend", json={})
        assert resent.status_code == 202
    assert bpen.mails_to(address, subject)
    wait_status_of(bpen, message["id"], address, "sent")


def wait_status_of(pen: Pen, message_id: str, address: str, status: str) -> dict:
    deadline = time.monotonic() + 30
    with pen.as_user("ann") as c:
        while True:
            items = c.get(f"/messages/{message_id}/notifications").json()["items"]
            n = {i["recipient"]["email"]: i for i in items}[address]
            if n["status"] == status or time.monotonic() > deadline:
                assert n["status"] == status, n
                return n
            time.sleep(0.1)


def test_a_notification_queued_before_the_bounce_is_suppressed_when_claimed(bpen):
    address = gone_address()
    first = bounced(bpen, address)
    # Sent again by the sender (as r does): queued, then claimed by the worker, which finds
    # the address on the list and suppresses it without sending.
    with bpen.as_user("ann") as c:
        assert c.post(f"/messages/{first}/notifications/resend", json={"recipients": [address]}).status_code == 202
    n = wait_status(bpen, first, "suppressed")
    assert n["attempts"] == 0 and SINCE.match(n["last_error"])
    assert len(bpen.mails_to(address, timeout=0)) == 1
    done = run_cli("suppression", "remove", "--data", str(bpen.data), address.upper())
    assert done.startswith(f"Took {address} off the suppression list")
    assert "not on the suppression list" in refusal("suppression", "remove", address, pen=bpen)


def refusal(*args: str, pen: Pen) -> str:
    with pytest.raises(RuntimeError) as refused:
        run_cli(*args[:2], "--data", str(pen.data), *args[2:])
    return str(refused.value)


def test_a_temporary_failure_never_suppresses(bpen):
    address = gone_address()
    mid, envelope = send(bpen, address)
    relay_sends(bpen, envelope, dsn(envelope, action="delayed", status="4.4.1",
                                     diag="451 4.4.1 mx2.elsewhere.example: connection timed out"))
    deadline = time.monotonic() + 30
    while (n := notification(bpen, mid))["last_error"] is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert n["last_error"].startswith("delayed: ")
    bpen.smtp.handler.reply = "451 4.3.0 try again later"  # the relay itself defers the next one
    try:
        with bpen.as_user("ann") as c:
            r = c.post("/messages", json={"to": [{"email": address}], "subject": "Deferred once", "body_text": "x"},
                       headers={"Idempotency-Key": uuid.uuid4().hex})
        later = r.json()["id"]
        wait_status(bpen, later, "deferred")
    finally:
        bpen.smtp.handler.reply = None
    wait_status(bpen, later, "sent")
    with bpen.as_user("admin") as c:
        assert c.get("/admin/suppressions", params={"q": address}).json()["items"] == []
    third, _ = send(bpen, address)  # sent, and received by the sink
    assert notification(bpen, third)["status"] == "sent"
