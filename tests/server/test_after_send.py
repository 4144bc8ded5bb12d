"""After sending (issue 20), against the real server over TLS on SQLite and PostgreSQL:
withdrawing a message (410 `revoked` through the link, the API, the attachment URL and a
reply, while another recipient still reads; unsent notifications `cancelled`, also those
waiting for a dead relay), end dates (410 `expired`, package defaults, moving them), the
first opening (`opened_at`, `message.opened`), and the audit trail (rows, who sees them,
the hash chain and `pen-server audit verify`)."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import pytest

from pen_devstack import SmtpSink, free_port
from tests.conftest import TEARDOWN_STOP_SECONDS, USERS, Pen, make_pen
from tests.web.conftest import Web

GUEST_PASSWORD = "guest password 1"


def _iso(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _upload(pen: Pen, who: str, data: bytes = b"%PDF-1.4 referral " * 100) -> str:
    with pen.as_user(who) as c:
        r = c.post(f"/uploads?filename={quote('referral.pdf')}", content=data,
                   headers={"Content-Type": "application/pdf"})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def _guest_token(pen: Pen, guest: str) -> tuple[str, str, str]:
    """(message id, link token, the guest's access token) after a sign-up through the link."""
    [mail] = pen.mails_to(guest)
    mid, token = pen.link_token(mail)
    with pen.client() as c:
        r = c.post(f"/invitations/{token}/register", json={"display_name": "Pat", "password": GUEST_PASSWORD})
    assert r.status_code == 201, r.text
    return mid, token, r.json()["access_token"]


def _new_guest() -> str:
    return f"pat-{uuid.uuid4().hex[:10]}@outside.example"


# -- withdraw --------------------------------------------------------------------------------

def test_a_withdrawn_guest_gets_410_everywhere_while_another_recipient_reads(pen, send):
    guest = _new_guest()
    att = _upload(pen, "ann")
    sent = send("ann", [guest, "bob"], subject=f"Referral {uuid.uuid4().hex[:6]}", body="Scan attached.",
                attachments=[att])
    mid, token, guest_token = _guest_token(pen, guest)
    assert mid == sent["id"]
    with pen.client(guest_token) as g:
        assert g.get(f"/messages/{mid}").status_code == 200  # readable until withdrawn

        with pen.as_user("bob") as b:  # only the sender may withdraw
            assert b.post(f"/messages/{mid}/revoke", json={}).status_code == 404
        with pen.as_user("ann") as a:
            r = a.post(f"/messages/{mid}/revoke", json={"recipients": [guest.upper()]})
            assert r.status_code == 200, r.text
            mine = r.json()
            assert mine["id"] == mid and mine["body_text"] == "Scan attached."
            by_email = {n["recipient"]["email"]: n for n in mine["notifications"]}
            first = by_email[guest]["revoked_at"]
            assert first and by_email[USERS["bob"][0]]["revoked_at"] is None
            again = a.post(f"/messages/{mid}/revoke", json={"recipients": [guest]}).json()  # changes nothing
            assert {n["recipient"]["email"]: n["revoked_at"] for n in again["notifications"]}[guest] == first
            assert a.get(f"/messages/{mid}").status_code == 200  # the sender keeps its copy
            r = a.post(f"/messages/{mid}/revoke", json={"recipients": ["nobody@else.example"]})
            assert r.status_code == 422 and "nobody@else.example" in r.json()["error"]["message"]

        r = g.get(f"/messages/{mid}")
        assert r.status_code == 410 and r.json()["error"]["code"] == "revoked"
        assert "withdrew" in r.json()["error"]["message"]
        r = g.get(f"/messages/{mid}/attachments/{sent['attachments'][0]['id']}")
        assert r.status_code == 410 and r.json()["error"]["code"] == "revoked"
        r = g.post("/messages", json={"to": [{"email": USERS["ann"][0]}], "subject": "Re", "body_text": "?",
                                      "in_reply_to": mid}, headers={"Idempotency-Key": uuid.uuid4().hex})
        assert r.status_code == 410 and r.json()["error"]["code"] == "revoked"
        [row] = [m for m in g.get("/messages").json()["items"] if m["id"] == mid]  # the row stays
        assert row["revoked_at"] == first and row["snippet"] == ""

    web = Web(pen)
    try:
        landing = web.get(f"/m/{mid}?t={token}")
        assert landing.status_code == 410 and "The sender withdrew this message" in landing.text
    finally:
        web.close()
    with pen.as_user("bob") as b:  # another recipient still reads, files too
        assert b.get(f"/messages/{mid}").json()["snippet"] == "Scan attached."
        assert b.get(f"/messages/{mid}/attachments/{sent['attachments'][0]['id']}").status_code == 200


def test_a_sign_up_through_a_withdrawn_link_works_and_brings_nothing(pen, send):
    guest = _new_guest()
    sent = send("ann", [guest], subject="Wrong patient", body="Not for you.")
    [mail] = pen.mails_to(guest)
    with pen.as_user("ann") as a:
        assert a.post(f"/messages/{sent['id']}/revoke").status_code == 200  # no body: everyone
    mid, _token, guest_token = _guest_token(pen, guest)
    with pen.client(guest_token) as g:
        [row] = g.get("/messages").json()["items"]
        assert row["id"] == mid and row["revoked_at"] and row["snippet"] == ""
        assert g.get(f"/messages/{mid}").json()["error"]["code"] == "revoked"
    web = Web(pen)
    try:  # the web reader says so in one sentence
        web.login(guest, GUEST_PASSWORD)
        page = web.get(f"/m/{mid}")
        assert page.status_code == 410 and "The sender withdrew this message; it can no longer be read." in page.text
        assert "Not for you" not in page.text
        assert "Withdrawn" in web.get("/").text
    finally:
        web.close()


def test_a_notification_waiting_for_a_dead_relay_is_cancelled_and_never_arrives(tmp_path, database):
    """The relay is down when the message goes out; a withdrawal cancels the waiting
    notification, and when the relay comes back only the other recipient's arrives."""
    relay_port = free_port()
    sink = SmtpSink(port=relay_port)  # not started yet: nothing listens there
    process = make_pen(tmp_path / "pen", sink, database_url=database()).start()
    pen = Pen(process, sink)
    try:
        with pen.as_user("ann") as a:
            r = a.post("/messages", json={"to": [{"email": "keep@outside.example"}, {"email": "drop@outside.example"}],
                                          "subject": "Dead relay", "body_text": "x"},
                       headers={"Idempotency-Key": uuid.uuid4().hex})
            assert r.status_code == 201, r.text
            mid = r.json()["id"]
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                items = a.get(f"/messages/{mid}/notifications").json()["items"]
                if all(n["status"] == "deferred" for n in items):
                    break
                time.sleep(0.1)
            assert {n["status"] for n in items} == {"deferred"}, items
            r = a.post(f"/messages/{mid}/revoke", json={"recipients": ["drop@outside.example"]})
            by_email = {n["recipient"]["email"]: n["status"] for n in r.json()["notifications"]}
            assert by_email["drop@outside.example"] == "cancelled"
            sink.start()  # the relay comes back
            try:
                assert pen.mails_to("keep@outside.example", timeout=30)
                time.sleep(1.5)  # several more retry rounds (PEN_RETRY_BASE_SECONDS=0.2)
                assert pen.mails_to("drop@outside.example", timeout=0) == []
                items = a.get(f"/messages/{mid}/notifications").json()["items"]
                assert {n["recipient"]["email"]: n["status"] for n in items} == {
                    "keep@outside.example": "sent", "drop@outside.example": "cancelled"}
                # Resending never brings a withdrawn recipient's notification back.
                a.post(f"/messages/{mid}/notifications/resend", json={"recipients": ["drop@outside.example"]})
                assert {n["recipient"]["email"]: n["status"] for n in a.get(
                    f"/messages/{mid}/notifications").json()["items"]}["drop@outside.example"] == "cancelled"
            finally:
                sink.stop()
    finally:
        process.stop(TEARDOWN_STOP_SECONDS)


# -- end date --------------------------------------------------------------------------------

def test_an_end_date_a_few_seconds_ahead_takes_effect(pen, send):
    ends = datetime.now(UTC) + timedelta(seconds=3)
    sent = send("ann", ["bob", "cat"], subject="Short-lived", body="Read it soon.", expires_at=_iso(ends))
    mid = sent["id"]
    assert sent["expires_at"] == _iso(ends)
    [mail] = pen.mails_to(USERS["bob"][0], "Short-lived")
    assert "It can be read until" in mail.message.get_body(("plain",)).get_content()
    with pen.as_user("bob") as b, pen.as_user("ann") as a:
        r = b.get(f"/messages/{mid}")
        assert r.status_code == 200 and r.json()["expires_at"] == _iso(ends)
        while datetime.now(UTC) < ends + timedelta(seconds=1.2):  # rfc3339 drops the fraction
            time.sleep(0.2)
        r = b.get(f"/messages/{mid}")
        assert r.status_code == 410 and r.json()["error"]["code"] == "expired"
        [row] = [m for m in b.get("/messages").json()["items"] if m["id"] == mid]
        assert row["snippet"] == "" and row["expires_at"] == _iso(ends)
        assert a.get(f"/messages/{mid}").status_code == 200  # the sender still reads its own
        # The sender moves it: readable again; then removes it.
        later = datetime.now(UTC) + timedelta(days=2)
        assert b.put(f"/messages/{mid}/expiry", json={"expires_at": _iso(later)}).status_code == 404
        r = a.put(f"/messages/{mid}/expiry", json={"expires_at": _iso(later)})
        assert r.status_code == 200 and r.json()["expires_at"] == _iso(later)
        assert b.get(f"/messages/{mid}").status_code == 200
        assert a.put(f"/messages/{mid}/expiry", json={"expires_at": None}).json()["expires_at"] is None
        with pen.as_user("cat") as c:
            assert c.get(f"/messages/{mid}").json()["expires_at"] is None


@pytest.mark.parametrize("value", ["2020-01-01T00:00:00Z", "tomorrow", "2030-01-01", "2030-01-01T10:00:00"])
def test_an_end_date_in_the_past_or_malformed_is_422(pen, value):
    with pen.as_user("ann") as a:
        r = a.post("/messages", json={"to": [{"email": USERS["bob"][0]}], "subject": "x", "expires_at": value},
                   headers={"Idempotency-Key": uuid.uuid4().hex})
        assert r.status_code == 422 and "expires_at" in r.json()["error"]["fields"], r.text


def test_a_package_sets_the_default_end_date(pen, send):
    with pen.as_user("admin") as admin:
        r = admin.put("/admin/packages/partners", json={"disclaimer": "Partner notice: handle according to our "
                                                                      "data agreement.", "expire_days": 7})
        assert r.status_code == 200 and r.json()["expire_days"] == 7
        try:
            sent = send("bob", ["cat"], subject="Package default")  # bob is in partners
            ends = datetime.fromisoformat(sent["expires_at"].replace("Z", "+00:00"))
            assert timedelta(days=7) - timedelta(minutes=1) < ends - datetime.now(UTC) <= timedelta(days=7)
            assert send("ann", ["cat"], subject="Other package")["expires_at"] is None
            # left out, the default stays; null removes it
            r = admin.put("/admin/packages/partners", json={"disclaimer": "Partner notice: handle according to "
                                                                          "our data agreement."})
            assert r.json()["expire_days"] == 7
            assert admin.put("/admin/packages/partners", json={"disclaimer": None, "expire_days": 0}).status_code == 422
        finally:
            r = admin.put("/admin/packages/partners", json={"disclaimer": "Partner notice: handle according to our "
                                                                          "data agreement.", "expire_days": None})
            assert r.json()["expire_days"] is None
