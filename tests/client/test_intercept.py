"""`penmail intercept`: the PEN's real notification e-mails (taken from the real SMTP sink)
put into a real IMAP server (Debian's Dovecot, started here in a temporary folder), a
Maildir, or standard input, become the real messages: read back over IMAP / from disk,
with attachments checked by sha256, the notifications gone, other mail untouched, a
notification the person cannot read left in place, a run killed between APPEND and
removal ending with one copy, --watch replacing a new notification within 5 s, and
hostile subjects and file names adding no header."""

from __future__ import annotations

import email
import email.policy
import hashlib
import mailbox
import os
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.client.test_export import TOP_HEADERS, Api, line, people  # noqa: F401 - fixtures used here too
from tests.client.test_line_mode import REPO, Line
from tests.conftest import PASSWORD
from tests.dovecot import HOW_TO_ENABLE, Dovecot, dovecot_binary
from tests.dovecot import PASSWORD as IMAP_PASSWORD

NOTICE_HEADERS = {"x-pen-message", "auto-submitted", "reply-to"}


def need_dovecot() -> None:
    """Skip without Dovecot, with one line saying how to enable; fail under CI."""
    if dovecot_binary() is None:
        if os.environ.get("PEN_REQUIRE_TOOLS") == "1":
            pytest.fail(f"{HOW_TO_ENABLE} (PEN_REQUIRE_TOOLS=1)")
        pytest.skip(HOW_TO_ENABLE)


@pytest.fixture(scope="module")
def dovecot(tmp_path_factory):
    need_dovecot()
    server = Dovecot(tmp_path_factory.mktemp("dovecot")).start()
    yield server
    server.stop()


def notifications(pen, rcpt: str, sent: list[dict]) -> list[bytes]:
    """The notification e-mails the SMTP sink got for `rcpt`, one per sent message, as sent."""
    subjects = {m["subject"] for m in sent}
    deadline = time.monotonic() + 30
    while True:
        found = [m for m in list(pen.smtp.received) if rcpt in m.rcpt_tos]
        if len(found) >= len(subjects) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert len(found) == len(sent), (len(found), len(sent))
    return [m.data for m in found]


def pen_url(pen) -> str:
    """The PEN as its notifications name it (its base_url: localhost, not 127.0.0.1)."""
    return f"https://localhost:{pen.process.port}"


def configure(line: Line, email_: str, extra: str = "", name: str = "icpt") -> Path:
    return line.config(name, email=email_, server=pen_url(line.pen), extra=extra)


def imap_config(line: Line, dovecot: Dovecot, email_: str, extra: str = "", name: str = "icpt") -> Path:
    return configure(line, email_, name=name, extra=(
        f'[imap]\nhost = "127.0.0.1"\nport = {dovecot.port}\nsecurity = "none"\nuser = "{email_}"\n'
        f'password_command = "{sys.executable} -c \\"print(\'{IMAP_PASSWORD}\')\\""\n' + extra))


def read_folder(dovecot: Dovecot, user: str, folder: str = "INBOX", *,
                dates: dict | None = None) -> list[tuple[email.message.EmailMessage, tuple]]:
    """(message, flags) of each message in the folder; ``dates`` gets Subject -> INTERNALDATE."""
    c = dovecot.client(user)
    try:
        c.select_folder(folder, readonly=True)
        uids = c.search(["ALL"])
        got = c.fetch(uids, ["BODY.PEEK[]", "FLAGS", "INTERNALDATE"]) if uids else {}
        found = [(email.message_from_bytes(got[u][b"BODY[]"], policy=email.policy.default),
                  tuple(got[u][b"FLAGS"])) for u in sorted(got)]
        if dates is not None:
            dates.update({m["Subject"]: got[u][b"INTERNALDATE"] for (m, _), u in zip(found, sorted(got))})
        return found
    finally:
        c.logout()


def put(dovecot: Dovecot, user: str, raws: list[bytes], flags=(), when=None) -> None:
    c = dovecot.client(user)
    try:
        for raw in raws:
            c.append("INBOX", raw, flags=flags, msg_time=when)
    finally:
        c.logout()


