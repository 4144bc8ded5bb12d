"""`penmail intercept`'s sent half: each PEN message the person sent, through the API, through
penmail (line mode) or through the web reader's compose, goes once into their own Sent
folder, over IMAP (Debian's Dovecot: the folder marked \\Sent, one named in the settings,
or "Sent" made) and in a Maildir (DIR/.Sent, or the one the settings name), with its
Message-ID, its threading header naming the message it answers, its attachments (sha256
checked), its sent date, flagged seen; once however often and however interrupted (a run
killed between APPEND and recording); --watch within 5 s, catching up after a stop;
`sent = false` places nothing; notmuch indexes the Maildir and finds the sent text."""

from __future__ import annotations

import email
import email.policy
import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.client.test_export import Api, line, people  # noqa: F401 - fixtures used here too
from tests.client.test_intercept import (  # noqa: F401 - the dovecot fixture is used here too
    configure,
    dovecot,
    imap_config,
    make_maildir,
    need_dovecot,
    notifications,
    put,
    sha,
)
from tests.client.test_line_mode import REPO, Line
from tests.conftest import PASSWORD
from tests.dovecot import Dovecot
from tests.web.conftest import Web
from tui.intercept.imap import KEYWORD

HOW_TO_ENABLE_NOTMUCH = "notmuch is not installed: `apt-get install -y notmuch` runs the notmuch test."


def need_notmuch() -> str:
    """notmuch's path; skip without it, with one line saying how to enable; fail under CI."""
    found = shutil.which("notmuch")
    if found is None:
        if os.environ.get("PEN_REQUIRE_TOOLS") == "1":
            pytest.fail(f"{HOW_TO_ENABLE_NOTMUCH} (PEN_REQUIRE_TOOLS=1)")
        pytest.skip(HOW_TO_ENABLE_NOTMUCH)
    return found


def tag() -> str:
    return uuid.uuid4().hex[:8]


def folder_copies(server: Dovecot, user: str, folder: str = "Sent") -> dict[str, tuple]:
    """Message-ID -> (message, flags, INTERNALDATE) of each message in the folder; each once."""
    c = server.client(user)
    try:
        c.select_folder(folder, readonly=True)
        uids = c.search(["ALL"])
        got = c.fetch(uids, ["BODY.PEEK[]", "FLAGS", "INTERNALDATE"]) if uids else {}
    finally:
        c.logout()
    found: dict[str, tuple] = {}
    for uid in sorted(got):
        msg = email.message_from_bytes(got[uid][b"BODY[]"], policy=email.policy.default)
        assert msg["Message-ID"] not in found, f"{msg['Message-ID']} is in {folder} twice"
        found[msg["Message-ID"]] = (msg, set(got[uid][b"FLAGS"]), got[uid][b"INTERNALDATE"])
    return found


def folder_names(server: Dovecot, user: str) -> list[str]:
    c = server.client(user)
    try:
        return sorted(name for _, _, name in c.list_folders())
    finally:
        c.logout()


def attachments_of(msg) -> dict[str, str]:
    return {p.get_filename(): sha(p.get_payload(decode=True)) for p in msg.iter_attachments()}


def sent_at(doc: dict) -> datetime:
    return datetime.fromisoformat(doc["sent_at"].replace("Z", "+00:00"))


def intercept(line: Line, config: Path, *args: str, env: dict | None = None):
    return line("intercept", *args, who="icpt", config=config, env=env)


def summary_of(done) -> dict:
    return [json.loads(x) for x in done.out.splitlines() if x.startswith('{"summary"')][0]["summary"]


