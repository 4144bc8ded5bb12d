"""`pen-server backup`, `backup --verify` and `restore`, against the real server over TLS: a
backup taken while another client sends messages with attachments and marks them read,
restored into a new folder and started on the old port, answers as the old PEN did, signs in
with the old passwords and tokens, and delivers what was waiting once; a backup killed half-way
is never taken for a whole one; a flipped byte is found and named; restore takes only an empty
folder, with the server's modes, and migrates an older schema forward."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import tarfile
import threading
import time
import uuid
from pathlib import Path

import pytest

from pen_devstack import PenProcess, SmtpSink, add_user, cli_in_process, free_port, run_cli
from tests.conftest import PASSWORD, TEARDOWN_STOP_SECONDS, USERS, Pen, make_pen
from tests.server.test_migrate_to import _answers, _until

GUEST = "guest@outside.example"
DAN = "dan@abc.example"  # the busy sender of the first test, who writes to the admin


def _process(*args: str) -> subprocess.CompletedProcess:
    """`pen-server ...` as its own process, as an administrator (or cron) runs it."""
    return subprocess.run([sys.executable, "-m", "pen_server", *args], capture_output=True, text=True, timeout=300)


def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """`pen-server ...` in this process (a loaded machine takes seconds to start Python),
    with its exit code and both outputs, under `env` added to the environment."""
    return cli_in_process(*args, env=env)


def _one_sentence(text: str) -> str:
    text = text.strip()
    assert text.startswith("pen-server: ") and "\n" not in text and "Traceback" not in text, text
    return text


def _upload(c, data: bytes, name: str = "file.bin") -> dict:
    r = c.post(f"/uploads?filename={name}", content=data, headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 201, r.text
    return r.json()


def _send(c, to: list[str], subject: str, **extra) -> dict:
    r = c.post("/messages", headers={"Idempotency-Key": uuid.uuid4().hex},
               json={"to": [{"email": USERS[t][0] if t in USERS else t} for t in to], "subject": subject,
                     "body_text": f"The body of {subject}.", **extra})
    assert r.status_code == 201, r.text
    return r.json()


def _modes(root: Path) -> list[str]:
    """Every folder and file under `root` that is not 0700 / 0600."""
    wrong = []
    for folder, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            mode = stat.S_IMODE((Path(folder) / name).lstat().st_mode)
            if mode != (0o700 if name in dirs else 0o600):
                wrong.append(f"{Path(folder, name).relative_to(root)} {oct(mode)}")
    if stat.S_IMODE(root.stat().st_mode) != 0o700:
        wrong.append(f". {oct(stat.S_IMODE(root.stat().st_mode))}")
    return wrong


def _folder_counts_agree(url: str) -> None:
    """The kept counts of each folder equal its rows: a copy torn between two writes of one
    transaction would not agree with itself."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            kept = {(u, f): t for u, f, t in conn.execute(text("SELECT user_id, folder, total FROM folder_counts"))}
            real = {(u, f): n for u, f, n in conn.execute(text(
                "SELECT user_id, folder, count(*) FROM mailbox_entries GROUP BY user_id, folder"))}
            assert {k: v for k, v in kept.items() if v} == real
            assert conn.execute(text("SELECT count(*) FROM messages m WHERE attachment_count != (SELECT count(*) "
                                     "FROM attachments a WHERE a.message_id = m.id)")).scalar() == 0
    finally:
        engine.dispose()


class _BusySender(threading.Thread):
    """Dan sends the admin message after message, each with a new attachment, and the admin
    marks each one read: two users' writes, one after the other, with each one's times."""

    def __init__(self, pen: Pen):
        super().__init__(daemon=True)
        self.pen, self.stop = pen, threading.Event()
        self.ops: list[tuple] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with self.pen.as_user(DAN) as dan, self.pen.as_user("admin") as admin:
                i = 0
                while not self.stop.is_set():
                    data = os.urandom(20_000 + i)
                    t0 = time.monotonic()
                    att = _upload(dan, data, f"busy-{i}.bin")
                    sent = _send(dan, ["admin"], f"Busy {i}", attachments=[att["id"]])
                    self.ops.append(("send", i, sent["id"], att["id"], hashlib.sha256(data).hexdigest(), t0,
                                     time.monotonic()))
                    t0 = time.monotonic()
                    r = admin.patch(f"/messages/{sent['id']}", json={"unread": False})
                    assert r.status_code == 200, r.text
                    self.ops.append(("read", i, sent["id"], None, None, t0, time.monotonic()))
                    i += 1
        except BaseException as exc:  # reported by the test
            self.error = exc