def run_intercept(line: Line, config: Path, *args: str, env: dict | None = None):
    return line("intercept", *args, who="icpt", config=config, env=env)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_once_replaces_notifications_with_the_real_messages(line, pen, people, dovecot):
    a, b, c = (Api(pen, people[k]) for k in "abc")
    files = {"scan.pdf": os.urandom(300_000), "notes.txt": b"plain notes\n" * 50}
    ids = [a.upload(n, d) for n, d in files.items()]
    sent = [a.send([people["b"]], "With files " + uuid.uuid4().hex[:6], "See the files.", attachments=ids),
            a.send([people["b"]], "Plain " + uuid.uuid4().hex[:6], "Just text.\nTwo lines.")]
    raws = notifications(pen, people["b"], sent)
    # Someone else's notification, forwarded into b's mailbox: b cannot read it on the PEN.
    foreign = c.send([people["a"]], "Not for b " + uuid.uuid4().hex[:6])
    foreign_raw = notifications(pen, people["a"], [foreign])[0]
    other = b"From: x@example.org\r\nTo: b@example.org\r\nSubject: ordinary mail\r\nMessage-ID: <o1@x>\r\n\r\nHi.\r\n"
    arrived = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)  # the notification's arrival (INTERNALDATE)
    put(dovecot, people["b"], raws[:1], flags=(b"\\Seen", b"\\Flagged"), when=arrived)
    put(dovecot, people["b"], raws[1:] + [foreign_raw, other])

    config = imap_config(line, dovecot, people["b"])
    done = run_intercept(line, config, "--imap", "--once")
    assert done.code == 0, done.err
    assert "2 replaced, 0 already there, 1 left in place" in done.out
    assert done.out.count("Replaced in INBOX") == 2 and done.out.count("Left in place") == 1

    dates: dict = {}
    inbox = read_folder(dovecot, people["b"], dates=dates)
    by_subject = {m["Subject"]: (m, f) for m, f in inbox}
    assert dates[sent[0]["subject"]].astimezone(UTC) == arrived
    assert set(by_subject) == {sent[0]["subject"], sent[1]["subject"], foreign["subject"], "ordinary mail"}
    host = "localhost"
    for s in sent:
        msg, flags = by_subject[s["subject"]]
        assert msg["Message-ID"] == f"<{s['id']}@{host}>"
        assert msg["X-PEN-Message"] is None and msg["X-PEN-Message-Id"] == s["id"]
        assert [x.addr_spec for x in msg["From"].addresses] == [people["a"]]
    first, flags = by_subject[sent[0]["subject"]]
    assert {b"\\Seen", b"\\Flagged"} <= set(flags)
    assert b"\\Seen" not in by_subject[sent[1]["subject"]][1]
    got = {p.get_filename(): sha(p.get_payload(decode=True)) for p in first.iter_attachments()}
    assert got == {n: sha(d) for n, d in files.items()}
    assert "Two lines." in by_subject[sent[1]["subject"]][0].get_body(("plain",)).get_content()
    # The notification's date, not the time of the run.
    notice = email.message_from_bytes(raws[0], policy=email.policy.default)
    assert first["Date"].datetime == notice["Date"].datetime
    # The forged/foreign one stays as it came; the ordinary mail is untouched.
    assert by_subject[foreign["subject"]][0]["X-PEN-Message"] is not None
    assert by_subject["ordinary mail"][0]["Message-ID"] == "<o1@x>"
    trash = read_folder(dovecot, people["b"], "Trash")
    assert sorted(m["Subject"] for m, _ in trash) == sorted(s["subject"] for s in sent)

    again = run_intercept(line, config, "--imap", "--once", "--json")
    assert again.code == 0 and '"summary":{"replaced":0,"already":0,"left":1,"failed":0,' in again.out
    assert len(read_folder(dovecot, people["b"])) == 4


def test_a_folder_with_a_non_ascii_name_and_notification_delete(line, pen, people, dovecot):
    a = Api(pen, people["a"])
    sent = [a.send([people["b"]], "Ailleurs " + uuid.uuid4().hex[:6], "Dans un autre dossier.")]
    c = dovecot.client(people["b"])
    try:
        c.create_folder("Reçus été")
        c.append("Reçus été", notifications(pen, people["b"], sent)[0])
    finally:
        c.logout()
    config = imap_config(line, dovecot, people["b"],
                         extra='folders = ["INBOX", "Reçus été"]\nnotification = "delete"\n')
    done = run_intercept(line, config, "--imap", "--once")
    assert done.code == 0 and "Replaced in Reçus été" in done.out, done.out + done.err
    [(msg, _)] = read_folder(dovecot, people["b"], "Reçus été")
    assert msg["Message-ID"] == f"<{sent[0]['id']}@localhost>"
    assert read_folder(dovecot, people["b"], "Trash") == []