def test_api_penmail_and_web_reader_replies_each_go_once_to_sent(line, pen, people, dovecot, tmp_path):
    a, b = Api(pen, people["a"]), Api(pen, people["b"])
    question = a.send([people["b"]], "Figures " + tag(), "Can you send the figures?")
    put(dovecot, people["b"], notifications(pen, people["b"], [question]))  # the received half has work too
    files = {"api.bin": os.urandom(40_000), "line ü.pdf": os.urandom(30_000) + bytes(range(256)),
             "web.txt": b"from the web reader\n" * 100}

    # 1. The API.
    by_api = b.send([people["a"]], "Re: by the API", "The API's answer.", in_reply_to=question["id"],
                    attachments=[b.upload("api.bin", files["api.bin"])])
    # 2. penmail's line mode (the client library underneath).
    attached = tmp_path / "line ü.pdf"
    attached.write_bytes(files["line ü.pdf"])
    config = imap_config(line, dovecot, people["b"])
    replied = line("reply", question["id"], "--attach", str(attached), "--json", who="icpt", config=config,
                   stdin="penmail's answer.\n")
    assert replied.code == 0, replied.err
    by_penmail = replied.json()
    # 3. The web reader's reply form, signed in with the password.
    web = Web(pen)
    try:
        web.login(people["b"], PASSWORD)
        form = web.get(f"/m/{question['id']}/reply").text
        fields = {"csrf": web.form_token(form), "key": re.search(r'name="key" value="([^"]+)"', form).group(1),
                  "to": people["a"], "cc": "", "subject": "Re: by the web", "body": "The web reader's answer."}
        r = web.client.post(f"/m/{question['id']}/reply", data=fields,
                            files={"files": ("web.txt", files["web.txt"], "text/plain")})
        assert r.status_code == 303, r.text
        by_web = b.get(r.headers["location"].split("?")[0].rsplit("/", 1)[1])  # /m/ID?done=sent
    finally:
        web.close()
    sent = {"api.bin": b.get(by_api["id"]), "line ü.pdf": b.get(by_penmail["id"]), "web.txt": by_web}

    done = intercept(line, config, "--imap", "--once")
    assert done.code == 0, done.err
    assert "1 replaced, 0 already there, 0 left in place" in done.out, done.out
    assert "sent messages: 3 placed, 0 already there, 0 failed." in done.out, done.out
    assert done.out.count("Placed in Sent: ") == 3 and "1 attachment" in done.out

    copies = folder_copies(dovecot, people["b"])
    assert set(copies) == {f"<{m['id']}@localhost>" for m in sent.values()}
    for name, message in sent.items():
        msg, flags, internal = copies[f"<{message['id']}@localhost>"]
        assert msg["In-Reply-To"] == f"<{question['id']}@localhost>"  # the message it answers
        assert f"<{question['id']}@localhost>" in msg["References"]
        assert attachments_of(msg) == {name: sha(files[name])}
        assert msg["Date"].datetime == sent_at(message).replace(microsecond=0)
        assert internal.astimezone(UTC) == sent_at(message).replace(microsecond=0)
        assert {b"\\Seen", KEYWORD} <= flags
        assert msg["X-PEN-Folder"] == "sent" and msg["X-PEN-Message-Id"] == message["id"]
        assert [x.addr_spec for x in msg["From"].addresses] == [people["b"]]
        assert [x.addr_spec for x in msg["To"].addresses] == [people["a"]]
    text = copies[f"<{by_web['id']}@localhost>"][0].get_body(("plain",)).get_content()
    assert "The web reader's answer." in text

    # Again: nothing doubled, on either side.
    again = intercept(line, config, "--imap", "--once", "--json")
    assert again.code == 0, again.err
    assert summary_of(again) == {"replaced": 0, "already": 0, "left": 0, "failed": 0, "sent_placed": 0,
                                 "sent_already": 0, "sent_failed": 0}
    assert len(folder_copies(dovecot, people["b"])) == 3

    # A copy the person deletes from Sent stays deleted: it was placed once.
    c = dovecot.client(people["b"])
    try:
        c.select_folder("Sent")
        c.delete_messages(c.search(["HEADER", "Message-ID", f"<{by_api['id']}@localhost>"]))
        c.expunge()
    finally:
        c.logout()
    assert "sent messages: 0 placed" in intercept(line, config, "--imap", "--once").out
    assert len(folder_copies(dovecot, people["b"])) == 2