@pytest.mark.timeout(600)  # about 2 minutes on a loaded 2-core machine
def test_a_backup_of_a_busy_pen_restores_whole_and_delivers_what_waited_once(tmp_path, database):
    """On SQLite the backup is pen-server's own; on PostgreSQL it is --pg-dump's, restored
    into a new database with --database-url."""
    sink = SmtpSink().start()
    process = make_pen(tmp_path / "pen", sink, database_url=database())
    pg = ["--pg-dump"] if process.database_url.startswith("postgresql") else []
    add_user(process.data, DAN, "Dan Busy", PASSWORD, package="partners")
    run_cli("dkim", "init", "--data", str(process.data), "--domain", "abc.example", "--selector", "pen1")
    process.start()
    pen = Pen(process, sink)
    restored_sink = SmtpSink().start()
    restored: PenProcess | None = None
    try:
        # What was there before: an attachment, a guest who signed up and answered, a message
        # archived and read, notifications sent, and some the relay refused (waiting).
        data = os.urandom(300_000)
        with pen.as_user("ann") as c:
            att = _upload(c, data, "scan.pdf")
            first = _send(c, ["bob", GUEST], "Scan results", attachments=[att["id"]])
        with pen.as_user("bob") as c:
            _send(c, ["ann", "cat"], "Rota")
        mail = _until("the guest's notification", lambda: pen.mails_to(GUEST, "Scan results", timeout=0))
        _, invitation = Pen.link_token(mail[0])
        with pen.client() as c:
            r = c.post(f"/invitations/{invitation}/register", json={"display_name": "Gus", "password": PASSWORD})
            assert r.status_code == 201, r.text
        with pen.as_user(GUEST) as c:
            _send(c, ["ann"], "Re: Scan results", in_reply_to=first["id"])
        with pen.as_user("cat") as c:
            rota = c.get("/messages", params={"folder": "inbox"}).json()["items"][0]
            assert c.patch(f"/messages/{rota['id']}", json={"folder": "archive", "unread": False}).status_code == 200
        for rcpt, subject in (("bob@abc.example", "Scan results"), ("ann@abc.example", "Re: Scan results")):
            _until(f"the notification to {rcpt}", lambda r=rcpt, s=subject: pen.mails_to(r, s, timeout=0))
        sink.handler.reply = "451 try again later"  # from here on, notifications wait
        with pen.as_user("ann") as c:
            waiting = _send(c, ["bob", "cat", "someone@else.example"], "Waiting")
            _until("a refused delivery", lambda: all(
                n["attempts"] >= 1 for n in c.get(f"/messages/{waiting['id']}/notifications").json()["items"]))
        # Bulk, so that the backup takes a while: 8 attachments of 1 MB on a message.
        with pen.as_user("bob") as c:
            bulk = [_upload(c, os.urandom(1 << 20), f"bulk-{i}.bin")["id"] for i in range(8)]
            _send(c, ["cat"], "Bulk", attachments=bulk)
        logins = {who: pen.login(who) for who in ("ann", "bob", "cat", GUEST)}
        tokens = {who: t["access_token"] for who, t in logins.items()}
        downloads = [f"/messages/{first['id']}/attachments/{att['id']}"]
        _answers(pen, tokens, downloads)  # opening a message reads it: from here on the answers stay
        before = _answers(pen, tokens, downloads)
        assert before["bob", downloads[0]] == (200, data)
        with pen.as_user("admin") as c:
            packages_before = c.get("/admin/packages").json()
        users_before = run_cli("user", "list", "--data", str(process.data))

        busy = _BusySender(pen)
        busy.start()
        _until("the busy sender's first messages", lambda: len(busy.ops) >= 6 or busy.error)
        target = tmp_path / "backups" / "pen.tar.zst"
        backup_started = time.monotonic()
        done = _process("backup", "--data", str(process.data), "--to", str(target), *pg)
        backup_ended = time.monotonic()
        _until("a few more messages after the backup", lambda: busy.ops and busy.ops[-1][5] > backup_ended
               or busy.error)
        busy.stop.set()
        busy.join(60)
        assert busy.error is None, busy.error
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith(f"Backed up the PEN 'ABC Medical' to {target}: "), done.stdout
        assert done.stderr == ""
        assert stat.S_IMODE(target.stat().st_mode) == 0o600
        assert [p.name for p in target.parent.iterdir()] == ["pen.tar.zst"]  # nothing half-made beside it

        checked = _cli("backup", "--verify", str(target))
        assert checked.returncode == 0, checked.stderr
        assert checked.stdout.startswith(f"The backup {target} is whole: "), checked.stdout
        assert process.stop() == 0

        new = tmp_path / "restored"
        into = ["--database-url", database()] if pg else []
        out = run_cli("restore", str(target), "--data", str(new), *into)
        assert out.startswith(f"Restored the PEN into {new} at schema revision "), out
        assert "notifications waiting to go out" in out
        assert _modes(new) == []
        for rel in ([] if pg else ["pen-server.toml"]) + ["secret.key", "tls/ca.pem", "tls/ca.key", "tls/server.pem",
                    "tls/server.key", "dkim/abc.example/pen1.pem", "dkim/abc.example/current"]:
            assert (new / rel).read_bytes() == (process.data / rel).read_bytes(), rel
        assert not (new / "server.log").exists()  # logs stay behind
        restored = PenProcess(new, process.port, smtp_port=restored_sink.port, env=process.env)
        assert restored.database_url != process.database_url
        _folder_counts_agree(restored.database_url)
        assert not (new / "pen.pgdump").exists()
        if pg:  # a database that holds tables is refused, and left as it was
            with restored.sql() as conn:
                rows = conn.exec_driver_sql("SELECT count(*) FROM messages").scalar()
            refused = _cli("restore", str(target), "--data", str(tmp_path / "again"), "--database-url",
                         restored.database_url)
            assert refused.returncode == 1 and "already holds" in refused.stderr, refused.stderr
            assert not (tmp_path / "again").exists() or not any((tmp_path / "again").iterdir())
            with restored.sql() as conn:
                assert conn.exec_driver_sql("SELECT count(*) FROM messages").scalar() == rows > 0

        # What the restored outbox holds: each notification not yet sent goes out once, and
        # none that the old PEN had sent goes again.
        with restored.sql() as conn:
            outbox = dict(conn.exec_driver_sql("SELECT smtp_message_id, status FROM notifications").fetchall())
        due = {mid for mid, status in outbox.items() if status in ("queued", "deferred", "sending")}
        assert len(due) >= 3 and len(due) < len(outbox)

        restored.start()
        again = Pen(restored, restored_sink)
        now = _answers(again, tokens, downloads)  # the old access tokens
        # The same answers, but for the waiting notifications' delivery, which goes on.
        for answers in (now, before):
            for value in answers.values():
                for n in value.get("notifications", []) if isinstance(value, dict) else []:
                    del n["status"], n["attempts"], n["last_error"], n["updated_at"]
        assert now == before
        with again.client() as c:  # the old refresh tokens, and the old passwords
            for login in logins.values():
                assert c.post("/auth/refresh", json={"refresh_token": login["refresh_token"]}).status_code == 200
        for who in ("admin", "ann", "bob", "cat", GUEST, DAN):
            again.login(who)
        with again.as_user("admin") as c:
            assert c.get("/admin/packages").json() == packages_before
        assert run_cli("user", "list", "--data", str(new)) == users_before

        # The busy sender's writes: the backup holds a prefix of them (one moment's state),
        # with everything done before it started and nothing begun after it ended.
        with again.as_user("admin") as c:
            inbox = {m["subject"]: m for m in c.get("/messages", params={"folder": "inbox", "limit": 200,
                                                                         "q": "subject:Busy"}).json()["items"]}
            present = [op for op in busy.ops if op[0] == "send" and f"Busy {op[1]}" in inbox]
            read = [op for op in busy.ops
                    if op[0] == "read" and not inbox.get(f"Busy {op[1]}", {"unread": True})["unread"]]
            kept = present + read
            assert kept, "the backup holds none of the busy sender's messages"
            prefix = sorted(busy.ops, key=lambda op: op[5])[:len(kept)]
            assert sorted(kept, key=lambda op: op[5]) == prefix  # nothing after a missing write
            assert all(op in kept for op in busy.ops if op[6] < backup_started)
            assert not any(op in kept for op in busy.ops if op[5] > backup_ended)
            for _, i, message_id, att_id, sha, _, _ in present:
                r = c.get(f"/messages/{message_id}/attachments/{att_id}")
                assert r.status_code == 200 and hashlib.sha256(r.content).hexdigest() == sha, i

        # Delivery: each waiting notification once, none of those sent before.
        _until("the waiting notifications", lambda: {m.message["Message-ID"] for m in restored_sink.received} >= due,
               timeout=60)
        # Then until the restored outbox holds nothing that could still go out: a second
        # delivery of any of them would have reached the sink before this.
        def settled() -> bool:
            with restored.sql() as conn:
                return not conn.exec_driver_sql("SELECT count(*) FROM notifications WHERE status IN "
                                                "('queued', 'deferred', 'sending')").scalar()

        _until("the restored outbox to settle", settled, timeout=60)
        ids = [m.message["Message-ID"] for m in list(restored_sink.received)]
        assert sorted(ids) == sorted(due)
        for rcpt in ("bob@abc.example", "cat@abc.example", "someone@else.example"):
            assert len(again.mails_to(rcpt, "Waiting", timeout=0)) == 1
    finally:
        if restored is not None:
            restored.stop(5)
        process.stop(5)
        sink.stop()
        restored_sink.stop()


