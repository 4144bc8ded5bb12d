"""Attachments in an S3-compatible bucket: a real pen-server with [storage] pointing at a real
S3 server (`rclone serve s3` over a temporary folder, pen_devstack/s3.py). Uploads (API and
web form), sending, downloads with Range (several forms, a resume), the web page's download
and the clean-up all go through the bucket; nothing lands in the data folder; a large upload
keeps the server's memory flat; a missing bucket or a stopped S3 is a sentence, not a
traceback. Without rclone these tests skip with one line; under PEN_REQUIRE_TOOLS=1 (CI)
they fail instead."""

from __future__ import annotations

import asyncio
import hashlib
import os
import uuid
from dataclasses import replace
from datetime import timedelta
from types import SimpleNamespace

import pytest
from sqlalchemy import update

from pen_devstack.s3 import HOW_TO_ENABLE, S3Server, rclone_binary
from pen_server.app import remove_stale_uploads
from pen_server.db import Database
from pen_server.models import Attachment, utcnow
from pen_server.settings import load_settings
from pen_server.storage import StoreUnavailable
from pen_server.storage_s3 import S3BlobStore
from tests.conftest import PASSWORD, USERS, Pen, make_pen
from tests.server.test_sending_limits import RacingBlobs
from tests.web.conftest import Web

MIB = 1 << 20