def test_killed_between_append_and_recording_leaves_one_copy(line, pen, people, dovecot, tmp_path):
    b = Api(pen, people["b"])
    sent = b.send([people["a"]], "Crash " + tag(), "Sent before the crash.",
                  attachments=[b.upload("c.bin", b"crash data")])
    config = imap_config(line, dovecot, people["b"])
    killed = intercept(line, config, "--imap", "--once", env={"PENMAIL_TEST_EXIT_AFTER_APPEND": "1"})
    assert killed.code == 99, killed.err
    assert list(folder_copies(dovecot, people["b"])) == [f"<{sent['id']}@localhost>"]  # appended, not recorded
    done = intercept(line, config, "--imap", "--once")
    assert done.code == 0, done.err
    assert "sent messages: 0 placed, 1 already there" in done.out and "Already in Sent: message" in done.out
    assert list(folder_copies(dovecot, people["b"])) == [f"<{sent['id']}@localhost>"]
    assert "sent messages: 0 placed, 0 already there" in intercept(line, config, "--imap", "--once").out

    # The same in a Maildir: the file is written, the record not; the next run finds the file.
    root = make_maildir(tmp_path / "Maildir")
    config = configure(line, people["b"], name="md")
    killed = line("intercept", "--maildir", str(root), who="icpt", config=config,
                  env={"PENMAIL_TEST_EXIT_AFTER_APPEND": "1"})
    assert killed.code == 99, killed.err
    done = line("intercept", "--maildir", str(root), who="icpt", config=config)
    assert done.code == 0 and "sent messages: 0 placed, 1 already there" in done.out, done.out + done.err
    [copy] = os.listdir(root / ".Sent" / "cur")
    assert copy.endswith(":2,S") and not os.listdir(root / ".Sent" / "new")
    assert not [n for n in os.listdir(root / ".Sent" / "tmp")]

    # Two runs at once (a mail program's hook beside a watch): the one that has the folder
    # places, the other leaves it to it and says so.
    later = b.send([people["a"]], "Meanwhile " + tag(), "Sent while another run works.")
    [lock] = [p for p in (line.tmp / "state-icpt" / "intercept").glob("*.lock")
              if json.loads(p.with_suffix(".jsonl").read_text().splitlines()[0])["destination"].startswith("maildir")]
    with open(lock, "rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        busy = line("intercept", "--maildir", str(root), who="icpt", config=config,
                    env={"PENMAIL_TEST_LOCK_SECONDS": "0.2"})
    assert busy.code == 0 and "is placing sent messages in .Sent; left to it" in busy.err, busy.out + busy.err
    assert len(os.listdir(root / ".Sent" / "cur")) == 1
    done = line("intercept", "--maildir", str(root), who="icpt", config=config)
    assert "sent messages: 1 placed" in done.out and later["id"] in done.out


@pytest.mark.timeout(120)
def test_watch_places_a_sent_message_within_five_seconds_and_catches_up(line, pen, people, dovecot):
    b = Api(pen, people["b"])
    config = imap_config(line, dovecot, people["b"])
    env = line.env("icpt", config, PASSWORD, None)

    def start() -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-m", "tui.cli", "intercept", "--imap", "--watch", "--json"],
                                env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert b"and the messages you send" in proc.stderr.readline()
        return proc

    proc = start()
    try:
        time.sleep(1.0)  # let the event stream open (a message sent before is found by its first listing anyway)
        began = time.monotonic()
        first = b.send([people["a"]], "Watched " + tag(), "Sent while watching.")
        placed = json.loads(proc.stdout.readline())
        took = time.monotonic() - began
        assert placed["event"] == "sent_placed" and placed["id"] == first["id"], placed
        assert took < 5, took
        assert list(folder_copies(dovecot, people["b"])) == [f"<{first['id']}@localhost>"]
    finally:
        proc.terminate()
        proc.wait(10)

    # Sent while nobody watched: placed when the watch starts again, and nothing twice.
    away = b.send([people["a"]], "While away " + tag(), "Sent while not watching.")
    proc = start()
    try:
        placed = json.loads(proc.stdout.readline())
        assert placed["event"] == "sent_placed" and placed["id"] == away["id"], placed
        burst = [b.send([people["a"]], f"Burst {i} " + tag(), "One of several.") for i in range(4)]
        got = [json.loads(proc.stdout.readline()) for _ in burst]
        assert sorted(g["id"] for g in got) == sorted(m["id"] for m in burst)
        assert {g["event"] for g in got} == {"sent_placed"}
    finally:
        proc.terminate()
        proc.wait(10)
    assert set(folder_copies(dovecot, people["b"])) == {f"<{m['id']}@localhost>" for m in [first, away, *burst]}


