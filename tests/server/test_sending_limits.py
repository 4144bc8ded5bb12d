"""Limits on sending and the upload clean-up, each on a PEN of its own with small limits set
through the environment: in this process (tests/conftest.py InProcessPen: the real app on a
real SQLite file or PostgreSQL database, without TLS), as nothing here needs a process."""

import concurrent.futures
import contextlib
import os
import threading
import time
import uuid
from datetime import timedelta
from types import SimpleNamespace

import httpx
import pytest
from sqlalchemy import update

from pen_server.app import remove_stale_uploads
from pen_server.db import Database
from pen_server.models import Attachment, utcnow
from pen_server.settings import load_settings
from pen_server.storage import BlobStore, LocalBlobStore
from tests.conftest import PASSWORD, USERS, in_process, make_pen
from tests.server.test_attachments import upload

LIMITS = {"PEN_MAX_RECIPIENTS": "5", "PEN_SEND_MESSAGES_PER_HOUR": "3", "PEN_SEND_RECIPIENTS_PER_HOUR": "8"}


@pytest.fixture(scope="module")
def limited(tmp_path_factory, db_smtp, database):
    with in_process(make_pen(tmp_path_factory.mktemp("limited-pen"), db_smtp, LIMITS, database()), db_smtp) as pen:
        yield pen


@contextlib.contextmanager
def client(pen, who: str | None = None):
    with pen.client(timeout=60) as c:
        if who:
            r = c.post("/auth/login", json={"email": USERS[who][0], "password": PASSWORD})
            assert r.status_code == 200, r.text
            c.headers["Authorization"] = f"Bearer {r.json()['access_token']}"
        yield c


def payload(count: int, tag: str = "") -> dict:
    return {"to": [{"email": f"r{i}-{tag}@outside.example"} for i in range(count)], "subject": f"limit {tag}",
            "body_text": "x"}


def test_more_recipients_than_the_cap_is_422(limited):
    with client(limited, "admin") as c:
        r = c.post("/messages", headers={"Idempotency-Key": "cap"},
                   json={"to": [{"email": "a@outside.example"}] * 2, "cc": [{"email": "b@outside.example"}] * 2,
                         "bcc": [{"email": "c@outside.example"}] * 2, "subject": "cap"})
        assert r.status_code == 422, r.text
        err = r.json()["error"]
        assert err["code"] == "validation_failed" and "to" in err["fields"]
        assert "at most 5 people" in err["message"] and err["message"].endswith(".")
        ok = c.post("/messages", headers={"Idempotency-Key": "cap-ok"}, json=payload(5, "cap"))
        assert ok.status_code == 201, ok.text


def test_messages_per_hour_then_429_with_retry_after(limited):
    tag = uuid.uuid4().hex[:6]
    with client(limited, "ann") as c:
        for i in range(3):
            r = c.post("/messages", headers={"Idempotency-Key": f"{tag}-{i}"}, json=payload(1, f"{tag}{i}"))
            assert r.status_code == 201, r.text
        # A retry of a message that was sent answers its 201 again, and is not counted.
        again = c.post("/messages", headers={"Idempotency-Key": f"{tag}-2"}, json=payload(1, f"{tag}2"))
        assert again.status_code == 201 and again.json()["id"] == r.json()["id"]
        over = c.post("/messages", headers={"Idempotency-Key": f"{tag}-3"}, json=payload(1, f"{tag}3"))
        assert over.status_code == 429, over.text
        assert over.json()["error"]["code"] == "rate_limited"
        assert "try again in about" in over.json()["error"]["message"]
        assert 1 <= int(over.headers["Retry-After"]) <= 3600
        # Nothing of the refused message was kept: the sent folder has the three.
        sent = c.get("/messages", params={"folder": "sent"}).json()
        assert sent["total"] == 3
    with client(limited, "bob") as c:  # the limit is each user's own
        assert c.post("/messages", headers={"Idempotency-Key": tag}, json=payload(1, tag)).status_code == 201


