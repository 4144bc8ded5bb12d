"""The delivery report, from the real PEN over TLS on both databases: ten notifications, all
accepted by the relay (the SMTP sink), one of them bounced later by a real DSN at the bounce
port, give a delivery rate of 90.0, per recipient domain too; `pen-server report` says the
same."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid

import httpx
import pytest

from pen_devstack import free_port
from tests.conftest import Pen, make_pen
from tests.server.test_bounces import dsn, relay_sends

ONE = [f"r{i}@one.example" for i in range(6)]
TWO = [f"s{i}@two.example" for i in range(4)]


@pytest.fixture(scope="module")
def rpen(tmp_path_factory, db_smtp, database):
    port = free_port()
    process = make_pen(tmp_path_factory.mktemp("report-pen"), db_smtp, env={"PEN_BOUNCE_PORT": str(port)},
                       database_url=database())
    process.bounce_port = port
    process.start()
    yield Pen(process, db_smtp)
    process.stop(2)


def _statuses(sender: httpx.Client, message_id: str) -> dict[str, str]:
    return {n["recipient"]["email"]: n["status"] for n in
            sender.get(f"/messages/{message_id}/notifications").json()["items"]}


def _until(sender: httpx.Client, message_id: str, wanted: dict[str, str] | str) -> None:
    """Polls with the sender's one sign-in (a sign-in per poll would be an argon2 hash each)."""
    deadline = time.monotonic() + 30
    while True:
        found = _statuses(sender, message_id)
        done = all(s == wanted for s in found.values()) if isinstance(wanted, str) else \
            all(found[k] == v for k, v in wanted.items())
        if done or time.monotonic() > deadline:
            assert done, found
            return
        time.sleep(0.1)


def test_ten_notifications_with_one_bounce_are_delivered_at_90_percent(rpen):
    subject = f"Results {uuid.uuid4().hex[:6]}"
    with rpen.as_user("ann") as ann, rpen.as_user("admin") as admin:
        empty = ann.get("/admin/deliverability/report")
        assert empty.status_code == 403
        before = admin.get("/admin/deliverability/report", params={"since": "1d"}).json()
        assert before["total"]["attempted"] == 0 and before["total"]["delivery_rate"] is None
        r = ann.post("/messages", json={"to": [{"email": e} for e in ONE + TWO], "subject": subject,
                                        "body_text": "x"}, headers={"Idempotency-Key": uuid.uuid4().hex})
        assert r.status_code == 201, r.text
        message_id = r.json()["id"]
        _until(ann, message_id, "sent")
        [mail] = rpen.mails_to(ONE[0], subject)
        relay_sends(rpen, mail.mail_from, dsn(mail.mail_from))
        _until(ann, message_id, {ONE[0]: "bounced"})

        report = admin.get("/admin/deliverability/report", params={"since": "1d"}).json()
        assert admin.get("/admin/deliverability/report", params={"since": "forever"}).status_code == 422
    opened = 0  # none of these outsiders opened theirs
    counts = {"attempted": 10, "accepted": 10, "deferred": 0, "failed": 0, "bounced": 1, "suppressed": 0,
              "opened": opened, "delivery_rate": 90.0}
    assert report["total"] == counts
    assert report["domains"] == [
        {"domain": "one.example", **counts, "attempted": 6, "accepted": 6, "delivery_rate": 83.3},
        {"domain": "two.example", **counts, "attempted": 4, "accepted": 4, "bounced": 0, "delivery_rate": 100.0},
    ]

    done = subprocess.run([sys.executable, "-m", "pen_server", "report", "--data", str(rpen.data), "--since", "1d",
                           "--json"], capture_output=True, text=True, timeout=120, env=_env(rpen))
    assert done.returncode == 0, done.stderr
    said = json.loads(done.stdout)
    assert said["total"] == report["total"] and said["domains"] == report["domains"]
    done = subprocess.run([sys.executable, "-m", "pen_server", "report", "--data", str(rpen.data)],
                          capture_output=True, text=True, timeout=120, env=_env(rpen))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[1].split() == ["domain", "attempted", "accepted", "deferred", "failed", "bounced", "suppressed",
                                "opened", "rate"]
    assert lines[2].split()[:6] == ["one.example", "6", "6", "0", "0", "1"] and lines[2].endswith("83.3%")
    assert lines[-1].split()[:6] == ["total", "10", "10", "0", "0", "1"] and lines[-1].endswith("90.0%")
    done = subprocess.run([sys.executable, "-m", "pen_server", "report", "--data", str(rpen.data), "--since", "3y"],
                          capture_output=True, text=True, timeout=120, env=_env(rpen))
    assert done.returncode == 1
    assert done.stderr.strip() == "pen-server: --since must be a period such as 30d, 12h, 90m or 2w, not '3y'."


def _env(pen: Pen) -> dict:
    import os

    return dict(os.environ, **pen.process.env)