def test_a_sent_folder_found_by_special_use_and_one_named_in_the_settings(line, pen, people, tmp_path_factory):
    need_dovecot()
    server = Dovecot(tmp_path_factory.mktemp("dovecot-sent"), sent="Éléments envoyés").start()
    try:
        b = Api(pen, people["b"])
        sent = b.send([people["a"]], "Special " + tag(), "Into the folder marked \\Sent.")
        done = intercept(line, imap_config(line, server, people["b"]), "--imap", "--once")
        assert done.code == 0 and "Placed in Éléments envoyés:" in done.out, done.out + done.err
        assert list(folder_copies(server, people["b"], "Éléments envoyés")) == [f"<{sent['id']}@localhost>"]
        assert "Sent" not in folder_names(server, people["b"])  # found, not made

        c = server.client(people["b"])
        try:
            c.create_folder("Records.Outgoing")
        finally:
            c.logout()
        named = imap_config(line, server, people["b"], name="named", extra='sent_folder = "Records.Outgoing"\n')
        done = line("intercept", "--imap", "--once", who="named", config=named)
        assert done.code == 0 and "Placed in Records.Outgoing:" in done.out, done.out + done.err
        assert list(folder_copies(server, people["b"], "Records.Outgoing")) == [f"<{sent['id']}@localhost>"]

        missing = imap_config(line, server, people["b"], name="missing", extra='sent_folder = "Nowhere"\n')
        done = line("intercept", "--imap", "--once", "--json", who="missing", config=missing)
        assert done.code == 1 and "has no folder 'Nowhere'" in done.err and '"code":"imap_sent_folder"' in done.out
    finally:
        server.stop()


def test_sent_false_places_nothing_and_bad_settings_are_one_sentence(line, pen, people, dovecot, tmp_path):
    b = Api(pen, people["b"])
    b.send([people["a"]], "Not copied " + tag(), "Stays on the PEN only.")
    config = imap_config(line, dovecot, people["b"], extra="[intercept]\nsent = false\n")
    done = intercept(line, config, "--imap", "--once")
    assert done.code == 0, done.err
    assert done.out.strip() == "0 replaced, 0 already there, 0 left in place (not readable with your sign-in), " \
                               "0 failed."
    assert "Sent" not in folder_names(dovecot, people["b"])
    root = make_maildir(tmp_path / "Maildir")
    done = line("intercept", "--maildir", str(root), "--json", who="icpt", config=config)
    assert done.code == 0 and summary_of(done)["sent_placed"] == 0 and not (root / ".Sent").exists()

    for bad, word in (('sent = "yes"', "intercept.sent"), ("sent_since = -1", "intercept.sent_since"),
                      ("sent_maildir = 3", "intercept.sent_maildir")):
        wrong = configure(line, people["b"], name="wrong", extra=f"[intercept]\n{bad}\n")
        done = line("intercept", "--maildir", str(root), who="wrong", config=wrong)
        assert done.code == 2 and word in done.one_sentence(), done.err