@pytest.fixture(scope="module")
def small_pen(tmp_path_factory):
    """A stopped PEN with a few messages and attachments, to back up again and again."""
    sink = SmtpSink().start()
    process = make_pen(tmp_path_factory.mktemp("small") / "pen", sink).start()
    pen = Pen(process, sink)
    with pen.as_user("ann") as c:
        for i in range(12):
            att = _upload(c, os.urandom(150_000 + i), f"part-{i}.bin")
            _send(c, ["bob"], f"Part {i}", attachments=[att["id"]])
    process.stop(TEARDOWN_STOP_SECONDS)
    sink.stop()
    return process


def _blob_rel(folder: Path) -> str:
    manifest = json.loads((folder / "manifest.json").read_text())
    return next(e["path"] for e in manifest["files"] if e["path"].startswith("blobs/"))


@pytest.mark.parametrize("form", ["folder", "tar.zst"])
def test_a_backup_killed_half_way_is_never_taken_for_whole(tmp_path, small_pen, form):
    target = tmp_path / ("pen" if form == "folder" else "pen.tar.zst")
    half = tmp_path / "half"
    # The backup, in a process of its own, stops after half the blobs and says so; then kill -9.
    script = f"""
import sys, time
from pathlib import Path
from pen_server import backup, cli
real = backup.backup
def halting(done, total):
    if done == total // 2:
        Path({str(half)!r}).write_text("half")
        time.sleep(600)
backup.backup = lambda settings, to, **options: real(settings, to, **dict(options, on_blob=halting))
sys.exit(cli.main(["backup", "--data", {str(small_pen.data)!r}, "--to", {str(target)!r}]))
"""
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        _until("half the blobs", lambda: half.exists() or child.poll() is not None)
        assert child.poll() is None, child.communicate()
        child.send_signal(signal.SIGKILL)
        child.wait()
    finally:
        child.kill()
    left = [p for p in tmp_path.iterdir() if p.name.startswith(f".{target.name}.partial-")]
    assert left and not target.exists()
    for path in (target, *left):
        verified = _cli("backup", "--verify", str(path))
        assert verified.returncode == 1, verified.stdout
        said = _one_sentence(verified.stderr)
        assert f"There is no backup at {target}." in said if path == target else "not a whole backup" in said
        refused = _cli("restore", str(path), "--data", str(tmp_path / "new"))
        assert refused.returncode == 1 and _one_sentence(refused.stderr) == said
        assert not (tmp_path / "new").exists()
        assert not [p for p in tmp_path.iterdir() if ".restore-" in p.name]
    # The next backup to the same name clears what the killed one left, and is whole.
    again = _cli("backup", "--data", str(small_pen.data), "--to", str(target))
    assert again.returncode == 0, again.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["half", target.name])
    assert _cli("backup", "--verify", str(target)).returncode == 0