def test_recipients_per_hour_then_429(limited):
    tag = uuid.uuid4().hex[:6]
    with client(limited, "cat") as c:
        assert c.post("/messages", headers={"Idempotency-Key": f"{tag}a"}, json=payload(5, tag)).status_code == 201
        over = c.post("/messages", headers={"Idempotency-Key": f"{tag}b"}, json=payload(4, tag + "b"))
        assert over.status_code == 429 and int(over.headers["Retry-After"]) >= 1, over.text
        # Three more recipients still fit under eight.
        assert (
            c.post("/messages", headers={"Idempotency-Key": f"{tag}c"}, json=payload(3, tag + "c")).status_code == 201
        )


def test_concurrent_sends_cannot_pass_the_hourly_limit_together(tmp_path, db_smtp, database):
    with in_process(make_pen(tmp_path / "pen", db_smtp, LIMITS, database()), db_smtp) as process:
        with client(process, "ann") as c:
            token = c.headers["Authorization"]
        start = threading.Barrier(6)

        def send_one(i: int) -> int:
            with client(process) as c:
                start.wait()
                return c.post(
                    "/messages", headers={"Idempotency-Key": f"k{i}", "Authorization": token}, json=payload(1, f"c{i}")
                ).status_code

        with concurrent.futures.ThreadPoolExecutor(6) as pool:
            codes = sorted(pool.map(send_one, range(6)))
        assert codes == [201, 201, 201, 429, 429, 429]


class RacingBlobs:
    """The real blob store, except that just before the clean-up removes a blob's file an
    upload of the same bytes arrives through the API, and gets as far as the server lets it."""

    def __init__(self, store: BlobStore, do_upload, size: int):
        self.store, self.do_upload, self.size = store, do_upload, size
        self.answer: list[httpx.Response] = []
        self.thread: threading.Thread | None = None

    def remove(self, sha: str) -> None:
        self.thread = threading.Thread(target=lambda: self.answer.append(self.do_upload()))
        self.thread.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not self.answer:
            if self.body_arrived():
                break
            time.sleep(0.01)
        # Give the upload its chance to finish first (with the fix it waits for our lock).
        self.thread.join(5)
        self.store.remove(sha)

    def body_arrived(self) -> bool:
        """The upload's body is in the store, as a temporary blob (here: on the server's disk)."""
        assert isinstance(self.store, LocalBlobStore)
        return any(p.stat().st_size == self.size for p in self.store.tmp.glob("upload-*"))


def test_clean_up_never_takes_the_file_of_an_identical_upload(in_process_pen):
    process = in_process_pen
    db = None
    try:
        settings = load_settings(process.data)
        db = Database(settings.database_url)
        data = os.urandom(300_000)
        with client(process, "ann") as c:
            stale = upload(c, "old.bin", data).json()
        with db.session() as s:  # a day and more ago, and never sent: the clean-up's to remove
            s.execute(
                update(Attachment).where(Attachment.id == stale["id"]).values(created_at=utcnow() - timedelta(days=2))
            )

            token = c.headers["Authorization"]  # signed in before: signing in writes too

        def do_upload():
            with client(process) as c:
                c.headers["Authorization"] = token
                return upload(c, "new.bin", data)

        blobs = RacingBlobs(LocalBlobStore(settings.blob_dir, settings.tmp_dir), do_upload, len(data))
        assert remove_stale_uploads(SimpleNamespace(db=db, blobs=blobs)) == 1
        blobs.thread.join(60)
        [fresh] = blobs.answer
        assert fresh.status_code == 201, fresh.text
        assert blobs.store.path(stale["sha256"]).is_file(), "the new upload's file was removed"
        with client(process, "ann") as c:
            sent = c.post(
                "/messages",
                headers={"Idempotency-Key": "after-clean-up"},
                json={"to": [{"email": USERS["bob"][0]}], "subject": "kept", "attachments": [fresh.json()["id"]]},
            )
            assert sent.status_code == 201, sent.text
        with client(process, "bob") as c:
            got = c.get(f"/messages/{sent.json()['id']}/attachments/{fresh.json()['id']}")
            assert got.status_code == 200 and got.content == data
        # A second round finds nothing to remove: the blob is in use.
        assert remove_stale_uploads(SimpleNamespace(db=db, blobs=blobs.store)) == 0
        assert blobs.store.path(stale["sha256"]).is_file()
    finally:
        if db is not None:
            db.dispose()
