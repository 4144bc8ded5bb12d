"""`penmail <command>`: line mode, run as the real command (a subprocess) against the real
PEN over TLS, with a configuration file, a state folder and a keyring of its own.

Checked: the lines and the --json shapes, the exit codes (0 done, 1 failed, 2 usage,
3 not signed in, 4 not found), one sentence on stderr and never a traceback, that `send`
and `reply` reach the SMTP sink, drafts kept on failure and never sent twice, attachments
saved and checked, guest sign-up through `open`, and that no ESC, C1 or bidi control from
hostile data (served raw by a PEN of our own) reaches the output."""

from __future__ import annotations

import hashlib
import json
import os
import re
import ssl
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.conftest import PASSWORD, USERS

REPO = Path(__file__).resolve().parents[2]
BAD = re.compile("[\x1b\x80-\x9f\u202a-\u202e\u2066-\u2069]")
EMAIL = {who: fields[0] for who, fields in USERS.items()}


# ---------------------------------------------------------------- running penmail


@dataclass
class Done:
    code: int
    out: str
    err: str

    @property
    def lines(self) -> list[str]:
        return self.out.splitlines()

    def json(self):
        return json.loads(self.out)

    def one_sentence(self) -> str:
        """stderr is one line, a sentence from penmail, and no traceback."""
        assert "Traceback" not in self.err, self.err
        lines = self.err.strip().splitlines()
        assert len(lines) == 1, self.err
        assert lines[0].startswith("penmail"), self.err
        assert lines[0].endswith("."), self.err
        return lines[0]