REQUIRED = os.environ.get("PEN_REQUIRE_TOOLS") == "1"
if rclone_binary() is None and not REQUIRED:  # one line for the whole module
    pytest.skip(HOW_TO_ENABLE, allow_module_level=True)


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    if rclone_binary() is None:  # under CI, each test fails, and the rest of the suite runs
        pytest.fail(f"{HOW_TO_ENABLE} (PEN_REQUIRE_TOOLS=1)", pytrace=False)
    server = S3Server(tmp_path_factory.mktemp("s3")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def s3_pen(tmp_path_factory, s3, smtp):
    process = make_pen(tmp_path_factory.mktemp("s3-pen"), smtp, s3.env()).start()
    yield Pen(process, smtp)
    process.stop(2.0)


def upload(pen: Pen, who: str, name: str, data: bytes) -> dict:
    with pen.as_user(who) as c:
        r = c.post("/uploads", params={"filename": name}, content=data)
    assert r.status_code == 201, r.text
    return r.json()


def send(pen: Pen, who: str, to: str, attachments: list[str]) -> dict:
    with pen.as_user(who) as c:
        r = c.post("/messages", headers={"Idempotency-Key": uuid.uuid4().hex},
                   json={"to": [{"email": USERS[to][0]}], "subject": "Scans", "body_text": "Attached.",
                         "attachments": attachments})
    assert r.status_code == 201, r.text
    return r.json()


def local_files(pen: Pen) -> list[str]:
    return [p.name for sub in ("blobs", "tmp") for p in (pen.data / sub).rglob("*") if p.is_file()]


def blob_keys(s3: S3Server) -> list[str]:
    return [k for k in s3.objects() if k.startswith("attachments/blobs/")]


def test_upload_send_and_download_with_range_through_the_bucket(s3, s3_pen):
    data = os.urandom(3 * MIB + 123)
    sha = hashlib.sha256(data).hexdigest()
    first = upload(s3_pen, "ann", "scan.bin", data)
    again = upload(s3_pen, "ann", "scan copy.bin", data)  # the same bytes: one object
    assert first["sha256"] == again["sha256"] == sha
    key = f"attachments/blobs/{sha[:2]}/{sha[2:4]}/{sha}"
    assert blob_keys(s3).count(key) == 1
    assert (s3.bucket_dir / key).read_bytes() == data
    assert not [k for k in s3.objects() if k.startswith("attachments/tmp/")], "an upload's temporary object stayed"
    assert not local_files(s3_pen), "attachment bytes landed in the data folder"

    message = send(s3_pen, "ann", "bob", [first["id"]])
    url = f"/messages/{message['id']}/attachments/{first['id']}"
    size = len(data)
    with s3_pen.as_user("bob") as c:
        whole = c.get(url)
        assert whole.status_code == 200 and whole.content == data
        assert whole.headers["etag"] == f'"{sha}"' and whole.headers["content-length"] == str(size)
        for header, start, end in (("bytes=0-99", 0, 99), ("bytes=1048576-2097151", MIB, 2 * MIB - 1),
                                   ("bytes=-10", size - 10, size - 1), (f"bytes={size - 5}-", size - 5, size - 1),
                                   (f"bytes=5-{size + 1000}", 5, size - 1)):
            part = c.get(url, headers={"Range": header})
            assert part.status_code == 206, (header, part.text)
            assert part.headers["content-range"] == f"bytes {start}-{end}/{size}", header
            assert part.content == data[start:end + 1], header
        # A resume: the first half, then the rest while the ETag still matches.
        with c.stream("GET", url) as r:
            got = b""
            for piece in r.iter_raw():
                got += piece
                if len(got) >= size // 2:
                    break
        rest = c.get(url, headers={"Range": f"bytes={len(got)}-", "If-Range": whole.headers["etag"]})
        assert rest.status_code == 206 and got + rest.content == data
        assert c.get(url, headers={"Range": "bytes=0-1,5-6"}).content == data  # several ranges: the whole file
        past = c.get(url, headers={"Range": f"bytes={size}-"})
        assert past.status_code == 416 and past.headers["content-range"] == f"bytes */{size}"
        assert past.json()["error"]["code"] == "range_not_satisfiable"
    empty = upload(s3_pen, "ann", "empty.txt", b"")  # no body at all: an object of 0 bytes
    message = send(s3_pen, "ann", "bob", [empty["id"]])
    with s3_pen.as_user("bob") as c:
        got = c.get(f"/messages/{message['id']}/attachments/{empty['id']}")
        assert got.status_code == 200 and got.content == b"" and got.headers["content-length"] == "0"


def test_web_form_upload_and_page_download_through_the_bucket(s3, s3_pen):
    data = os.urandom(2 * MIB + 7)
    sha = hashlib.sha256(data).hexdigest()
    web = Web(s3_pen)
    try:
        web.login(USERS["ann"][0], PASSWORD)
        form = web.get("/new")
        r = web.client.post("/new", files={"files": ("x-ray.bin", data, "application/octet-stream")},
                            data={"csrf": web.form_token(form.text), "key": uuid.uuid4().hex,
                                  "to": USERS["cat"][0], "cc": "", "subject": "X-ray", "body": "Attached."})
        assert r.status_code == 303, r.text
    finally:
        web.close()
    assert f"attachments/blobs/{sha[:2]}/{sha[2:4]}/{sha}" in blob_keys(s3)
    assert not local_files(s3_pen)
    message_id = r.headers["location"].split("?")[0].rsplit("/", 1)[1]  # /m/ID?done=sent
    with s3_pen.as_user("ann") as c:
        [att] = c.get(f"/messages/{message_id}").json()["attachments"]
    web = Web(s3_pen)
    try:
        web.login(USERS["cat"][0], PASSWORD)
        page = web.get(f"/m/{message_id}/a/{att['id']}")
        assert page.status_code == 200 and page.content == data
        assert page.headers["content-security-policy"] == "default-src 'none'; sandbox"
        tail = web.get(f"/m/{message_id}/a/{att['id']}", headers={"Range": "bytes=-1000"})
        assert tail.status_code == 206 and tail.content == data[-1000:]
    finally:
        web.close()


def test_clean_up_removes_a_stale_upload_from_the_bucket_and_keeps_a_sent_one(s3, s3_pen):
    stale_data, kept_data = os.urandom(200_000), os.urandom(200_001)
    stale, kept = upload(s3_pen, "ann", "stale.bin", stale_data), upload(s3_pen, "ann", "kept.bin", kept_data)
    send(s3_pen, "ann", "bob", [kept["id"]])
    settings = load_settings(s3_pen.data, env=s3.env())
    db = Database(settings.database_url)
    try:
        with db.session() as s:  # a day and more ago, both; only the unsent one is the clean-up's
            s.execute(update(Attachment).where(Attachment.id.in_([stale["id"], kept["id"]]))
                      .values(created_at=utcnow() - timedelta(days=2)))
        keys = set(blob_keys(s3))
        stale_key = f"attachments/blobs/{stale['sha256'][:2]}/{stale['sha256'][2:4]}/{stale['sha256']}"
        assert stale_key in keys
        store = S3BlobStore(settings.storage)
        assert remove_stale_uploads(SimpleNamespace(db=db, blobs=store)) == 1
        assert set(blob_keys(s3)) == keys - {stale_key}
        assert remove_stale_uploads(SimpleNamespace(db=db, blobs=store)) == 0
    finally:
        db.dispose()


def test_unfinished_uploads_go_only_when_a_day_old(s3):
    store = S3BlobStore(s3.settings("unfinished"))
    temp = store.new_temp()
    temp.write(b"half of a file")
    temp.finish()  # as a crash would leave it: written, never put in place
    key = f"unfinished/tmp/{temp.name}"
    assert key in s3.objects()
    assert store.clean_temp(older_than=24 * 3600) == 0 and key in s3.objects()  # another process's, maybe
    assert store.clean_temp(older_than=0) == 1 and key not in s3.objects()
    temp.discard()  # already gone: nothing to do, nothing raised


class BucketRace(RacingBlobs):
    """The clean-up's race with an identical upload, the upload's body in the bucket."""

    def __init__(self, s3: S3Server, *args):
        super().__init__(*args)
        self.s3 = s3

    def body_arrived(self) -> bool:
        return any(k.startswith("attachments/tmp/upload-") for k in self.s3.objects())


def test_clean_up_never_takes_the_object_of_an_identical_upload(s3, s3_pen):
    data = os.urandom(300_000)
    stale = upload(s3_pen, "ann", "old.bin", data)
    key = f"attachments/blobs/{stale['sha256'][:2]}/{stale['sha256'][2:4]}/{stale['sha256']}"
    settings = load_settings(s3_pen.data, env=s3.env())
    db = Database(settings.database_url)
    token = s3_pen.login("ann")["access_token"]  # before: signing in writes too
    try:
        with db.session() as s:  # a day and more ago, and never sent: the clean-up's to remove
            s.execute(update(Attachment).where(Attachment.id == stale["id"])
                      .values(created_at=utcnow() - timedelta(days=2)))

        def do_upload():
            with s3_pen.client(token) as c:
                return c.post("/uploads", params={"filename": "new.bin"}, content=data)

        blobs = BucketRace(s3, S3BlobStore(settings.storage), do_upload, len(data))
        assert remove_stale_uploads(SimpleNamespace(db=db, blobs=blobs)) == 1
        blobs.thread.join(60)
        [fresh] = blobs.answer
        assert fresh.status_code == 201, fresh.text
        assert key in blob_keys(s3), "the new upload's object was removed"
    finally:
        db.dispose()
    message = send(s3_pen, "ann", "bob", [fresh.json()["id"]])
    with s3_pen.as_user("bob") as c:
        assert c.get(f"/messages/{message['id']}/attachments/{fresh.json()['id']}").content == data


def _status_kib(pid: int, field: str) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def _peak_growth_mib(pen: Pen, work) -> float:
    """How far the server's memory peaks above where it was while `work` runs."""
    pid = pen.process.proc.pid
    rss_before = _status_kib(pid, "VmRSS")
    with open(f"/proc/{pid}/clear_refs", "w") as f:
        f.write("5")  # the peak (VmHWM) starts again from now
    work()
    return (_status_kib(pid, "VmHWM") - rss_before) / 1024


def test_a_large_upload_and_download_keep_the_servers_memory_flat(s3, s3_pen, tmp_path):
    big = tmp_path / "big.bin"
    with big.open("wb") as f:
        for i in range(64):  # 64 MiB, each MiB different
            f.write(hashlib.sha256(str(i).encode()).digest() * (1 << 15))
    sha = hashlib.sha256(big.read_bytes()).hexdigest()
    with s3_pen.as_user("ann") as c:
        def upload_file(path, name):
            def chunks():
                with path.open("rb") as f:
                    while block := f.read(MIB):
                        yield block

            r = c.post("/uploads", params={"filename": name}, content=chunks(),
                       headers={"Content-Length": str(path.stat().st_size)})
            assert r.status_code == 201, r.text
            return r.json()

        small = tmp_path / "small.bin"
        small.write_bytes(os.urandom(MIB))
        small_growth = _peak_growth_mib(s3_pen, lambda: upload_file(small, "small.bin"))
        found: dict = {}
        big_growth = _peak_growth_mib(s3_pen, lambda: found.update(upload_file(big, "big.bin")))
    print(f"\nserver peak RSS growth: {small_growth:.1f} MiB for a 1 MiB upload, {big_growth:.1f} MiB for 64 MiB")
    assert found["sha256"] == sha and f"attachments/blobs/{sha[:2]}/{sha[2:4]}/{sha}" in blob_keys(s3)
    # 8 MiB parts, two in flight, and the part being filled: a bounded buffer, not the file.
    assert big_growth < small_growth + 40, f"{big_growth:.0f} MiB for 64 MiB against {small_growth:.0f} for 1"
    message = send(s3_pen, "ann", "bob", [found["id"]])
    with s3_pen.as_user("bob") as c:
        def download():
            h = hashlib.sha256()
            with c.stream("GET", f"/messages/{message['id']}/attachments/{found['id']}") as r:
                assert r.status_code == 200
                for piece in r.iter_raw():
                    h.update(piece)
            assert h.hexdigest() == sha

        down_growth = _peak_growth_mib(s3_pen, download)
    print(f"server peak RSS growth: {down_growth:.1f} MiB for a 64 MiB download")
    assert down_growth < 40, f"the server's memory grew by {down_growth:.0f} MiB for a 64 MiB download"


def test_a_missing_bucket_or_a_stopped_s3_is_a_sentence_not_a_traceback(tmp_path, s3, smtp):
    missing = S3BlobStore(replace(s3.settings(), url="s3://no-such-bucket/x"))
    with pytest.raises(StoreUnavailable) as caught:
        asyncio.run(missing.check())
    assert caught.value.message == (f"The object store s3://no-such-bucket/x at {s3.endpoint} has no bucket "
                                    "'no-such-bucket'; check [storage] in pen-server.toml.")
    wrong_key = S3BlobStore(replace(s3.settings(), secret_access_key="not-the-secret"))
    with pytest.raises(StoreUnavailable) as caught:
        asyncio.run(wrong_key.check())
    assert "refuses the access key" in caught.value.message and "not-the-secret" not in caught.value.message
    asyncio.run(S3BlobStore(s3.settings()).check())  # the running one answers

    own = S3Server(tmp_path / "s3").start()
    process = make_pen(tmp_path / "pen", smtp, own.env()).start()
    pen = Pen(process, smtp)
    try:
        data = os.urandom(100_000)
        sent = send(pen, "ann", "bob", [upload(pen, "ann", "a.bin", data)["id"]])
        with pen.as_user("bob") as c:
            token = c.headers["Authorization"]
            att = c.get(f"/messages/{sent['id']}").json()["attachments"][0]
        own.stop()
        store = S3BlobStore(own.settings())
        with pytest.raises(StoreUnavailable) as caught:
            asyncio.run(store.check())
        assert own.endpoint in caught.value.message and "does not answer (no connection)" in caught.value.message
        with pen.client() as c:
            c.headers["Authorization"] = token
            r = c.post("/uploads", params={"filename": "b.bin"}, content=os.urandom(50_000))
            got = c.get(f"/messages/{sent['id']}/attachments/{att['id']}")
        # PEN_STRICT_ERRORS=1: anything unhandled would be a 500 "bug".
        for answer in (r, got):
            assert answer.status_code == 503, answer.text
            assert answer.json()["error"]["code"] == "unavailable"
            assert "file storage does not answer" in answer.json()["error"]["message"]
            assert answer.headers["retry-after"] == "60"
        assert "Traceback" not in r.text + got.text
    finally:
        process.stop(2.0)
        own.stop()

