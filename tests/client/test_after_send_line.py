"""After sending, in line mode, run as the real command against the real PEN over TLS:
`send --expires`, `status` with each recipient's opened time, `revoke` (everyone, or
`--recipient`), `audit` (plain and --json), what a recipient's `list` and `read` say of a
withdrawn message, and `intercept` reading under its own channel in the audit trail. Every
check of an action looks at what the PEN has afterwards, through its API."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from tests.client.test_line_mode import Line, find, subject, upload
from tests.conftest import PASSWORD
from tui.pen_client import parse_time


@pytest.fixture
def line(tmp_path, pen) -> Line:
    return Line(tmp_path, pen)


def test_send_expires_sets_the_end_date(line, pen, utc):
    subj = subject("expires")
    asked = datetime.now(UTC)
    done = line("send", "--to", "bob@abc.example", "--subject", subj, "--expires", "7d", "--json", stdin="x")
    assert done.code == 0, done.err
    doc = done.json()
    expires = parse_time(doc["expires_at"])
    assert expires is not None and abs(expires - (asked + timedelta(days=7))) < timedelta(seconds=30)
    assert parse_time(find(pen, "bob", subj)["expires_at"]) == expires  # what the PEN keeps
    # A day: readable through that day, until the midnight after it (local time, UTC here).
    subj = subject("expires day")
    day = (datetime.now(UTC) + timedelta(days=3)).date()
    done = line("send", "--to", "bob@abc.example", "--subject", subj, "--expires", day.isoformat(), stdin="x")
    assert done.code == 0, done.err
    end = datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1)
    assert done.lines[0].endswith(f"; readable until {end:%a %d %b %Y} 00:00.")
    assert parse_time(find(pen, "bob", subj)["expires_at"]) == end
    # Not an end date, or one that has passed: usage, one sentence, nothing sent.
    for bad, says in (("soon", "'soon' is not an end date"), ("2020-01-01", "has passed")):
        subj = subject("never")
        done = line("send", "--to", "bob@abc.example", "--subject", subj, "--expires", bad, stdin="x")
        assert done.code == 2 and says in done.one_sentence()
        with pen.as_user("ann") as c:
            assert c.get("/messages", params={"folder": "sent", "q": subj}).json()["total"] == 0
    done = line("send", "--draft", "0" * 32, "--expires", "7d")
    assert done.code == 2 and "--draft sends a kept draft as it is" in done.one_sentence()


def test_status_says_when_each_recipient_opened_it(line, pen, send):
    subj = subject("opened")
    sent = send("ann", ["bob"], cc=["cat"], subject=subj)
    pen.mails_to("cat@abc.example", subj)

    def rows() -> dict[str, list[str]]:
        done = line("status", sent["id"])
        assert done.code == 0, done.err
        return {r.split("\t")[0]: r.split("\t") for r in done.lines}

    assert [r[5] for r in rows().values()] == ["not opened", "not opened"]
    with pen.as_user("bob") as c:
        assert c.get(f"/messages/{sent['id']}").status_code == 200
    with pen.as_user("ann") as c:
        items = {n["recipient"]["email"]: n for n in c.get(f"/messages/{sent['id']}/notifications").json()["items"]}
    opened = parse_time(items["bob@abc.example"]["opened_at"])
    assert opened is not None
    now = rows()
    assert now["bob@abc.example"][5] == f"opened {opened.astimezone():%Y-%m-%d %H:%M}"
    assert now["cat@abc.example"][5] == "not opened"
    doc = line("status", sent["id"], "--json").json()
    by = {n["recipient"]["email"]: n for n in doc["items"]}
    assert by["bob@abc.example"]["opened_at"] == items["bob@abc.example"]["opened_at"]
    assert by["cat@abc.example"]["opened_at"] is None and by["cat@abc.example"]["revoked_at"] is None


def test_expires_sets_moves_and_removes_the_end_date_after_sending(line, pen, send, utc):
    subj = subject("expires later")
    sent = send("ann", ["bob"], subject=subj)
    asked = datetime.now(UTC)
    done = line("expires", sent["id"], "3d")
    assert done.code == 0, done.err
    ends = parse_time(find(pen, "bob", subj)["expires_at"])  # what the PEN keeps, as the recipient sees it
    assert ends is not None and abs(ends - (asked + timedelta(days=3))) < timedelta(seconds=30)
    assert done.lines == [f"The recipients can read it until {ends:%a %d %b %Y %H:%M}."]
    # Moved to a day, in JSON: readable through that day.
    day = (datetime.now(UTC) + timedelta(days=10)).date()
    doc = line("expires", sent["id"], day.isoformat(), "--json").json()
    end = datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1)
    assert (doc["id"], doc["subject"], parse_time(doc["expires_at"])) == (sent["id"], subj, end)
    assert parse_time(find(pen, "bob", subj)["expires_at"]) == end
    # Not an end date, or one that has passed: usage, one sentence, the end date unchanged.
    for bad, says in (("soon", "'soon' is not an end date"), ("2020-01-01", "has passed")):
        done = line("expires", sent["id"], bad)
        assert done.code == 2 and says in done.one_sentence()
    assert parse_time(find(pen, "bob", subj)["expires_at"]) == end
    # Only its sender: anyone else gets "not found" and changes nothing.
    assert line("expires", sent["id"], "none", who="bob").code == 4
    assert parse_time(find(pen, "bob", subj)["expires_at"]) == end
    # none removes it.
    done = line("expires", sent["id"], "none")
    assert done.code == 0 and done.lines == ["It has no end date now: the recipients can read it until you "
                                             "withdraw it."]
    assert find(pen, "bob", subj)["expires_at"] is None


def test_revoke_from_one_recipient_then_everyone(line, pen, send):
    subj = subject("revoke")
    sent = send("ann", ["bob"], cc=["cat"], subject=subj)
    done = line("revoke", sent["id"], "--recipient", "cat@abc.example")
    assert done.code == 0, done.err
    assert done.lines == [f"Withdrew \u201c{subj}\u201d from cat@abc.example; you keep your copy."] \
        or done.lines[0].startswith(f"Withdrew \u201c{subj}\u201d from cat@abc.example; you keep your copy; the ")
    with pen.as_user("cat") as c:
        r = c.get(f"/messages/{sent['id']}")
        assert r.status_code == 410 and r.json()["error"]["code"] == "revoked"
    with pen.as_user("bob") as c:
        assert c.get(f"/messages/{sent['id']}").status_code == 200
    # The recipient's list says so; read says the PEN's sentence and fails.
    listed = line("list", "--search", f'subject:"{subj}"', who="cat")  # words no longer find its text
    assert listed.code == 0 and listed.lines[0].split("\t")[4] == f"(withdrawn) {subj}"
    item = line("list", "--search", f'subject:"{subj}"', "--json", who="cat").json()["items"][0]
    assert item["revoked_at"] and item["snippet"] == ""
    read = line("read", sent["id"], who="cat")
    assert read.code == 1 and read.one_sentence() == "penmail: The sender withdrew this message; it can no longer " \
                                                    "be read."
    assert line("read", sent["id"], "--json", who="cat").json()["error"]["code"] == "revoked"
    # From everyone, in JSON; again changes nothing.
    doc = line("revoke", sent["id"], "--json").json()
    assert doc["id"] == sent["id"] and doc["recipients"] is None
    assert all(n["revoked_at"] for n in doc["notifications"])
    again = line("revoke", sent["id"], "--json").json()
    assert [n["revoked_at"] for n in again["notifications"]] == [n["revoked_at"] for n in doc["notifications"]]
    with pen.as_user("bob") as c:
        assert c.get(f"/messages/{sent['id']}").status_code == 410
    # Only its sender: anyone else gets "not found"; a stranger's address is named.
    assert line("revoke", sent["id"], who="bob").code == 4
    stranger = line("revoke", sent["id"], "--recipient", "zed@elsewhere.example")
    assert stranger.code == 1 and "zed@elsewhere.example" in stranger.one_sentence()
    assert line("revoke", sent["id"], "--recipient", "not an address").code == 2


def test_audit_shows_reads_downloads_and_replies(line, pen, send):
    subj = subject("audit")
    data = b"referral letter\n" * 50
    att = upload(pen, "ann", "referral.txt", data)
    sent = send("ann", ["bob"], subject=subj, attachments=[att])
    with pen.as_user("bob") as c:
        got = c.get(f"/messages/{sent['id']}").json()
        file_id = got["attachments"][0]["id"]
        assert c.get(f"/messages/{sent['id']}/attachments/{file_id}").content == data
    done = line("reply", sent["id"], who="bob", stdin="Thanks, received.")
    assert done.code == 0, done.err
    doc = line("audit", sent["id"], "--json").json()
    assert doc["message_id"] == sent["id"] and doc["count"] == len(doc["items"])
    rows = [(r["actor"], r["action"], r["attachment_id"], r["channel"]) for r in doc["items"]
            if r["actor"] == "bob@abc.example"]
    assert ("bob@abc.example", "read", None, "api") in rows
    assert ("bob@abc.example", "download", file_id, "api") in rows
    assert ("bob@abc.example", "reply", None, "api") in rows
    assert [r["id"] for r in doc["items"]] == sorted(r["id"] for r in doc["items"])  # oldest first
    assert set(doc["items"][0]) == {"id", "at", "action", "actor", "recipient", "attachment_id", "channel", "client",
                                    "detail"}
    plain = line("audit", sent["id"])
    assert plain.code == 0, plain.err
    fields = [ln.split("\t") for ln in plain.lines]
    assert len(fields) == doc["count"] and all(len(f) == 5 for f in fields)
    assert all(re.match(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$", f[0]) for f in fields)
    assert ["bob@abc.example", f"download attachment {file_id}", "api"] in [f[1:4] for f in fields]
    # Only the sender sees them.
    assert line("audit", sent["id"], who="bob").code == 4
    assert line("audit", sent["id"], "--json", who="bob").json()["error"]["exit_code"] == 4


def test_intercept_reads_under_its_own_channel(line, pen, send):
    import subprocess
    import sys

    from tests.client.test_line_mode import REPO

    subj = subject("intercept channel")
    data = b"scan\x00" * 400
    att = upload(pen, "ann", "scan.bin", data)
    sent = send("ann", ["bob"], subject=subj, attachments=[att])
    [notice] = pen.mails_to("bob@abc.example", subj)
    # The PEN as its notifications name it (localhost), or intercept leaves them alone.
    config = line.config("bob", server=f"https://localhost:{pen.process.port}")
    env = line.env("bob", config, PASSWORD, None)
    done = subprocess.run([sys.executable, "-m", "tui.cli", "intercept", "--stdin"], input=notice.data,
                          capture_output=True, env=env, cwd=REPO, timeout=60)
    assert done.returncode == 0, done.stderr
    assert b"Replaced in stdin" in done.stderr
    doc = line("audit", sent["id"], "--json").json()
    bob = [(r["action"], r["channel"]) for r in doc["items"] if r["actor"] == "bob@abc.example"]
    assert ("read", "intercept") in bob and ("download", "intercept") in bob
    assert all(channel == "intercept" for _, channel in bob)