def test_a_flipped_byte_fails_verify_and_restore_naming_the_file(tmp_path, small_pen):
    folder = tmp_path / "folder"
    run_cli("backup", "--data", str(small_pen.data), "--to", str(folder))
    assert _modes(folder) == []
    rel = _blob_rel(folder)
    blob = folder / rel
    raw = bytearray(blob.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    blob.write_bytes(bytes(raw))
    verified = _cli("backup", "--verify", str(folder))
    assert verified.returncode == 1
    said = _one_sentence(verified.stderr)
    assert said.startswith(f"pen-server: {rel} in the backup {folder} has the sha256 "), said
    assert said.endswith("its manifest lists: the file was changed or damaged.")
    refused = _cli("restore", str(folder), "--data", str(tmp_path / "new"))
    assert refused.returncode == 1 and _one_sentence(refused.stderr) == said
    assert not (tmp_path / "new").exists()

    # The same in a tar archive: the byte flipped inside the blob's member.
    archive = tmp_path / "pen.tar"
    run_cli("backup", "--data", str(small_pen.data), "--to", str(archive))
    with tarfile.open(archive) as tar:
        member = tar.getmember(rel)
    with open(archive, "r+b") as f:
        f.seek(member.offset_data + 7)
        byte = f.read(1)
        f.seek(member.offset_data + 7)
        f.write(bytes([byte[0] ^ 0x80]))
    verified = _cli("backup", "--verify", str(archive))
    assert verified.returncode == 1
    assert _one_sentence(verified.stderr).startswith(f"pen-server: {rel} in the backup {archive} has the sha256 ")

    # A blob taken out, and a manifest changed, are named too.
    other = tmp_path / "other"
    run_cli("backup", "--data", str(small_pen.data), "--to", str(other))
    (other / rel).unlink()
    said = _one_sentence(_cli("backup", "--verify", str(other)).stderr)
    assert said == f"pen-server: {rel} is missing from the backup {other}, which its manifest lists."
    manifest = other / "manifest.json"
    manifest.write_text(manifest.read_text().replace('"pen": "ABC Medical"', '"pen": "ABC Medicals"'))
    said = _one_sentence(_cli("backup", "--verify", str(other)).stderr)
    assert said == f"pen-server: The manifest of {other} does not match its own checksum: it was changed or damaged."


def test_restore_takes_only_an_empty_folder_and_backup_never_overwrites(tmp_path, small_pen):
    archive = tmp_path / "pen.tar"
    run_cli("backup", "--data", str(small_pen.data), "--to", str(archive))
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    refused = _cli("restore", str(archive), "--data", str(busy))
    assert refused.returncode == 1
    assert _one_sentence(refused.stderr) == (f"pen-server: {busy} holds files already; restore into a new or empty "
                                             f"folder (nothing was written).")
    assert [p.name for p in busy.iterdir()] == ["notes.txt"]
    assert not [p for p in tmp_path.iterdir() if ".restore-" in p.name]
    # An empty folder is fine, and ends up 0700 whatever it was.
    empty = tmp_path / "empty"
    empty.mkdir(mode=0o755)
    os.chmod(empty, 0o755)
    run_cli("restore", str(archive), "--data", str(empty))
    assert _modes(empty) == []
    # A backup is never written over another, nor inside the data folder.
    again = _cli("backup", "--data", str(small_pen.data), "--to", str(archive))
    assert again.returncode == 1
    assert _one_sentence(again.stderr) == (f"pen-server: There is already something at {archive}; give a new name "
                                           f"(a backup never replaces another).")
    inside = _cli("backup", "--data", str(small_pen.data), "--to", str(small_pen.data / "backups" / "b.tar"))
    assert inside.returncode == 1 and "cannot go inside the data folder" in _one_sentence(inside.stderr)
    usage = _cli("backup", "--data", str(small_pen.data))
    assert usage.returncode == 1 and "--to PATH" in _one_sentence(usage.stderr)


def test_a_backup_of_an_older_schema_is_migrated_forward_and_starts(tmp_path, small_pen, smtp):
    from alembic import command
    from alembic.config import Config

    from pen_server.backup import _revisions
    from pen_server.db import MIGRATIONS

    old = tmp_path / "old"
    run_cli("restore", str(_backup_of(small_pen, tmp_path / "b")), "--data", str(old))
    known, head = _revisions()
    previous = known[-2]
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", f"sqlite:///{old / 'pen.db'}")
    cfg.attributes["configure_logger"] = False
    command.downgrade(cfg, previous)
    archive = tmp_path / "old.tar.zst"
    run_cli("backup", "--data", str(old), "--to", str(archive))
    assert f"schema revision {previous}" in run_cli("backup", "--verify", str(archive))
    new = tmp_path / "new"
    out = run_cli("restore", str(archive), "--data", str(new))
    assert f"at schema revision {head}, migrated from schema revision {previous};" in out, out
    process = PenProcess(new, free_port(), smtp_port=smtp.port, env=small_pen.env).start()
    try:
        pen = Pen(process, smtp)
        with pen.as_user("bob") as c:
            items = c.get("/messages", params={"folder": "inbox", "limit": 50}).json()["items"]
            assert sorted(m["subject"] for m in items) == sorted(f"Part {i}" for i in range(12))
    finally:
        process.stop(5)


def _backup_of(process: PenProcess, to: Path) -> Path:
    run_cli("backup", "--data", str(process.data), "--to", str(to))
    return to


def test_backup_refuses_postgresql_and_the_bucket_pointing_to_the_docs(tmp_path, small_pen):
    pg_env = {"PEN_DATABASE_URL": "postgresql+psycopg://pen@127.0.0.1:1/pen"}
    pg = _cli("backup", "--data", str(small_pen.data), "--to", str(tmp_path / "b"), env=pg_env)
    assert pg.returncode == 1
    said = _one_sentence(pg.stderr)
    assert said == ("pen-server: This PEN's database is PostgreSQL, which pen-server backup copies only through "
                    "pg_dump: add --pg-dump, or back it up with pgBackRest as docs/operating.md, \"Backups\" "
                    "describes.")
    bucket_env = {"PEN_STORAGE_URL": "s3://pen-attachments/abc", "PEN_STORAGE_ENDPOINT": "http://127.0.0.1:1"}
    bucket = _cli("backup", "--data", str(small_pen.data), "--to", str(tmp_path / "b"), env=bucket_env)
    assert bucket.returncode == 1
    said = _one_sentence(bucket.stderr)
    assert "s3://pen-attachments/abc" in said and "rclone sync" in said and 'docs/operating.md, "Backups"' in said
    assert "--without-blobs" in said
    for args, says in ((["--pg-dump"], "--pg-dump is for a PEN on PostgreSQL"),
                       (["--without-blobs"], "--without-blobs is for a PEN whose attachments are in a bucket")):
        refused = _cli("backup", "--data", str(small_pen.data), "--to", str(tmp_path / "b"), *args)
        assert refused.returncode == 1 and _one_sentence(refused.stderr).startswith(f"pen-server: {says}")
    assert not list(tmp_path.iterdir())
    docs = (Path(__file__).parents[2] / "docs" / "operating.md").read_text()
    assert docs.count("\n## Backups\n") == 1
    for tool in ("pg_dump", "pgBackRest", "rclone sync", "versioning", "--without-blobs", "--pg-dump"):
        assert tool in docs, tool

    # With the bucket, --without-blobs takes the rest; --verify and restore say where the blobs are.
    rest = tmp_path / "rest.tar"
    made = _cli("backup", "--data", str(small_pen.data), "--to", str(rest), "--without-blobs", env=bucket_env)
    assert made.returncode == 0, made.stderr
    assert " 0 of them attachment blobs" in made.stdout
    with tarfile.open(rest) as tar:
        assert not [n for n in tar.getnames() if n.startswith("blobs/")]
    checked = _cli("backup", "--verify", str(rest))
    assert checked.returncode == 0, checked.stderr
    assert checked.stderr == ("pen-server: note: the attachment blobs are not in this backup but in the bucket "
                              "s3://pen-attachments/abc, kept with its own tools.\n")


def test_blobs_that_move_while_the_backup_runs(tmp_path, small_pen, monkeypatch):
    """The clean-up removes an upload no message took after the database was copied: the
    backup drops its rows too. A blob whose row committed but whose file is not in place yet
    is waited for. A blob missing from the PEN itself is said, and the backup still whole."""
    from pen_server import backup
    from pen_server.app import remove_stale_uploads
    from pen_server.db import Database
    from pen_server.settings import load_settings
    from pen_server.storage import LocalBlobStore

    data = tmp_path / "pen"
    run_cli("restore", str(_backup_of(small_pen, tmp_path / "b")), "--data", str(data))
    settings = load_settings(data)
    db = sqlite3.connect(data / "pen.db")
    contents = {hashlib.sha256(b).hexdigest(): b for b in (b"an old upload", b"a late one")}
    stale, late = contents
    for sha, content in contents.items():
        (data / "blobs" / sha[:2] / sha[2:4]).mkdir(parents=True, exist_ok=True)
        (data / "blobs" / sha[:2] / sha[2:4] / sha).write_bytes(content)
        db.execute("INSERT INTO blobs (sha256, size, created_at) VALUES (?, ?, '2020-01-01 00:00:00')",
                   (sha, len(content)))
    owner, message_id = db.execute("SELECT sender_id, id FROM messages LIMIT 1").fetchone()
    db.execute("INSERT INTO attachments (id, owner_id, message_id, position, filename, content_type, size, sha256, "
               "created_at) VALUES ('stale', ?, NULL, 0, 'old.bin', 'x/y', 75, ?, '2020-01-01 00:00:00')",
               (owner, stale))
    db.execute("INSERT INTO attachments (id, owner_id, message_id, position, filename, content_type, size, sha256, "
               "created_at) VALUES ('late', ?, ?, 5, 'late.bin', 'x/y', 75, ?, '2020-01-01 00:00:00')",
               (owner, message_id, late))
    db.commit()
    db.close()
    orphan = hashlib.sha256(b"a file no row names").hexdigest()  # a crash's leftover, say
    (data / "blobs" / orphan[:2] / orphan[2:4]).mkdir(parents=True, exist_ok=True)
    (data / "blobs" / orphan[:2] / orphan[2:4] / orphan).write_bytes(b"a file no row names")
    late_path = data / "blobs" / late[:2] / late[2:4] / late
    hidden = late_path.with_name("hidden")
    late_path.rename(hidden)  # "committed, not yet in place"
    real_copy = backup._copy_database

    def copy_then_clean(db_path, into):
        revision = real_copy(db_path, into)

        class Services:  # what the clean-up uses of the server's
            pass

        services = Services()
        services.db, services.blobs = Database(settings.database_url), LocalBlobStore(settings.blob_dir,
                                                                                      settings.tmp_dir)
        assert remove_stale_uploads(services) == 1
        services.db.dispose()
        threading.Timer(1.0, hidden.rename, (late_path,)).start()
        return revision

    monkeypatch.setattr(backup, "_copy_database", copy_then_clean)
    made = backup.backup(settings, tmp_path / "moved")
    assert made.warnings == []
    manifest = json.loads((tmp_path / "moved" / "manifest.json").read_text())
    paths = {e["path"] for e in manifest["files"]}
    assert f"blobs/{late[:2]}/{late[2:4]}/{late}" in paths
    assert not any(stale in p or orphan in p for p in paths)
    conn = sqlite3.connect(tmp_path / "moved" / "pen.db")
    assert conn.execute("SELECT count(*) FROM attachments WHERE id = 'stale'").fetchone()[0] == 0
    assert conn.execute("SELECT count(*) FROM blobs WHERE sha256 = ?", (stale,)).fetchone()[0] == 0
    conn.close()
    assert manifest["source_problems"] == []
    # A blob gone from the PEN itself, and one damaged there, are said; the backup is still
    # whole, and --verify notes them.
    late_path.unlink()
    monkeypatch.setattr(backup, "_copy_database", real_copy)
    monkeypatch.setattr(backup, "BLOB_WAIT_SECONDS", 0.5)
    made = backup.backup(settings, tmp_path / "missing.tar")
    assert made.warnings == [f"the attachment blob {late} is missing in the PEN itself, so the backup cannot hold "
                             f"it either (the backup keeps its rows; the file is lost unless an older backup has it)"]
    checked = _cli("backup", "--verify", str(tmp_path / "missing.tar"))
    assert checked.returncode == 0, checked.stderr
    assert checked.stderr == f"pen-server: note: the attachment blob {late} was missing in the PEN when this backup " \
                             f"was made.\n"
    late_path.write_bytes(b"a late onE")
    made = backup.backup(settings, tmp_path / "damaged")
    assert made.warnings == [f"the attachment blob {late} is damaged in the PEN itself (its bytes no longer have "
                             f"that sha256); the backup holds it as it is, and an older backup may hold it whole"]
    checked = _cli("backup", "--verify", str(tmp_path / "damaged"))
    assert checked.returncode == 0, checked.stderr
    assert "was damaged in the PEN when this backup was made" in checked.stderr