def test_killed_between_append_and_removal_ends_with_one_copy(line, pen, people, dovecot):
    a = Api(pen, people["a"])
    sent = [a.send([people["b"]], "Crash " + uuid.uuid4().hex[:6], "Body.")]
    put(dovecot, people["b"], notifications(pen, people["b"], sent))
    config = imap_config(line, dovecot, people["b"])
    killed = run_intercept(line, config, "--imap", "--once", env={"PENMAIL_TEST_EXIT_AFTER_APPEND": "1"})
    assert killed.code == 99
    both = [m["Subject"] for m, _ in read_folder(dovecot, people["b"])]
    assert both == [sent[0]["subject"]] * 2  # the real message was appended, the notification is still there
    done = run_intercept(line, config, "--imap", "--once")
    assert done.code == 0, done.err
    assert "0 replaced, 1 already there" in done.out
    inbox = read_folder(dovecot, people["b"])
    assert len(inbox) == 1 and inbox[0][0]["Message-ID"] == f"<{sent[0]['id']}@localhost>"
    assert inbox[0][0]["X-PEN-Message"] is None


def test_a_forged_copy_with_the_real_message_id_does_not_stop_the_replacement(line, pen, people, dovecot):
    a = Api(pen, people["a"])
    sent = [a.send([people["b"]], "Forge " + uuid.uuid4().hex[:6], "The real text.")]
    forged = (f"From: x@evil.example\r\nSubject: fake\r\nMessage-ID: <{sent[0]['id']}@localhost>\r\n\r\n"
              f"Fake text.\r\n").encode()
    put(dovecot, people["b"], [forged] + notifications(pen, people["b"], sent))
    done = run_intercept(line, imap_config(line, dovecot, people["b"]), "--imap", "--once")
    assert done.code == 0 and "1 replaced" in done.out, done.out + done.err
    subjects = sorted(m["Subject"] for m, _ in read_folder(dovecot, people["b"]))
    assert subjects == sorted(["fake", sent[0]["subject"]])