def test_maildir_sent_copies_notmuch_finds_them_and_the_first_run_reaches_back_sent_since(
        line, pen, people, tmp_path):
    notmuch = need_notmuch()
    a, b = Api(pen, people["a"]), Api(pen, people["b"])
    word = "zebraquartz" + tag()
    question = a.send([people["b"]], "Notmuch question " + tag(), "Which day suits?")
    root = make_maildir(tmp_path / "Mail")
    (root / "new" / "1.n.host").write_bytes(notifications(pen, people["b"], [question])[0].replace(b"\r\n", b"\n"))
    data = os.urandom(12_000)
    answer = b.send([people["a"]], "Re: Notmuch question", f"Tuesday suits, {word} included.",
                    in_reply_to=question["id"], attachments=[b.upload("plan.bin", data)])
    config = configure(line, people["b"])
    done = line("intercept", "--maildir", str(root), who="icpt", config=config)
    assert done.code == 0, done.err
    assert "1 replaced" in done.out and "Placed in .Sent:" in done.out and "sent messages: 1 placed" in done.out
    [name] = os.listdir(root / ".Sent" / "cur")
    assert name.startswith("pen-") and name.endswith(":2,S")
    copy = email.message_from_bytes((root / ".Sent" / "cur" / name).read_bytes(), policy=email.policy.default)
    assert copy["Message-ID"] == f"<{answer['id']}@localhost>"
    assert copy["In-Reply-To"] == f"<{question['id']}@localhost>"
    assert attachments_of(copy) == {"plan.bin": sha(data)}
    assert (root / ".Sent" / "cur" / name).stat().st_mtime == pytest.approx(sent_at(answer).timestamp(), abs=1)
    again = line("intercept", "--maildir", str(root), who="icpt", config=config)
    assert "sent messages: 0 placed, 0 already there" in again.out and len(os.listdir(root / ".Sent" / "cur")) == 1

    # notmuch indexes the tree: the sent text is found in .Sent, threaded with the question.
    home = tmp_path / "notmuch-home"
    home.mkdir()
    (home / "config").write_text(f"[database]\npath={root}\n[user]\nname=Bob\nprimary_email={people['b']}\n"
                                 f"[new]\ntags=unread;inbox;\n[maildir]\nsynchronize_flags=true\n")
    env = {**os.environ, "NOTMUCH_CONFIG": str(home / "config"), "HOME": str(home)}
    subprocess.run([notmuch, "new", "--quiet"], env=env, check=True, capture_output=True, timeout=60)
    found = subprocess.run([notmuch, "search", "--format=json", "--output=files", f"folder:.Sent and {word}"],
                           env=env, check=True, capture_output=True, timeout=60)
    assert [Path(f).name for f in json.loads(found.stdout)] == [name]
    thread = subprocess.run([notmuch, "search", "--format=json", "--output=messages",
                             f"thread:{{id:{answer['id']}@localhost}}"], env=env, check=True, capture_output=True,
                            timeout=60)
    assert sorted(json.loads(thread.stdout)) == sorted([f"{answer['id']}@localhost", f"{question['id']}@localhost"])

    # Sent beside the inbox (mbsync's layout), and a first run that reaches back no day at all.
    inbox = make_maildir(tmp_path / "Mail2" / "INBOX")
    beside = tmp_path / "Mail2" / "Sent"
    config = configure(line, people["b"], name="beside",
                       extra=f'[intercept]\nsent_maildir = "{beside}"\nsent_since = 0\n')
    # A first run looks from a whole second before it began (lists give times in seconds), so the
    # answer is "sent before" only once two seconds have passed since it was sent.
    while time.time() < sent_at(answer).timestamp() + 2.05:
        time.sleep(0.05)
    done = line("intercept", "--maildir", str(inbox), who="beside", config=config)
    assert done.code == 0 and "sent messages: 0 placed" in done.out, done.out + done.err  # all sent before
    later = b.send([people["a"]], "After the first run " + tag(), "Placed.")
    done = line("intercept", "--maildir", str(inbox), who="beside", config=config)
    assert done.code == 0 and f"Placed in {beside}:" in done.out, done.out + done.err
    [name] = os.listdir(beside / "cur")
    copy = email.message_from_bytes((beside / "cur" / name).read_bytes(), policy=email.policy.default)
    assert copy["Message-ID"] == f"<{later['id']}@localhost>" and not (inbox / ".Sent").exists()


def test_the_record_survives_a_line_cut_short(tmp_path):
    from tui.intercept.sent import Record

    record = Record(tmp_path, "https://pen.example", "b@x.example", "maildir:/m")
    record.load(30)
    record.add("m1", datetime(2026, 1, 2, tzinfo=UTC))
    with open(record.path, "ab") as f:
        f.write(b'{"id": "m2", "a')  # the crash came in the middle of a line
    again = Record(tmp_path, "https://pen.example", "b@x.example", "maildir:/m")
    again.load(30)
    assert again.has("m1") and not again.has("m2") and record.path.read_bytes().endswith(b"\n")
    again.add("m3", datetime(2026, 1, 3, tzinfo=UTC))
    third = Record(tmp_path, "https://pen.example", "b@x.example", "maildir:/m")
    third.load(30)
    assert third.has("m1") and third.has("m3")
    assert third.bound() == datetime(2026, 1, 2, 23, tzinfo=UTC)  # an hour before the newest placed
