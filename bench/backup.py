"""`pen-server backup` on a PEN of 100,000 messages and 1 GiB of attachments, while a client
sends: how long each form takes (folder, .tar, .tar.zst), how big it is, how long
`--verify` and `restore` take, and the longest pause the sender saw meanwhile (with the 99th
percentile and the median), against what it saw in as long a stretch right after, with no
backup running.

The messages are written straight into the database (bulk INSERTs through the server's own
models, as bench/server_mailbox.py does): ~1 KiB of text each, a copy in the reader's inbox
and in the sender's Sent, and one sent notification each; 1,024 of them carry a 1 MiB
attachment of random bytes (which zstd cannot shrink: the worst case for .tar.zst). The
sender then goes over HTTPS: an upload of 64 KiB and a message naming it, again and again,
and each request's time is kept.

    .venv/bin/python bench/backup.py [--messages 100000] [--attachments 1024] [--json] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import timedelta
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pen_devstack import PenProcess, SmtpSink, add_user, free_port, init_pen  # noqa: E402

PASSWORD = "bench password 1"
BODY = ("Dear colleague, the results of the tests taken last week are attached to this message. "
        "Please read them before our meeting, and tell me if anything is unclear. ") * 6  # ~1 KiB


def seed(data: Path, count: int, attachments: int, blob_size: int) -> None:
    import hashlib

    from sqlalchemy import insert, select

    from pen_server.db import Database
    from pen_server.models import (
        Attachment,
        Blob,
        FolderCount,
        MailboxEntry,
        Message,
        Notification,
        User,
        new_id,
        utcnow,
    )
    from pen_server.private import make_private_dir, write_private
    from pen_server.settings import load_settings
    from pen_server.storage import blob_key

    settings = load_settings(data)
    db = Database(settings.database_url)
    with db.session() as s:
        reader = s.scalar(select(User).where(User.email == "reader@bench.example"))
        sender = s.scalar(select(User).where(User.email == "sender@bench.example"))
    start = utcnow() - timedelta(seconds=count)
    every = max(1, count // attachments) if attachments else 0
    batch, made = 5000, 0
    for first in range(0, count, batch):
        messages, entries, notes, blobs, atts = [], [], [], [], []
        for i in range(first, min(first + batch, count)):
            mid, when = new_id(), start + timedelta(seconds=i)
            has = bool(every) and i % every == 0 and made < attachments
            messages.append(dict(id=mid, thread_id=mid, sender_id=sender.id, from_email=sender.email,
                                 from_name="Sender", to_list=[{"email": reader.email, "name": "Reader"}], cc_list=[],
                                 bcc_list=[], subject=f"Results, part {i}", body_text=f"{BODY}{i}", body_html=None,
                                 snippet=BODY[:120], size=len(BODY) + (blob_size if has else 0),
                                 attachment_count=1 if has else 0, in_reply_to=None, sent_at=when))
            entries += [dict(user_id=reader.id, message_id=mid, folder="inbox", unread=i % 3 == 0, is_sender=False,
                             sent_at=when, thread_id=mid),
                        dict(user_id=sender.id, message_id=mid, folder="sent", unread=False, is_sender=True,
                             sent_at=when, thread_id=mid)]
            notes.append(dict(id=new_id(), message_id=mid, position=0, recipient_email=reader.email,
                              recipient_name="Reader", recipient_user_id=reader.id, kind="to", status="sent",
                              attempts=1, updated_at=when, next_attempt_at=when, smtp_message_id=f"<{mid}@bench>",
                              token_hash=hashlib.sha256(mid.encode()).hexdigest(),
                              token_expires_at=when + timedelta(days=30)))
            if has:
                content = os.urandom(blob_size)
                sha = hashlib.sha256(content).hexdigest()
                path = settings.blob_dir / blob_key(sha)
                make_private_dir(path.parent)
                write_private(path, content)
                blobs.append(dict(sha256=sha, size=blob_size, created_at=when))
                atts.append(dict(id=new_id(), owner_id=sender.id, message_id=mid, position=0,
                                 filename=f"results-{i}.pdf", content_type="application/pdf", size=blob_size,
                                 sha256=sha, created_at=when))
                made += 1
        with db.engine.begin() as conn:
            conn.execute(insert(Message), messages)
            conn.execute(insert(MailboxEntry), entries)
            conn.execute(insert(Notification), notes)
            if blobs:
                conn.execute(insert(Blob), blobs)
                conn.execute(insert(Attachment), atts)
    with db.engine.begin() as conn:
        conn.execute(insert(FolderCount), [dict(user_id=reader.id, folder="inbox", total=count),
                                           dict(user_id=sender.id, folder="sent", total=count)])
    db.dispose()


class Sender(threading.Thread):
    """Upload 64 KiB, send a message naming it; again and again. Keeps (start, seconds) of
    every request."""

    def __init__(self, process: PenProcess):
        super().__init__(daemon=True)
        self.process, self.stop = process, threading.Event()
        self.times: list[tuple[float, float]] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with httpx.Client(base_url=self.process.api, verify=str(self.process.ca_file), timeout=120) as c:
                login = c.post("/auth/login", json={"email": "sender@bench.example", "password": PASSWORD}).json()
                c.headers["Authorization"] = f"Bearer {login['access_token']}"
                while not self.stop.is_set():
                    t = time.monotonic()
                    att = c.post("/uploads?filename=note.bin", content=os.urandom(64 << 10))
                    att.raise_for_status()
                    self.times.append((t, time.monotonic() - t))
                    t = time.monotonic()
                    r = c.post("/messages", headers={"Idempotency-Key": uuid.uuid4().hex},
                               json={"to": [{"email": "reader@bench.example"}], "subject": "While backing up",
                                     "body_text": BODY, "attachments": [att.json()["id"]]})
                    r.raise_for_status()
                    self.times.append((t, time.monotonic() - t))
        except BaseException as exc:
            self.error = exc

    def window(self, start: float, end: float) -> dict:
        """The requests under way between start and end: how many, and their longest, 99th
        percentile and median times in milliseconds."""
        inside = sorted(d for t, d in list(self.times) if t + d >= start and t <= end)
        if not inside:
            return {"requests": 0}
        return {"requests": len(inside), "longest_ms": round(inside[-1] * 1000),
                "p99_ms": round(inside[min(len(inside) - 1, int(len(inside) * 0.99))] * 1000),
                "median_ms": round(inside[len(inside) // 2] * 1000)}


def du(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def pen_server(*args: str) -> tuple[float, str]:
    t = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "pen_server", *args], capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(done.stderr)
    return time.monotonic() - t, done.stdout.strip()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=100_000)
    ap.add_argument("--attachments", type=int, default=1024, help="attachments of --blob-kib each")
    ap.add_argument("--blob-kib", type=int, default=1024)
    ap.add_argument("--forms", default="folder,tar,tar.zst")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--keep", action="store_true")
    a = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="pen-bench-backup-"))
    sink = SmtpSink().start()
    process = None
    results: dict = {"messages": a.messages, "attachments": a.attachments, "blob_kib": a.blob_kib,
                     "load_before": os.getloadavg()[0]}
    try:
        data = root / "pen"
        port = free_port()
        init_pen(data, port=port)
        add_user(data, "reader@bench.example", "Reader", PASSWORD)
        add_user(data, "sender@bench.example", "Sender", PASSWORD)
        t = time.monotonic()
        seed(data, a.messages, a.attachments, a.blob_kib << 10)
        results["seed_seconds"] = round(time.monotonic() - t, 1)
        results["db_bytes"] = (data / "pen.db").stat().st_size
        results["blob_bytes"] = du(data / "blobs")
        process = PenProcess(data, port, smtp_port=sink.port,
                             env={"PEN_SEND_MESSAGES_PER_HOUR": "1000000",
                                  "PEN_SEND_RECIPIENTS_PER_HOUR": "1000000"}).start(timeout=120)
        sender = Sender(process)
        sender.start()
        time.sleep(3)  # the sender's connection and the server's caches are warm
        for form in a.forms.split(","):
            target = root / "backups" / ("pen" if form == "folder" else f"pen.{form}")
            start = time.monotonic()
            seconds, _ = pen_server("backup", "--data", str(data), "--to", str(target))
            end = time.monotonic()
            # As long again with no backup running, right after: the same sender, the same load.
            time.sleep(end - start)
            during, after = sender.window(start, end), sender.window(end, time.monotonic())
            verify_seconds, _ = pen_server("backup", "--verify", str(target))
            restored = root / f"restored-{form}"
            restore_seconds, _ = pen_server("restore", str(target), "--data", str(restored))
            results[form] = {"seconds": round(seconds, 2), "bytes": du(target), "sender_during": during,
                             "sender_after": after, "verify_seconds": round(verify_seconds, 2),
                             "restore_seconds": round(restore_seconds, 2), "load": os.getloadavg()[0]}
            shutil.rmtree(restored)
            if not a.json:
                print(form, results[form], flush=True)
        sender.stop.set()
        sender.join(60)
        if sender.error:
            raise sender.error
        results["load_after"] = os.getloadavg()[0]
    finally:
        if process is not None:
            process.stop()
        sink.stop()
        if not a.keep:
            shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