class Line:
    """Runs `python -m tui.cli ...` as a person configured for the test PEN."""

    def __init__(self, tmp: Path, pen):
        self.tmp, self.pen = tmp, pen

    def config(self, who: str = "ann", *, server: str | None = None, email: str | None = None,
               name: str | None = None, extra: str = "") -> Path:
        path = self.tmp / f"{name or who}.toml"
        lines = [f'server = "{server or self.pen.process.url}"', f'ca_file = "{self.pen.ca_file}"']
        address = email or EMAIL.get(who)
        if address:
            lines.append(f'email = "{address}"')
        lines.append(f'download_dir = "{self.tmp}"')
        path.write_text("\n".join(lines) + "\n" + extra)
        return path

    def env(self, who: str, config: Path | None, password: str | None, keyring_file: Path | None) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PENMAIL_", "NO_COLOR"))}
        env.update(PENMAIL_CONFIG=str(config or self.config(who)), PENMAIL_STATE_DIR=str(self.tmp / f"state-{who}"),
                   PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring", PYTHONPATH=str(REPO))
        if keyring_file is not None:
            env.update(PYTHON_KEYRING_BACKEND="tests.client.file_keyring.FileKeyring",
                       PENMAIL_TEST_KEYRING=str(keyring_file))
        if password:
            env["PENMAIL_PASSWORD"] = password
        return env

    def __call__(self, *args: str, who: str = "ann", stdin: str = "", password: str | None = PASSWORD,
                 config: Path | None = None, keyring_file: Path | None = None, env: dict | None = None,
                 timeout: float = 60) -> Done:
        full_env = self.env(who, config, password, keyring_file)
        full_env.update(env or {})
        done = subprocess.run([sys.executable, "-m", "tui.cli", *args], input=stdin.encode("utf-8"),
                              capture_output=True, env=full_env, cwd=REPO, timeout=timeout)
        out, err = done.stdout.decode("utf-8"), done.stderr.decode("utf-8")
        assert "Traceback" not in err, err
        return Done(done.returncode, out, err)


@pytest.fixture
def line(tmp_path, pen) -> Line:
    return Line(tmp_path, pen)


def fresh_user(pen, name: str = "Fresh Person") -> str:
    from pen_devstack import add_user

    address = f"fresh-{uuid.uuid4().hex[:10]}@abc.example"
    add_user(pen.data, address, name, PASSWORD)
    return address


def subject(text: str = "") -> str:
    return f"LM {uuid.uuid4().hex[:8]} {text}".strip()


def find(pen, who: str, subject_: str, folder: str = "inbox", timeout: float = 10) -> dict:
    """The message with this subject in a folder of `who`, through the API."""
    deadline = time.monotonic() + timeout
    with pen.as_user(who) as c:
        while True:
            r = c.get("/messages", params={"folder": folder, "q": subject_, "limit": 200})
            assert r.status_code == 200, r.text
            found = [m for m in r.json()["items"] if m["subject"] == subject_]
            if found or time.monotonic() > deadline:
                assert found, f"no {subject_!r} in {who}'s {folder}"
                return c.get(f"/messages/{found[0]['id']}").json()
            time.sleep(0.1)


def upload(pen, who: str, name: str, data: bytes) -> str:
    with pen.as_user(who) as c:
        r = c.post("/uploads", params={"filename": name}, content=data,
                   headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 201, r.text
    return r.json()["id"]


# ---------------------------------------------------------------- usage, exit codes, sign-in


@pytest.mark.parametrize("args", [
    ["list", "--limit", "0"], ["list", "--folder", "spam"], ["read"], ["get", "X", "--all", "--attachment", "1"],
    ["nosuchcommand"], ["export"], ["open"],
])
def test_usage_errors_are_one_sentence_and_exit_2(line, args):
    done = line(*args)
    assert done.code == 2, done
    sentence = done.one_sentence()
    assert "--help" in sentence and done.out == ""


def test_not_signed_in_is_exit_3_with_a_sentence(line):
    done = line("list", password=None)
    assert done.code == 3
    assert "not signed in" in done.one_sentence() and "penmail login" in done.err
    # --json: the same failure as a document on stdout, too.
    done = line("whoami", "--json", password=None)
    assert done.code == 3
    assert done.json() == {"error": {"code": "not_signed_in", "message": done.err.strip().removeprefix("penmail: "),
                                     "exit_code": 3}}
    # A wrong password from the environment is not signed in either (a fresh account: five
    # failures in a row would make a shared one wait before its next sign-in).
    done = line("whoami", password="not the password", config=line.config("x", email=fresh_user(line.pen)))
    assert done.code == 3 and "password is wrong" in done.one_sentence()
    # Nothing configured at all.
    done = line("list", config=line.tmp / "missing.toml")
    assert done.code == 3 and "penmail login" in done.one_sentence()


def test_a_broken_settings_file_and_an_unreachable_pen(line, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('server = "ftp://x"\n')
    done = line("list", config=bad)
    assert done.code == 2 and "server must be an https:// URL" in done.one_sentence()
    closed = line.config("ann", server="https://127.0.0.1:9", name="closed")
    done = line("list", config=closed)
    assert done.code == 1 and "Could not reach the PEN" in done.one_sentence()


def test_whoami_lines_and_json(line, pen):
    done = line("whoami")
    assert done.code == 0, done.err
    assert done.lines == ["Email:   ann@abc.example", "Name:    Ann Lee", "Role:    member", "Package: employees",
                          f"Server:  {pen.process.url}"]
    doc = line("whoami", "--json").json()
    assert set(doc) == {"server", "id", "email", "display_name", "role", "package"}
    assert doc["email"] == "ann@abc.example" and doc["package"] == "employees"


# ---------------------------------------------------------------- send, list, read


def test_send_delivers_then_list_and_read_mark_read(line, pen):
    subj = subject("Lab results")
    done = line("send", "--to", "bob@abc.example", "--cc", "Cat Moss <cat@abc.example>", "--subject", subj,
                stdin="Your results are ready.\nSecond line.\n")
    assert done.code == 0, done.err
    assert done.lines[0].startswith(f'Sent "{subj}" to bob@abc.example, Cat Moss <cat@abc.example> (id ')
    assert done.lines[1] == "Notifications to 2 recipients: 2 sent."
    # Delivered: the notification reached the SMTP sink, for both.
    assert pen.mails_to("bob@abc.example", subj) and pen.mails_to("cat@abc.example", subj)
    # The draft was removed once sent.
    assert list((line.tmp / "state-ann" / "drafts").glob("*.json")) == []

    mine = find(pen, "bob", subj)
    listed = line("list", "--search", subj, who="bob")
    assert listed.code == 0, listed.err
    fields = listed.lines[0].split("\t")
    assert fields[0] == mine["id"] and re.match(r"^\d{4}-\d\d-\d\d \d\d:\d\d$", fields[1])
    assert fields[2:] == ["Ann Lee", "U-", subj]

    doc = line("list", "--json", "--unread", "--limit", "500", who="bob").json()
    assert set(doc) == {"folder", "total", "total_exact", "count", "next_cursor", "items"} and doc["folder"] == "inbox"
    item = next(i for i in doc["items"] if i["id"] == mine["id"])
    assert set(item) == {"id", "thread_id", "folder", "from", "to", "cc", "subject", "sent_at", "unread",
                         "attachment_count", "size", "snippet", "expires_at", "revoked_at"}
    assert item["from"] == {"email": "ann@abc.example", "name": "Ann Lee"} and item["unread"] is True
    assert item["sent_at"].endswith("Z")

    kept = line("read", mine["id"], "--keep-unread", who="bob")
    assert kept.code == 0 and find(pen, "bob", subj)["unread"] is True
    done = line("read", mine["id"], who="bob")
    assert done.code == 0, done.err
    assert done.lines[:3] == ["From:    Ann Lee <ann@abc.example>", "To:      bob@abc.example",
                              "Cc:      Cat Moss <cat@abc.example>"]
    assert f"Subject: {subj}" in done.lines and f"Id:      {mine['id']}" in done.lines
    assert done.out.endswith("\n\nYour results are ready.\nSecond line.\n")
    assert find(pen, "bob", subj)["unread"] is False
    doc = line("read", mine["id"], "--json", who="bob").json()
    assert {"bcc", "in_reply_to", "attachments", "body", "body_text", "has_html", "links", "notifications",
            "unread"} <= set(doc)
    assert doc["body"] == "Your results are ready.\nSecond line.\n" and doc["unread"] is False


def test_html_bodies_are_shown_as_text_with_listed_links(line, pen, send):
    subj = subject("html")
    sent = send("ann", ["bob"], subject=subj, body="the text part",
                body_html='<p>Hello <a href="https://clinic.example/x">there</a> '
                          '<a href="javascript:alert(1)">bad</a></p>')
    done = line("read", sent["id"], who="bob")
    assert done.code == 0, done.err
    assert "Hello there[1] bad" in done.out.replace("\n", " ") or "[1]" in done.out
    assert "[1] https://clinic.example/x" in done.out and "javascript" not in done.out


def test_unknown_ids_are_exit_4(line):
    for args in (["read", "nosuchmessage0000"], ["get", "nosuchmessage0000"], ["status", "nosuchmessage0000"],
                 ["reply", "nosuchmessage0000"]):
        done = line(*args, stdin="text")
        assert done.code == 4, (args, done)
        done.one_sentence()
    done = line("read", "../../etc/passwd")
    assert done.code == 4


def test_send_checks_addresses_subject_and_files_first(line):
    drafts = line.tmp / "state-ann" / "drafts"
    cases = [
        (["--to", "not an address", "--subject", "x"], "is not a valid e-mail address"),
        (["--subject", "x"], "at least one recipient"),
        (["--to", "bob@abc.example"], "--subject"),
        (["--to", "bob@abc.example", "--subject", "two\nlines"], "line break"),
        (["--to", "bob@abc.example", "--subject", "x" * 999], "at most 998"),
        (["--to", "bob@abc.example", "--subject", "x", "--attach", str(line.tmp / "none.pdf")], "does not exist"),
        (["--to", "bob@abc.example", "--subject", "x", "--draft", "0" * 32], "no other options"),
    ]
    for args, words in cases:
        done = line("send", *args, stdin="body")
        assert done.code == 2, (args, done)
        assert words in done.one_sentence(), (args, done.err)
    assert not drafts.exists() or list(drafts.glob("*.json")) == []
    done = line("send", "--draft", "f" * 32)
    assert done.code == 4 and "no draft" in done.one_sentence()


def test_a_failed_send_keeps_the_draft_and_a_retry_never_sends_twice(line, pen):
    subj = subject("retry")
    # The same account (drafts belong to one), but the PEN's certificate is not trusted here.
    untrusted = line.tmp / "untrusted.toml"
    untrusted.write_text(f'server = "{line.pen.process.url}"\nemail = "ann@abc.example"\n')
    failed = line("send", "--to", "bob@abc.example", "--subject", subj, stdin="Send me once.", config=untrusted)
    assert failed.code == 1
    sentence = failed.one_sentence()
    draft_id = re.search(r"kept as draft ([0-9a-f]{32})", sentence).group(1)
    assert f"penmail send --draft {draft_id}" in sentence
    draft_file = line.tmp / "state-ann" / "drafts" / f"{draft_id}.json"
    saved = draft_file.read_bytes()
    assert json.loads(saved)["body"] == "Send me once."

    done = line("send", "--draft", draft_id)
    assert done.code == 0, done.err
    assert not draft_file.exists()
    first = done.out
    # The answer "was lost": the same draft, with the same Idempotency-Key, goes again.
    draft_file.write_bytes(saved)
    again = line("send", "--draft", draft_id)
    assert again.code == 0, again.err
    assert again.out == first  # the PEN answered the same message
    assert len(pen.mails_to("bob@abc.example", subj)) == 1
    time.sleep(0.5)
    assert len(pen.mails_to("bob@abc.example", subj)) == 1
    with pen.as_user("bob") as c:
        items = c.get("/messages", params={"q": subj}).json()["items"]
    assert len([m for m in items if m["subject"] == subj]) == 1


def test_reply_all_quotes_threads_and_leaves_me_out(line, pen, send):
    subj = subject("Appointment")
    original = send("bob", ["ann"], cc=["cat"], subject=subj, body="Can you come on Monday?\n\nBob")
    done = line("reply", original["id"], "--all", stdin="Yes, Monday works.\n")
    assert done.code == 0, done.err
    reply = find(pen, "ann", f"Re: {subj}", folder="sent")
    assert reply["in_reply_to"] == original["id"] and reply["thread_id"] == original["thread_id"]
    assert [a["email"] for a in reply["to"]] == ["bob@abc.example"]
    assert [a["email"] for a in reply["cc"]] == ["cat@abc.example"]
    body = reply["body_text"]
    assert body.startswith("Yes, Monday works.\n\nOn ") and ", Bob Stone wrote:\n" in body
    assert "> Can you come on Monday?\n>\n> Bob" in body
    assert pen.mails_to("bob@abc.example", f"Re: {subj}") and pen.mails_to("cat@abc.example", f"Re: {subj}")
    # A plain reply goes to the sender only.
    done = line("reply", original["id"], "--json", stdin="Just to you.")
    assert done.code == 0, done.err
    doc = done.json()
    assert [a["email"] for a in doc["to"]] == ["bob@abc.example"] and doc["cc"] == []
    assert doc["in_reply_to"] == original["id"] and doc["subject"] == f"Re: {subj}"


# ---------------------------------------------------------------- attachments and status


def test_get_saves_checked_attachments_and_never_overwrites(line, pen, tmp_path):
    one, two = os.urandom(200_000), b"second file\n"
    (tmp_path / "scan.pdf").write_bytes(one)
    (tmp_path / "notes.txt").write_bytes(two)
    subj = subject("files")
    done = line("send", "--to", "bob@abc.example", "--subject", subj, "--attach", str(tmp_path / "scan.pdf"),
                "--attach", str(tmp_path / "notes.txt"), stdin="Two files.")
    assert done.code == 0, done.err
    mine = find(pen, "bob", subj)
    listed = line("list", "--search", subj, who="bob")
    assert listed.lines[0].split("\t")[3] == "UA"

    out = tmp_path / "out"
    out.mkdir()
    done = line("get", mine["id"], who="bob")
    assert done.code == 2, done
    assert "--attachment N (1 to 2)" in done.one_sentence()
    done = line("get", mine["id"], "--all", "-o", str(out), who="bob")
    assert done.code == 0, done.err
    assert done.lines == [str(out / "scan.pdf"), str(out / "notes.txt")]
    assert done.err == ""  # no progress line in a pipe
    assert (out / "scan.pdf").read_bytes() == one and (out / "notes.txt").read_bytes() == two
    # The same file again: recognised by its sha256, said, and no copy written.
    done = line("get", mine["id"], "--attachment", "2", "-o", str(out), "--json", who="bob")
    assert done.code == 0, done.err
    doc = done.json()
    assert doc["message_id"] == mine["id"] and doc["made_folder"] is None
    assert doc["saved"] == [{"number": 2, "attachment_id": mine["attachments"][1]["id"], "filename": "notes.txt",
                             "path": str(out / "notes.txt"), "size": len(two),
                             "sha256": hashlib.sha256(two).hexdigest(), "already_saved": True}]
    assert f"notes.txt is already saved as {out / 'notes.txt'} (the same sha256); nothing was written." in done.err
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt", "scan.pdf"]
    # Another file under that name is never overwritten: the download goes beside it.
    (out / "notes.txt").write_bytes(b"mine, not the attachment\n")
    done = line("get", mine["id"], "--attachment", "2", "-o", str(out), who="bob")
    assert done.code == 0 and done.lines == [str(out / "notes (1).txt")] and done.err == ""
    assert (out / "notes.txt").read_bytes() == b"mine, not the attachment\n"
    assert (out / "notes (1).txt").read_bytes() == two
    done = line("get", mine["id"], "--attachment", "2", "-o", str(out), who="bob")  # the copy counts as saved
    assert done.lines == [str(out / "notes (1).txt")] and "already saved as" in done.err
    done = line("get", mine["id"], "--attachment", "3", who="bob")
    assert done.code == 4 and "no number 3" in done.one_sentence()
    # -o with a folder that is not there: made, and said.
    missing = tmp_path / "missing" / "deeper"
    done = line("get", mine["id"], "-o", str(missing), "--attachment", "1", "--json", who="bob")
    assert done.code == 0, done.err
    assert done.json()["made_folder"] == str(missing) and done.json()["saved"][0]["already_saved"] is False
    assert done.err.strip() == f"Made the folder {missing}." and (missing / "scan.pdf").read_bytes() == one
    (tmp_path / "a-file").write_text("x")
    done = line("get", mine["id"], "-o", str(tmp_path / "a-file" / "sub"), "--attachment", "1", who="bob")
    assert done.code == 1 and "could not be made" in done.one_sentence()


def test_status_lists_each_recipient(line, pen):
    subj = subject("status")
    sent = line(
        "send",
        "--to",
        "bob@abc.example",
        "--cc",
        "cat@abc.example",
        "--bcc",
        "admin@abc.example",
        "--subject",
        subj,
        "--json",
        stdin="x",
    ).json()
    assert set(sent) >= {"id", "notifications", "to", "cc", "bcc"}
    assert [a["email"] for a in sent["bcc"]] == ["admin@abc.example"]
    pen.mails_to("admin@abc.example", subj)
    deadline = time.monotonic() + 20
    while True:
        done = line("status", sent["id"])
        assert done.code == 0, done.err
        rows = [row.split("\t") for row in done.lines]
        if all(r[2] == "sent" for r in rows) or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert sorted(rows) == [
        ["admin@abc.example", "bcc", "sent", "1 attempt", "-", "not opened"],
        ["bob@abc.example", "to", "sent", "1 attempt", "-", "not opened"],
        ["cat@abc.example", "cc", "sent", "1 attempt", "-", "not opened"],
    ]
    doc = line("status", sent["id"], "--json").json()
    assert doc["message_id"] == sent["id"] and len(doc["items"]) == 3
    assert set(doc["items"][0]) == {"recipient", "kind", "status", "attempts", "last_error", "updated_at",
                                    "opened_at", "revoked_at"}
    # Only the sender may see them.
    mine = find(pen, "bob", subj)
    assert line("status", mine["id"], who="bob").code == 4


# ---------------------------------------------------------------- login, logout, keyring


def test_login_remembers_in_the_keyring_whoami_resumes_and_logout_revokes(line, pen, tmp_path):
    ring = tmp_path / "keyring.json"
    config = tmp_path / "fresh" / "config.toml"
    done = line(
        "login",
        "--server",
        pen.process.url,
        "--email",
        "cat@abc.example",
        "--ca-file",
        pen.ca_file,
        who="cat",
        config=config,
        keyring_file=ring,
        password=None,
        stdin=PASSWORD + "\n",
    )
    assert done.code == 0, done.err
    assert done.lines == [
        f"Signed in to {urlsplit(pen.process.url).netloc} as Cat Moss <cat@abc.example>.",
        "The sign-in is remembered in the system keyring; `penmail logout` ends it.",
    ]
    assert "Saved server, email and ca_file" in done.err
    text = config.read_text()
    assert f'server = "{pen.process.url}"' in text and 'email = "cat@abc.example"' in text
    stored = json.loads(ring.read_text())
    assert list(stored) == [f"penmail {pen.process.url}|cat@abc.example"]
    first_token = next(iter(stored.values()))

    # No password anywhere: the remembered sign-in is used (and its rotated token stored).
    for _ in range(2):
        done = line("whoami", who="cat", config=config, keyring_file=ring, password=None)
        assert done.code == 0, done.err
        assert done.lines[0] == "Email:   cat@abc.example"
    assert next(iter(json.loads(ring.read_text()).values())) != first_token

    done = line("logout", who="cat", config=config, keyring_file=ring, password=None)
    assert done.code == 0, done.err
    assert done.lines == [
        f"Signed out of {urlsplit(pen.process.url).netloc}; the remembered sign-in was revoked and removed."
    ]
    assert json.loads(ring.read_text()) == {}
    with pen.client() as c:
        assert c.post("/auth/refresh", json={"refresh_token": first_token}).status_code == 401
    done = line("whoami", who="cat", config=config, keyring_file=ring, password=None)
    assert done.code == 3
    done = line("logout", "--json", who="cat", config=config, keyring_file=ring, password=None)
    assert done.code == 0 and done.json() == {
        "server": pen.process.url,
        "email": "cat@abc.example",
        "signed_out": False,
    }


def whoami_at_once(env: dict, count: int = 4) -> None:
    """`whoami` in `count` processes started together; each must succeed."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "tui.cli", "whoami", "--json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            cwd=REPO,
        )
        for _ in range(count)
    ]
    results = [(p.wait(timeout=60), p.stdout.read(), p.stderr.read()) for p in procs]
    for p in procs:
        p.stdout.close()
        p.stderr.close()
    assert [code for code, _, _ in results] == [0] * count, results


def test_commands_at_the_same_time_share_the_remembered_sign_in(line, pen, tmp_path):
    """Refresh tokens rotate and a used one revokes the whole sign-in: parallel commands
    take turns refreshing, so none of them presents a used token."""
    ring = tmp_path / "keyring.json"
    config = line.config("ann", name="parallel")
    assert line("login", config=config, keyring_file=ring, password=None, stdin=PASSWORD).code == 0
    whoami_at_once(line.env("ann", config, None, ring))
    done = line("whoami", config=config, keyring_file=ring, password=None)
    assert done.code == 0, done.err


def test_login_without_a_keyring_says_so_and_wrong_password_is_3(line, pen):
    done = line("login", password=None, stdin=PASSWORD + "\n")
    assert done.code == 0, done.err
    assert done.lines[-1].startswith("No system keyring is available, so the sign-in is kept in ")
    doc = line("login", "--json", "--no-remember", password=None, stdin=PASSWORD + "\n").json()
    assert doc == {
        "server": pen.process.url,
        "email": "ann@abc.example",
        "display_name": "Ann Lee",
        "role": "member",
        "remembered": False,
        "token_file": None,
        "notice": None,
    }
    done = line("login", password=None, stdin="wrong password\n", config=line.config("x", email=fresh_user(pen)))
    assert done.code == 3 and "password is wrong" in done.one_sentence()
    done = line("login", password=None, stdin="")
    assert done.code == 2 and "No password" in done.one_sentence()
    done = line("login", "--server", "http://pen.example", password=None, stdin=PASSWORD)
    assert done.code == 2 and "https://" in done.one_sentence()


def test_update_settings_keeps_the_rest_of_the_file(tmp_path):
    from tui.config import load_config
    from tui.line.commands import update_settings

    path = tmp_path / "config.toml"
    path.write_text('# mine\ntheme = "high-contrast"\nserver = "https://old.example"\n\n[keys]\nquit = "q"\n')
    update_settings(path, {"server": "https://new.example", "email": "ann@abc.example"})
    text = path.read_text()
    assert text.startswith('email = "ann@abc.example"\n# mine\n')
    config = load_config(path)
    assert config.server == "https://new.example" and config.email == "ann@abc.example"
    assert config.theme == "high-contrast" and config.keys == {"quit": "q"}


# ---------------------------------------------------------------- open a notification's link


def link_for(pen, rcpt: str, subj: str) -> str:
    mails = pen.mails_to(rcpt, subj)
    assert mails, f"no notification for {rcpt}"
    message_id, token = pen.link_token(mails[-1])
    return f"https://localhost:{pen.process.port}/m/{message_id}?t={token}"


def test_open_signs_up_a_new_guest_and_prints_the_message(line, pen, tmp_path):
    guest = f"guest-{uuid.uuid4().hex[:8]}@elsewhere.example"
    subj = subject("for a guest")
    assert line("send", "--to", guest, "--subject", subj, stdin="Welcome, guest.").code == 0
    url = link_for(pen, guest, subj)
    config = tmp_path / "guest.toml"
    config.write_text(f'ca_file = "{pen.ca_file}"\n')
    # Passwords that differ: nothing is made.
    done = line(
        "open", url, who="guest", config=config, password=None, stdin="Gwen Guest\nlong password\nanother one\n"
    )
    assert done.code == 2 and "differ" in done.err
    done = line(
        "open", url, who="guest", config=config, password=None, stdin="Gwen Guest\nlong password\nlong password\n"
    )
    assert done.code == 0, done.err
    assert f'sent you a secure message, "{subj}".' in done.err and "ABC Medical: Ann Lee <ann@abc.example>" in done.err
    assert done.lines[0] == "From:    Ann Lee <ann@abc.example>" and f"Subject: {subj}" in done.lines
    assert done.lines[-1] == "Welcome, guest."
    text = config.read_text()
    assert f'server = "https://localhost:{pen.process.port}"' in text and f'email = "{guest}"' in text
    # The guest exists, signs in with that password, and the message was marked read.
    with pen.client() as c:
        token = c.post("/auth/login", json={"email": guest, "password": "long password"}).json()["access_token"]
    with pen.client(token) as c:
        items = c.get("/messages").json()["items"]
    assert [(m["subject"], m["unread"]) for m in items] == [(subj, False)]
    # Opening again (registered now) asks for the password: on standard input here.
    done = line("open", url, "--json", who="guest", config=config, password=None, stdin="long password\n")
    assert done.code == 0, done.err
    assert done.json()["subject"] == subj


def test_open_for_a_member_and_links_it_refuses(line, pen):
    subj = subject("member link")
    assert line("send", "--to", "bob@abc.example", "--subject", subj, stdin="For Bob.").code == 0
    url = link_for(pen, "bob@abc.example", subj)
    local = line.config("bob", server=f"https://localhost:{pen.process.port}", name="bob-localhost")
    done = line("open", url, "--print", who="bob", config=local)
    assert done.code == 0, done.err
    assert f"Subject: {subj}" in done.lines and done.lines[-1] == "For Bob."
    # The configured PEN is another one: the saved password is not sent to the link's server.
    done = line("open", url, who="bob")
    assert done.code == 3 and "another PEN" in done.one_sentence()
    for bad, words in (
        (url.replace("https://", "http://"), "only https://"),
        (url.replace("https://", "javascript://"), "only https://"),
        (f"https://localhost:{pen.process.port}/x/abc?t=def", "not a PEN message link"),
        (url.split("?")[0], "not a PEN message link"),
        ("", "only https://"),
    ):
        done = line("open", bad, who="bob", config=local)
        assert done.code == 2, (bad, done)
        assert words in done.one_sentence()


def test_open_on_a_terminal_starts_the_tui_at_the_message(line, pen, tmp_path):
    """The real thing on a pseudo-terminal: the TUI opens the linked message; q q quits."""
    import fcntl
    import pty
    import select
    import struct
    import termios

    subj = subject("in the tui")
    assert line("send", "--to", "bob@abc.example", "--subject", subj, stdin="Shown in the reader.").code == 0
    url = link_for(pen, "bob@abc.example", subj)
    local = line.config("bob", server=f"https://localhost:{pen.process.port}", name="bob-tui")
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 120, 0, 0))
    env = line.env("bob", local, PASSWORD, None)
    env["TERM"] = "xterm-256color"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tui.cli", "open", url],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=env,
        cwd=REPO,
        close_fds=True,
    )
    os.close(slave)
    screen = [b""]

    def shown() -> str:
        return re.sub(rb"\x1b\[[0-9;?<>=$]*[a-zA-Z~]", b"", screen[0]).decode("utf-8", "replace")

    def pump_until(condition, timeout: float = 30) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not condition():
            ready, _, _ = select.select([master], [], [], 0.1)
            if ready:
                try:
                    screen[0] += os.read(master, 65536)
                except OSError:
                    return condition()
        return condition()

    try:
        # The reader, straight away: the linked message's headers and text.
        assert pump_until(lambda: f"Subject: {subj}" in shown() and "Shown" in shown()), shown()[-2000:]
        screen[0] = b""
        os.write(master, b"q")  # back to the mailbox
        assert pump_until(lambda: "Quit" in shown()), shown()[-2000:]
        for _ in range(5):
            os.write(master, b"q")
            if pump_until(lambda: proc.poll() is not None, 5):
                break
        proc.wait(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    assert proc.returncode == 0
    assert find(pen, "bob", subj)["unread"] is False


# ---------------------------------------------------------------- colour, terminals


def run_on_terminal(line, *args, env_extra=None) -> str:
    import pty

    master, slave = pty.openpty()
    env = line.env("bob", None, PASSWORD, None)
    env.update(env_extra or {})
    env["TERM"] = "xterm"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tui.cli", *args],
        stdin=subprocess.DEVNULL,
        stdout=slave,
        stderr=subprocess.PIPE,
        env=env,
        cwd=REPO,
    )
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(timeout=30)
    os.close(master)
    return b"".join(chunks).decode("utf-8", "replace")


def test_colour_only_on_a_terminal_and_never_with_no_colour(line, pen, send):
    subj = subject("colour")
    send("ann", ["bob"], subject=subj)
    shown = run_on_terminal(line, "list", "--search", subj)
    assert subj in shown and "\x1b[1m" in shown  # unread in bold, on a terminal
    assert "\t" not in shown  # aligned columns for people
    plain = run_on_terminal(line, "list", "--search", subj, env_extra={"NO_COLOR": "1"})
    assert subj in plain and "\x1b" not in plain
    piped = line("list", "--search", subj, who="bob")
    assert "\x1b" not in piped.out and piped.lines[0].count("\t") == 4


# ---------------------------------------------------------------- hostile data, served raw


class HostilePen:
    """A PEN of our own that answers the API with the hostile strings as they are (the real
    server strips or refuses control characters, so only this way do they reach penmail)."""

    def __init__(self, pen, hostile: dict):
        self.values = {k: v for k, v in hostile["text"].items() if not k.startswith("_")}
        short = [v for k, v in self.values.items() if k not in ("very_long", "many_lines")]
        self.files = {}
        attachments = []
        for n, name in enumerate(hostile["filenames"]):
            data = f"file {n}\n".encode() * (n + 1)
            aid = f"a{n}"
            self.files[aid] = data
            attachments.append(
                {
                    "id": aid,
                    "filename": name,
                    "content_type": "text/plain\x1b[31m",
                    "size": len(data),
                    "sha256": hashlib.sha256(data).hexdigest(),
                }
            )
        self.user = {
            "id": "u1",
            "email": "me@abc.example",
            "display_name": " ".join(short[:8]),
            "role": "member",
            "package": short[3],
        }
        self.messages = {}
        for key, value in self.values.items():
            self.messages[f"m-{key}"] = self._message(f"m-{key}", value, value, value, None, [])
        everything = "\n".join(self.values.values())
        self.messages["m-all"] = self._message(
            "m-all",
            " ".join(short),
            " ".join(short[:10]),
            everything,
            "".join(hostile["html"].values()),
            attachments,
            in_reply_to="m-csi_clear_screen",
        )
        self.messages["m-text"] = self._message("m-text", short[0], short[1], everything, None, attachments[:3])
        self.notifications = [
            {
                "recipient": {"email": "x@evil.example", "name": v},
                "kind": "to",
                "status": "failed",
                "attempts": 3,
                "last_error": v,
                "updated_at": "2026-11-20T09:31:00Z",
                "opened_at": "2026-11-20T09:32:00Z",
                "revoked_at": None,
            }
            for v in short
        ]
        self.audit = [
            {"id": n + 1, "at": "2026-11-20T09:33:00Z", "action": v, "actor": v, "recipient": v,
             "message_id": "m-all", "attachment_id": v, "channel": v, "client": v, "detail": {v: [v, {v: v}]},
             "hash": "0" * 64}
            for n, v in enumerate(short)
        ]
        self.tls = (pen.data / "tls" / "server.pem", pen.data / "tls" / "server.key")
        self.httpd: ThreadingHTTPServer | None = None

    def _message(self, mid, subject_, name, body, html, attachments, in_reply_to=None) -> dict:
        addr = {"email": "x@evil.example", "name": name[:300]}
        return {
            "id": mid,
            "thread_id": "t1",
            "folder": "inbox",
            "from": addr,
            "to": [addr, {"email": "me@abc.example", "name": name[:300]}],
            "cc": [addr],
            "subject": subject_,
            "sent_at": "2026-11-20T09:30:00Z",
            "unread": True,
            "attachment_count": len(attachments),
            "size": len(body),
            "snippet": body[:140],
            "bcc": [],
            "body_text": body,
            "body_html": html,
            "attachments": attachments,
            "in_reply_to": in_reply_to,
            "notifications": [],
        }

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.httpd.server_address[1]}"

    def start(self) -> HostilePen:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def answer(self, status: int, doc=None, body: bytes | None = None, headers: dict | None = None):
                data = body if body is not None else (json.dumps(doc).encode() if doc is not None else b"")
                self.send_response(status)
                for k, v in (headers or {"Content-Type": "application/json"}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def route(self, method: str):
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                parts = urlsplit(self.path)
                path = parts.path.removeprefix("/api/v1")
                if method == "POST" and path in ("/auth/login", "/auth/refresh"):
                    return self.answer(
                        200,
                        {
                            "access_token": "at",
                            "refresh_token": "rt",
                            "token_type": "bearer",
                            "expires_in": 900,
                            "user": owner.user,
                        },
                    )
                if method == "POST" and path == "/auth/logout":
                    return self.answer(204)
                if path == "/me":
                    return self.answer(200, owner.user)
                if path == "/messages" and method == "GET":
                    query = parse_qs(parts.query)
                    folder = query.get("folder", ["inbox"])[0]
                    items = list(owner.messages.values()) if folder == "inbox" else []
                    return self.answer(200, {"items": items, "next_cursor": None, "total": len(items)})
                match = re.match(r"^/messages/([^/]+)(/.*)?$", path)
                if match and match.group(1) in owner.messages:
                    m = owner.messages[match.group(1)]
                    rest = match.group(2) or ""
                    if rest == "" and method == "GET":
                        return self.answer(200, m)
                    if rest == "" and method == "PATCH":
                        return self.answer(200, {**m, "unread": False})
                    if rest == "/notifications":
                        return self.answer(200, {"items": owner.notifications})
                    if rest == "/revoke" and method == "POST":
                        return self.answer(200, {**m, "notifications": owner.notifications})
                    if rest == "/audit":
                        return self.answer(200, {"items": owner.audit, "next_cursor": None})
                    file = re.match(r"^/attachments/(\w+)$", rest)
                    if file and file.group(1) in owner.files:
                        data = owner.files[file.group(1)]
                        return self.answer(
                            200,
                            body=data,
                            headers={
                                "Content-Type": "application/octet-stream",
                                "ETag": f'"{hashlib.sha256(data).hexdigest()}"',
                            },
                        )
                return self.answer(
                    404,
                    {
                        "error": {
                            "code": "not_found",
                            "message": owner.values["csi_clear_screen"] + owner.values["bidi_override"],
                        }
                    },
                )

            def do_GET(self):
                self.route("GET")

            def do_POST(self):
                self.route("POST")

            def do_PATCH(self):
                self.route("PATCH")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(*map(str, self.tls))
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def hostile_pen(pen, hostile):
    server = HostilePen(pen, hostile).start()
    yield server
    server.stop()


def test_hostile_data_never_reaches_the_output_raw(line, hostile_pen, hostile):
    config = line.config("ann", server=hostile_pen.url, name="hostile", email="me@abc.example")
    runs = {
        "list": line("list", config=config),
        "list-json": line("list", "--json", config=config),
        "read": line("read", "m-all", config=config),
        "read-json": line("read", "m-all", "--json", config=config),
        "read-text": line("read", "m-text", config=config),
        "status": line("status", "m-all", config=config),
        "status-json": line("status", "m-all", "--json", config=config),
        "revoke": line("revoke", "m-all", config=config),
        "revoke-json": line("revoke", "m-all", "--json", config=config),
        "audit": line("audit", "m-all", config=config),
        "audit-json": line("audit", "m-all", "--json", config=config),
        "whoami": line("whoami", config=config),
        "missing": line("read", "nothere", config=config),
        "reply": line("reply", "m-text", config=config, stdin="hi"),  # refused: the PEN is not real
    }
    for name, done in runs.items():
        for stream in (done.out, done.err):
            found = BAD.search(stream)
            assert not found, (name, repr(stream[max(0, found.start() - 40) : found.end() + 40]))
    assert runs["missing"].code == 4
    assert runs["missing"].one_sentence() == "penmail: You have been signed outinvoicetxt.exe."
    for name in ("list", "read", "read-text", "status", "whoami", "list-json", "read-json", "status-json", "revoke",
                 "revoke-json", "audit", "audit-json"):
        assert runs[name].code == 0, (name, runs[name].err)
    # Shown literally, less the controls: markup stays text, one message a line.
    listed = runs["list"].lines
    assert len(listed) == len(hostile_pen.messages)
    assert all(len(row.split("\t")) == 5 for row in listed)
    assert any(row.endswith("[@click=app.quit]Click to read[/]") for row in listed)
    doc = runs["read-json"].json()
    assert doc["subject"].startswith("[@click=app.quit]Click to read[/]")
    assert "\n" not in doc["subject"] and "\n" not in doc["from"]["name"]
    assert len(doc["attachments"]) == len(hostile["filenames"])
    assert "Attachments:" in runs["read"].out
    # One row a line, five fields, however the PEN's audit rows are made.
    assert len(runs["audit"].lines) == len(hostile_pen.audit)
    assert all(len(row.split("\t")) == 5 for row in runs["audit"].lines)
    assert runs["audit-json"].json()["count"] == len(hostile_pen.audit)


def test_ids_that_start_with_a_dash_are_ids():
    """One id in 64 starts with "-" (URL-safe base64); argparse must not take it for an option."""
    from tui.cli import build_parser
    from tui.line import protect_ids

    parser = build_parser()
    dash = "-Kq3x9_ZpUeWvT2m-1AbCd"
    cases = {
        ("read", dash): (dash, None),
        ("get", "-oXYZ1234567890abcdef", "--all"): ("-oXYZ1234567890abcdef", None),
        ("get", "-o", "/tmp/x", dash, "--attachment", "2"): (dash, "/tmp/x"),
        ("status", "--json", dash): (dash, None),
        ("reply", "--all", "--" + dash): ("--" + dash, None),
        ("read", "--keep-unread", "plainid"): ("plainid", None),
    }
    for argv, (wanted, output) in cases.items():
        args = parser.parse_args(protect_ids(parser, list(argv)))
        assert args.id == wanted, argv
        assert getattr(args, "output", None) == output
    assert protect_ids(parser, ["list", "--limit", "5"]) == ["list", "--limit", "5"]


def test_login_checks_the_certificate_before_asking_and_names_ca_file(line, pen, tmp_path):
    """No CA: the one sentence comes before any question (nothing read from standard input,
    which here holds an address and a password), names --ca-file, and nothing is saved."""
    config = tmp_path / "nothing" / "config.toml"
    done = line("login", "--server", pen.process.url, who="cat", config=config, password=None,
                stdin="cat@abc.example\n" + PASSWORD + "\n")
    assert done.code != 0
    sentence = done.one_sentence()
    assert "is not trusted; pass --ca-file with the PEN's CA certificate" in sentence, sentence
    assert not config.exists()


def test_login_with_server_and_ca_file_replaces_a_ca_file_that_is_gone(line, pen, tmp_path):
    """After a demo restart the saved ca_file names a deleted folder: `login --server NEW
    --ca-file NEW` signs in and saves the new one; other commands still refuse the stale file."""
    config = tmp_path / "stale.toml"
    config.write_text(f'server = "https://localhost:1"\nca_file = "{tmp_path}/gone/ca.pem"\n'
                      f'email = "cat@abc.example"\n')
    done = line("whoami", who="cat", config=config, password=None)
    assert done.code == 2 and "does not exist" in done.one_sentence()
    done = line("login", "--server", pen.process.url, "--ca-file", pen.ca_file, "--no-remember", who="cat",
                config=config, password=None, stdin=PASSWORD + "\n")
    assert done.code == 0, done.err
    text = config.read_text()
    assert f'ca_file = "{Path(pen.ca_file).resolve()}"' in text and "gone" not in text, text
    assert f'server = "{pen.process.url}"' in text

    # --server alone: the stale ca_file is dropped (not used, not kept) once the sign-in works.
    config.write_text(f'ca_file = "{tmp_path}/gone/ca.pem"\nemail = "cat@abc.example"\n')
    done = line("login", "--server", pen.process.url, "--no-remember", who="cat", config=config, password=None,
                stdin=PASSWORD + "\n", env={"SSL_CERT_FILE": str(pen.ca_file)})
    assert done.code == 0, done.err
    assert "ca_file" not in config.read_text() and "removal of the missing ca_file" in done.err


def test_send_says_when_notifications_wait_for_the_relay(line, pen):
    """The relay answers "later": send says the notification waits, and how to follow it,
    where it used to print "Sent" alone."""
    subj = subject("relay later")
    pen.smtp.handler.reply = "451 4.3.0 try again later"
    try:
        done = line("send", "--to", "bob@abc.example", "--subject", subj, stdin="Soon.\n")
    finally:
        pen.smtp.handler.reply = None
    assert done.code == 0, done.err
    message_id = re.search(r"\(id ([^)]+)\)", done.lines[0]).group(1)
    assert done.lines[1] == (f"Notifications to 1 recipient: 1 deferred; the PEN keeps trying the ones that wait, "
                             f"and `penmail status {message_id}` shows where they are."), done.out