@pytest.mark.timeout(120)
def test_watch_replaces_a_new_notification_within_five_seconds(line, pen, people, dovecot):
    a = Api(pen, people["a"])
    config = imap_config(line, dovecot, people["b"])
    env = line.env("icpt", config, PASSWORD, None)
    proc = subprocess.Popen([sys.executable, "-m", "tui.cli", "intercept", "--imap", "--watch", "--json"],
                            env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert b"Watching INBOX" in proc.stderr.readline()
        sent = [a.send([people["b"]], "Watched " + uuid.uuid4().hex[:6], "Arrives while watching.")]
        raw = notifications(pen, people["b"], sent)
        time.sleep(0.5)  # let the IDLE begin (a notification before it is found by the first sweep anyway)
        start = time.monotonic()
        put(dovecot, people["b"], raw)
        line_out = proc.stdout.readline()
        took = time.monotonic() - start
        assert b'"event":"replaced"' in line_out, line_out
        assert took < 5, took
        inbox = read_folder(dovecot, people["b"])
        assert [m["Message-ID"] for m, _ in inbox] == [f"<{sent[0]['id']}@localhost>"]
        # A burst, each arriving while the one before is being replaced: the news that the
        # server reports with the answers to a sweep's own commands is not lost.
        burst = [a.send([people["b"]], f"Burst {i} " + uuid.uuid4().hex[:6], "More.") for i in range(8)]
        for raw in notifications(pen, people["b"], sent + burst)[1:]:
            put(dovecot, people["b"], [raw])
            time.sleep(0.05)
        done = [proc.stdout.readline() for _ in burst]
        assert all(b'"event":"replaced"' in d for d in done), done
        inbox = read_folder(dovecot, people["b"])
        assert sorted(m["Subject"] for m, _ in inbox) == sorted(m["subject"] for m in sent + burst)
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.mark.timeout(120)
def test_watch_reconnects_after_the_imap_server_restarts(line, pen, people, tmp_path_factory):
    need_dovecot()
    server = Dovecot(tmp_path_factory.mktemp("dovecot-restart")).start()
    proc = None
    try:
        a = Api(pen, people["a"])
        config = imap_config(line, server, people["b"])
        proc = subprocess.Popen([sys.executable, "-m", "tui.cli", "intercept", "--imap", "--watch", "--json"],
                                env=line.env("icpt", config, PASSWORD, None), cwd=REPO, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        assert b"Watching INBOX" in proc.stderr.readline()
        server._stop()
        assert b"trying again in 1 s" in proc.stderr.readline()
        server.start()
        sent = [a.send([people["b"]], "After restart " + uuid.uuid4().hex[:6], "Still here.")]
        put(server, people["b"], notifications(pen, people["b"], sent))
        assert b'"event":"replaced"' in proc.stdout.readline()
        assert [m["Subject"] for m, _ in read_folder(server, people["b"])] == [sent[0]["subject"]]
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(10)
        server.stop()


def test_hostile_subjects_and_file_names_add_no_header(line, pen, people, dovecot, hostile):
    a = Api(pen, people["a"])
    subjects = [v[:998] for k, v in hostile["text"].items() if not k.startswith("_")][:12]
    names = [n for n in hostile["filenames"] if n][:12]
    sent = []
    for i, subject in enumerate(subjects):
        upload = a.upload(names[i % len(names)], f"file {i}".encode())
        r = a.c.post("/messages", json={"to": [{"email": people["b"], "name": subject[:200]}], "subject": subject,
                                        "body_text": subject, "attachments": [upload]},
                     headers={"Idempotency-Key": uuid.uuid4().hex})
        if r.status_code == 201:
            sent.append(r.json())
    assert len(sent) >= 6
    put(dovecot, people["b"], notifications(pen, people["b"], sent))
    done = run_intercept(line, imap_config(line, dovecot, people["b"]), "--imap", "--once", "--json")
    assert done.code == 0, done.err
    inbox = read_folder(dovecot, people["b"])
    assert len(inbox) == len(sent)
    for msg, _ in inbox:
        heads = [k.lower() for k in msg.keys()]
        assert set(heads) <= TOP_HEADERS and len(heads) == len(set(heads)), heads
        for part in msg.walk():
            assert {k.lower() for k in part.keys()} <= TOP_HEADERS | {"content-disposition"}
        assert len(list(msg.iter_attachments())) == 1


def test_attachments_past_the_limit_stay_on_the_pen_named_and_linked(line, pen, people, dovecot):
    a = Api(pen, people["a"])
    files = {"big.bin": os.urandom(40_000), "small.txt": b"small", "mid1.bin": os.urandom(8000),
             "mid2.bin": os.urandom(8000)}
    sent = [a.send([people["b"]], "Big " + uuid.uuid4().hex[:6], "Text.",
                   attachments=[a.upload(n, d) for n, d in files.items()])]
    put(dovecot, people["b"], notifications(pen, people["b"], sent))
    config = imap_config(line, dovecot, people["b"], extra="[intercept]\nattachment_limit_mib = 0.01\n")
    done = run_intercept(line, config, "--imap", "--once")
    assert done.code == 0 and "2 attachments, 2 left on the PEN" in done.out, done.out + done.err
    [(msg, _)] = read_folder(dovecot, people["b"])
    # Within the limit (10 KiB) one by one and in total; the others are named and linked.
    assert {p.get_filename(): sha(p.get_payload(decode=True)) for p in msg.iter_attachments()} == \
        {n: sha(files[n]) for n in ("small.txt", "mid1.bin")}
    text = msg.get_body(("plain",)).get_content()
    assert "big.bin (39.1 KiB)" in text and "mid2.bin (7.8 KiB)" in text and f"{pen_url(pen)}/m/{sent[0]['id']}" in text


def test_imap_password_from_the_keyring_and_a_refused_one(line, pen, people, dovecot, tmp_path):
    import json

    keys = tmp_path / "keyring.json"
    keys.write_text(json.dumps({f"penmail-imap {people['b']}@127.0.0.1": IMAP_PASSWORD}))
    config = configure(line, people["b"], extra=(
        f'[imap]\nhost = "127.0.0.1"\nport = {dovecot.port}\nsecurity = "none"\nuser = "{people["b"]}"\n'))
    done = line("intercept", "--imap", "--once", who="icpt", config=config, keyring_file=keys)
    assert done.code == 0 and "0 replaced" in done.out, done.err
    keys.write_text(json.dumps({f"penmail-imap {people['b']}@127.0.0.1": "wrong"}))
    refused = line("intercept", "--imap", "--once", "--json", who="icpt", config=config, keyring_file=keys)
    assert refused.code == 3 and "refused the user name or password" in refused.err
    assert '"code":"imap_login"' in refused.out
    nothing = line("intercept", "--imap", "--once", who="icpt", config=config)
    assert nothing.code == 3 and "No IMAP password" in nothing.err


def test_settings_refuse_plain_imap_to_another_host(line, people):
    config = line.config("icpt", email=people["b"], extra=(
        '[imap]\nhost = "imap.example.org"\nsecurity = "none"\nuser = "b"\n'))
    done = line("intercept", "--imap", "--once", who="icpt", config=config)
    assert done.code == 2 and "in the clear" in done.err


def make_maildir(root: Path) -> Path:
    for sub in ("tmp", "new", "cur"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    return root


def test_maildir_replaces_in_place_keeping_flags_and_survives_a_kill(line, pen, people, tmp_path):
    a = Api(pen, people["a"])
    data = os.urandom(5000)
    sent = [a.send([people["b"]], "MD1 " + uuid.uuid4().hex[:6], "One.", attachments=[a.upload("d.bin", data)]),
            a.send([people["b"]], "MD2 " + uuid.uuid4().hex[:6], "Two.")]
    raws = notifications(pen, people["b"], sent)
    root = make_maildir(tmp_path / "Mail")
    (root / "cur" / "1.n1.host:2,FS").write_bytes(raws[0].replace(b"\r\n", b"\n"))
    (root / "new" / "2.n2.host").write_bytes(raws[1].replace(b"\r\n", b"\n"))
    (root / "new" / "3.o.host").write_bytes(b"Subject: other\n\nHello.\n")
    config = configure(line, people["b"])
    killed = line("intercept", "--maildir", str(root), who="icpt", config=config,
                  env={"PENMAIL_TEST_EXIT_AFTER_APPEND": "1"})
    assert killed.code == 99
    done = line("intercept", "--maildir", str(root), who="icpt", config=config)
    assert done.code == 0, done.err
    assert "1 replaced, 1 already there" in done.out
    box = mailbox.Maildir(str(root), factory=None, create=False)
    found = {}
    for key in box.keys():
        entry = box.get_message(key)
        parsed = email.message_from_bytes(box.get_bytes(key), policy=email.policy.default)
        found[parsed["Subject"]] = (entry, parsed)
    assert set(found) == {sent[0]["subject"], sent[1]["subject"], "other"}
    one, two = found[sent[0]["subject"]], found[sent[1]["subject"]]
    assert one[0].get_subdir() == "cur" and one[0].get_flags() == "FS"
    assert two[0].get_subdir() == "new" and two[0].get_flags() == ""
    assert [sha(p.get_payload(decode=True)) for p in one[1].iter_attachments()] == [sha(data)]
    assert all(p["X-PEN-Message"] is None for _, p in (one, two))
    assert not any((root / "tmp").iterdir())


def test_stdin_replaces_a_notification_and_passes_other_mail_unchanged(line, pen, people):
    a = Api(pen, people["a"])
    sent = [a.send([people["b"]], "Piped " + uuid.uuid4().hex[:6], "Through a pipe.")]
    raw = notifications(pen, people["b"], sent)[0]
    config = configure(line, people["b"])
    env = line.env("icpt", config, PASSWORD, None)

    def pipe(data: bytes) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "tui.cli", "intercept", "--stdin"], input=data,
                              capture_output=True, env=env, cwd=REPO, timeout=60)

    done = pipe(raw)
    assert done.returncode == 0, done.stderr
    real = email.message_from_bytes(done.stdout, policy=email.policy.default)
    assert real["Message-ID"] == f"<{sent[0]['id']}@localhost>" and real["X-PEN-Message"] is None
    assert b"\r\n" in done.stdout  # CR LF in, CR LF out
    assert b"Replaced in stdin" in done.stderr
    other = b"Subject: not a notification\n\n" + os.urandom(600_000).hex().encode()
    passed = pipe(other)
    assert passed.returncode == 0 and passed.stdout == other and passed.stderr == b""
    # Someone else's notification: written out unchanged, and said so.
    c = Api(pen, people["c"])
    foreign = notifications(pen, people["a"], [c.send([people["a"]], "Else " + uuid.uuid4().hex[:6])])[0]
    left = pipe(foreign)
    assert left.returncode == 0 and left.stdout == foreign and b"Left in place" in left.stderr
    # Not set up, or a settings file that cannot be read: the mail goes through unchanged.
    for text in ("", "server = 12\n"):
        config.write_text(text)
        broken = subprocess.run([sys.executable, "-m", "tui.cli", "intercept", "--stdin", "--json"], input=raw,
                                capture_output=True, env=env, cwd=REPO, timeout=60)
        assert broken.stdout == raw and broken.returncode in (2, 3), broken.stderr
        assert b'"error"' in broken.stderr and b"Traceback" not in broken.stderr


def test_writing_a_message_with_a_large_attachment_holds_no_parsed_copy_of_it():
    """serialize() checks the written headers by parsing the message again; it parses a
    skeleton (header blocks and boundaries), not a second copy of every attachment (that
    took 13 times the attachment's size; now about 4)."""
    import tracemalloc
    from datetime import datetime

    from tui.export import build_email, serialize
    from tui.pen_client import Address, Attachment, Message

    data = os.urandom(8 << 20)
    message = Message(id="m1", thread_id="t1", folder="inbox", sender=Address("a@b.example", "A"),
                      to=(Address("c@d.example"),), cc=(), subject="s", sent_at=datetime.now(UTC),
                      unread=True, attachment_count=1, size=1, snippet="", body_text="Text.", body_html="<p>T</p>")
    built = build_email(message, [(Attachment("a1", "f.bin", "application/octet-stream", len(data), ""), data)],
                        host="x.example")
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        written = serialize(built)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak - before < 6 * len(data), (peak - before) / len(data)
    parsed = email.message_from_bytes(written, policy=email.policy.default)
    assert [p.get_payload(decode=True) for p in parsed.iter_attachments()] == [data]


def test_tls_and_starttls_with_the_servers_ca_and_a_refused_certificate(line, pen, people, tmp_path_factory):
    need_dovecot()
    server = Dovecot(tmp_path_factory.mktemp("dovecot-tls"), tls=True).start()
    try:
        a = Api(pen, people["a"])
        sent = [a.send([people["b"]], "Over TLS " + uuid.uuid4().hex[:6], "Encrypted on the way.")]
        put(server, people["b"], notifications(pen, people["b"], sent))
        base = f'[imap]\nhost = "127.0.0.1"\nuser = "{people["b"]}"\npassword_command = "echo {IMAP_PASSWORD}"\n'
        tls = configure(line, people["b"], name="tls", extra=(
            base + f'security = "tls"\nport = {server.tls_port}\nca_file = "{server.ca_file}"\n'))
        done = line("intercept", "--imap", "--once", who="tls", config=tls)
        assert done.code == 0 and "1 replaced" in done.out, done.out + done.err
        starttls = configure(line, people["b"], name="starttls", extra=(
            base + f'security = "starttls"\nport = {server.port}\nca_file = "{server.ca_file}"\n'))
        done = line("intercept", "--imap", "--once", who="starttls", config=starttls)
        assert done.code == 0 and "0 replaced" in done.out, done.out + done.err
        untrusted = configure(line, people["b"], name="untrusted", extra=(
            base + f'security = "tls"\nport = {server.tls_port}\n'))
        done = line("intercept", "--imap", "--once", who="untrusted", config=untrusted)
        assert done.code == 1 and "could not be reached securely" in done.err, done.err
        assert [m["Subject"] for m, _ in read_folder(server, people["b"])] == [sent[0]["subject"]]
    finally:
        server.stop()
