"""tui.downloads against the real pen-server over TLS: whole downloads verify, hostile names
stay inside the folder, a cut connection resumes with Range, a .part left by an earlier run
is continued, an If-Range mismatch starts again, a tampered .part is not kept, and
cancelling keeps the .part."""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
import tracemalloc
import uuid
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from tui import downloads
from tui.downloads import (
    DownloadCancelled,
    DownloadError,
    Progress,
    download_all,
    download_attachment,
    raw_tls,
)
from tui.downloads import (
    part as part_file,
)
from tui.downloads.part import Part
from tui.files import safe_filename
from tui.pen_client import Attachment, DirectRoute, NotFound, PenClient, PenError, Unreachable, tls_context

BOB = ("bob@abc.example", "correct horse battery")
SIZE = 6 * (1 << 20) + 12345  # not a multiple of any chunk size
SMALL_CHUNK = 256 << 10


# ---------------------------------------------------------------- helpers


def wait_until_signed_in(pen, access_token: str) -> None:
    """The server may answer a sign-in a moment before the token is committed; wait for it
    so that the next call does not meet a 401 (see the report on db_session)."""
    with pen.client(access_token) as c:
        for _ in range(100):
            if c.get("/me").status_code == 200:
                return
            time.sleep(0.02)
    raise AssertionError("the sign-in never became valid")


def as_user(pen, who: str) -> httpx.Client:
    token = pen.login(who)["access_token"]
    wait_until_signed_in(pen, token)
    return pen.client(token)


def upload(c: httpx.Client, name: str, data: bytes) -> dict:
    r = c.post(f"/uploads?filename={quote(name, safe='')}", content=data,
               headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 201, r.text
    return r.json()


def send_to_bob(pen, attachment_ids: list[str], subject: str) -> str:
    with as_user(pen, "ann") as c:
        r = c.post("/messages", headers={"Idempotency-Key": uuid.uuid4().hex},
                   json={"to": [{"email": "bob@abc.example"}], "subject": subject, "body_text": "Files.",
                         "attachments": attachment_ids})
    assert r.status_code == 201, r.text
    return r.json()["id"]


class Recorder(httpx.AsyncBaseTransport):
    """The real transport, with each request's headers and each answer's status kept."""

    by_route: dict = {}

    def __init__(self, ca_file: str):
        self.inner = httpx.AsyncHTTPTransport(verify=tls_context(ca_file))
        self.seen: list[tuple[str, dict, int]] = []
        Recorder.by_route[id(self.inner._pool._ssl_context)] = self  # the raw path records here too

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        self.seen.append((request.url.path, dict(request.headers), response.status_code))
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()

    @property
    def downloads(self) -> list[tuple[dict, int]]:
        return [(h, s) for path, h, s in self.seen if "/attachments/" in path]


class CutProxy:
    """A plain TCP forwarder (TLS passes through it untouched) that cuts a connection once
    `budget` bytes went from the server to the client on it, and refuses connections from
    number `refuse_from` on. It counts the bytes each connection carried down."""

    def __init__(self, target_port: int, budgets: Sequence[int | None] = (), refuse_from: int | None = None):
        self.target_port = target_port
        self.budgets = list(budgets)
        self.refuse_from = refuse_from
        self.down: list[int] = []
        self.cuts = 0
        self.server: asyncio.base_events.Server | None = None
        self.tasks: set[asyncio.Task] = set()
        self.transports: list[asyncio.WriteTransport] = []

    async def __aenter__(self) -> CutProxy:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc) -> None:
        self.server.close()
        for transport in self.transports:
            transport.abort()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.server.wait_closed()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.tasks.add(asyncio.current_task())
        self.transports.append(writer.transport)
        number = len(self.down)
        self.down.append(0)
        if self.refuse_from is not None and number >= self.refuse_from:
            writer.transport.abort()
            return
        budget = self.budgets[number] if number < len(self.budgets) else None
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self.transports.append(up_writer.transport)

        def cut() -> None:
            writer.transport.abort()
            up_writer.transport.abort()

        async def upstream() -> None:
            while data := await reader.read(1 << 16):
                up_writer.write(data)
                await up_writer.drain()
            up_writer.write_eof()

        async def downstream() -> None:
            while data := await up_reader.read(1 << 16):
                if budget is not None and self.down[number] + len(data) >= budget:
                    writer.write(data[: budget - self.down[number]])
                    self.down[number] = budget
                    await writer.drain()
                    self.cuts += 1
                    cut()
                    return
                self.down[number] += len(data)
                writer.write(data)
                await writer.drain()
            writer.write_eof()

        try:
            await asyncio.gather(upstream(), downstream())
        except (ConnectionError, OSError):
            pass
        finally:
            cut()
            self.tasks.discard(asyncio.current_task())


async def bob_client(pen, server: str | None = None) -> tuple[PenClient, Recorder]:
    recorder = Recorder(pen.ca_file)
    client = PenClient(server or pen.process.url, ca_file=pen.ca_file, transport=recorder)
    await client.login(*BOB)
    wait_until_signed_in(pen, client._access)
    return client, recorder


def listing(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


def parts_of(folder: Path) -> tuple[Path, Path]:
    parts = sorted(folder.glob("*.part"))
    metas = sorted(folder.glob("*.part.json"))
    assert len(parts) == 1 and len(metas) == 1, listing(folder)
    return parts[0], metas[0]


# ---------------------------------------------------------------- fixtures


@pytest.fixture(autouse=True)
def every_progress_report(monkeypatch):
    """Report progress on every piece, so that a test can stop a download half way."""
    monkeypatch.setattr(downloads, "PROGRESS_INTERVAL", 0.0)


@pytest.fixture(autouse=True, params=["raw", "httpx"])
def body_path(request, monkeypatch):
    """Every test runs both ways: the body read straight off the TLS connection (what a
    PenClient with httpx's own transport uses), and through httpx (proxies, test transports,
    and every answer but a plain 200/206). For "raw", the Recorder's inner transport is
    accepted as httpx's own, and each raw request is recorded like the ones through httpx."""
    if request.param == "httpx":
        monkeypatch.setattr(downloads, "RAW_DOWNLOADS", False)
        return request.param
    route, opener = PenClient.direct_route, raw_tls.RawBody.open.__func__

    def direct_route(client):
        transport = client._http._transport
        if isinstance(transport, Recorder) and client.signed_in:
            return DirectRoute(client._http.base_url, transport.inner._pool._ssl_context, client._http.timeout,
                               f"Bearer {client._access}")
        return route(client)

    async def open_and_record(cls, route_, path, headers, *args):
        recorder = Recorder.by_route.get(id(route_.ssl_context))
        try:
            body = await opener(cls, route_, path, headers, *args)
        except raw_tls.RawFallback:
            raise
        if recorder is not None:
            recorder.seen.append((path, {k.lower(): v for k, v in headers.items()}, body.status_code))
        return body

    monkeypatch.setattr(PenClient, "direct_route", direct_route)
    monkeypatch.setattr(raw_tls.RawBody, "open", classmethod(open_and_record))
    return request.param


def message_with_a_file(pen, size: int, filename: str, subject: str) -> tuple[str, bytes]:
    """A message from ann to bob with one file of random bytes; (message id, the bytes)."""
    data = os.urandom(size)
    with as_user(pen, "ann") as c:
        att = upload(c, filename, data)
    return send_to_bob(pen, [att["id"]], subject), data


@pytest.fixture(scope="module")
def big(pen) -> tuple[str, bytes]:
    """A message to bob with one file of a few MB."""
    return message_with_a_file(pen, SIZE, "Lab results.pdf", "big file")


@pytest.fixture
async def bob(pen):
    client, recorder = await bob_client(pen)
    yield client, recorder
    await client.aclose()


@pytest.fixture
async def big_att(bob, big) -> Attachment:
    message = await bob[0].get_message(big[0])
    assert len(message.attachments) == 1
    return message.attachments[0]


async def cancelled_half_way(client: PenClient, mid: str, att: Attachment, folder: Path) -> int:
    """Download until about half the file is there, then stop with the cancel event."""
    stop = asyncio.Event()

    def progress(p: Progress) -> None:
        if p.done >= att.size // 2:
            stop.set()

    with pytest.raises(DownloadCancelled) as info:
        await download_attachment(client, mid, att, folder, progress=progress, cancel=stop,
                                  chunk_size=SMALL_CHUNK)
    assert "kept" in info.value.message and info.value.message.count(".") <= 2
    part, meta = parts_of(folder)
    size = part.stat().st_size
    assert 0 < size < att.size
    assert info.value.part == part and info.value.done == size  # nothing is still being written
    return size


# ---------------------------------------------------------------- whole downloads


async def test_whole_download_verifies(tmp_path, bob, big, big_att):
    client, recorder = bob
    reports: list[Progress] = []
    path = await download_attachment(client, big[0], big_att, tmp_path, progress=reports.append)
    assert path == tmp_path.resolve() / "Lab results.pdf"
    assert path.read_bytes() == big[1]
    assert listing(tmp_path) == {"Lab results.pdf"}  # no .part, no metadata left
    assert (path.stat().st_mode & 0o777) == 0o600
    assert reports and reports[-1].done == SIZE and reports[-1].total == SIZE
    assert reports[-1].seconds_left == 0 and reports[-1].fraction == 1.0
    assert all(r.filename == "Lab results.pdf" and r.total == SIZE for r in reports)
    assert [r.done for r in reports] == sorted(r.done for r in reports)
    assert [s for _h, s in recorder.downloads] == [200]
    assert "range" not in recorder.downloads[0][0]


async def test_writes_and_hashes_off_the_event_loop(tmp_path, bob, big, big_att, monkeypatch):
    loop_thread = threading.get_ident()
    threads: set[int] = set()
    original = Part.write

    def write(self, chunk):
        threads.add(threading.get_ident())
        return original(self, chunk)

    monkeypatch.setattr(Part, "write", write)
    await download_attachment(bob[0], big[0], big_att, tmp_path, chunk_size=SMALL_CHUNK)
    assert threads and loop_thread not in threads


HUGE = 32 << 20  # well past what a download holds at its most (below), so holding the file shows


@pytest.fixture(scope="module")
def huge(pen) -> tuple[str, bytes]:
    return message_with_a_file(pen, HUGE, "scan.tiff", "huge file")


async def test_memory_stays_bounded(tmp_path, bob, huge):
    [att] = (await bob[0].get_message(huge[0])).attachments
    tracemalloc.start()
    try:
        await download_attachment(bob[0], huge[0], att, tmp_path, chunk_size=SMALL_CHUNK)
        _now, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # At its most a download holds a few chunks in flight and a TLS read or two (the raw path:
    # up to 11 chunks of 256 KiB queued, filling or spare, a 1 MiB receive buffer and what TLS
    # has not decrypted yet; about 5 MB when the writer falls behind on a loaded machine, which
    # a 6 MB file could not tell from holding the file), never the file.
    assert peak < 12 << 20, peak


async def test_download_all_and_existing_files_are_not_overwritten(tmp_path, pen, bob):
    one, two = os.urandom(1000), os.urandom(2000)
    with as_user(pen, "ann") as c:
        ids = [upload(c, "notes.txt", one)["id"], upload(c, "notes.txt", two)["id"]]
    mid = send_to_bob(pen, ids, "two of a name")
    (tmp_path / "notes.txt").write_bytes(b"mine")
    (tmp_path / "notes.txt.part").write_bytes(b"my own part file")  # not ours: left alone
    message = await bob[0].get_message(mid)
    reports: list[Progress] = []
    results = await download_all(bob[0], message, tmp_path, progress=reports.append)
    assert [was for _, was in results] == [False, False]  # "mine" has other bytes
    paths = [path for path, _ in results]
    assert [p.name for p in paths] == ["notes (1).txt", "notes (2).txt"]
    assert [p.read_bytes() for p in paths] == [one, two]
    assert (tmp_path / "notes.txt").read_bytes() == b"mine"
    assert (tmp_path / "notes.txt.part").read_bytes() == b"my own part file"
    assert listing(tmp_path) == {"notes.txt", "notes.txt.part", "notes (1).txt", "notes (2).txt"}
    assert {(r.file_number, r.file_count) for r in reports} == {(1, 2), (2, 2)}


async def test_planted_symlinks_are_never_followed(tmp_path, bob, big, big_att):
    folder, outside = tmp_path / "dl", tmp_path / "outside"
    folder.mkdir()
    outside.mkdir()
    victim = outside / "victim"
    victim.write_bytes(b"precious")
    for name in ("Lab results.pdf", "Lab results.pdf.part", "Lab results.pdf.part.json"):
        (folder / name).symlink_to(victim)
    path = await download_attachment(bob[0], big[0], big_att, folder)
    assert path == folder.resolve() / "Lab results (1).pdf" and not path.is_symlink()
    assert path.read_bytes() == big[1]
    assert victim.read_bytes() == b"precious" and listing(outside) == {"victim"}


async def test_two_downloads_of_one_file_at_once(tmp_path, bob, big, big_att):
    paths = await asyncio.gather(*(download_attachment(bob[0], big[0], big_att, tmp_path,
                                                       chunk_size=SMALL_CHUNK) for _ in range(2)))
    assert sorted(p.name for p in paths) == ["Lab results (1).pdf", "Lab results.pdf"]
    assert all(p.read_bytes() == big[1] for p in paths)
    assert listing(tmp_path) == {p.name for p in paths}


# ---------------------------------------------------------------- hostile names


async def test_hostile_names_from_the_server_stay_inside(tmp_path, pen, bob, hostile):
    names = [n for n in hostile["filenames"] if n]  # the API refuses an empty name
    contents = {}
    with as_user(pen, "ann") as c:
        ids = []
        for i, name in enumerate(names):
            data = f"file {i}".encode()
            att = upload(c, name, data)
            contents[att["id"]] = data
            ids.append(att["id"])
    mid = send_to_bob(pen, ids, "hostile names")
    folder = tmp_path / "dl"
    folder.mkdir()
    (tmp_path / "sentinel").write_text("untouched")
    message = await bob[0].get_message(mid)
    paths = [path for path, _ in await download_all(bob[0], message, folder)]
    assert len(paths) == len(names) == len(set(paths))
    for path, att in zip(paths, message.attachments):
        assert path.parent == folder.resolve() and path.resolve().parent == folder.resolve()
        assert path.read_bytes() == contents[att.id]
        assert not path.name.startswith(".") and len(path.name.encode()) <= 255
    assert listing(folder) == {p.name for p in paths}
    assert listing(tmp_path) == {"dl", "sentinel"} and (tmp_path / "sentinel").read_text() == "untouched"


async def test_hostile_names_straight_from_a_sender_stay_inside(tmp_path, pen, bob, hostile):
    """Even a server that passed the names on unchanged cannot make a file land outside."""
    with as_user(pen, "ann") as c:
        real = upload(c, "x.bin", b"payload")
    mid = send_to_bob(pen, [real["id"]], "raw names")
    att = (await bob[0].get_message(mid)).attachments[0]
    folder = tmp_path / "dl"
    folder.mkdir()
    paths = []
    for name in hostile["filenames"]:
        paths.append(await download_attachment(bob[0], mid, replace(att, filename=name), folder))
    assert len(set(paths)) == len(hostile["filenames"])  # none overwrote another
    for name, path in zip(hostile["filenames"], paths):
        assert path.parent == folder.resolve() and path.resolve().parent == folder.resolve()
        assert path.read_bytes() == b"payload"
        stem = safe_filename(name)
        assert path.name == stem or path.name.startswith(os.path.splitext(stem)[0][:50])
    assert listing(folder) == {p.name for p in paths}
    assert listing(tmp_path) == {"dl"}


# ---------------------------------------------------------------- resuming


def first_download_connection(body_path: str) -> int:
    """The proxy's number of the first download's connection: through httpx the sign-in's
    connection is used again; the raw path opens one of its own for each request."""
    return 1 if body_path == "raw" else 0


async def test_cut_connection_resumes_with_range(tmp_path, pen, big, big_att, body_path):
    skip = first_download_connection(body_path)
    async with CutProxy(pen.process.port, budgets=[None] * skip + [SIZE // 2]) as proxy:
        client, recorder = await bob_client(pen, proxy.url)
        try:
            path = await download_attachment(client, big[0], big_att, tmp_path, retry_delay=0.05)
        finally:
            await client.aclose()
    assert path.read_bytes() == big[1] and listing(tmp_path) == {"Lab results.pdf"}
    assert proxy.cuts == 1 and len(proxy.down) == skip + 2
    (first, s1), (second, s2) = recorder.downloads
    assert s1 == 200 and "range" not in first
    assert s2 == 206
    start = int(second["range"].removeprefix("bytes=").rstrip("-"))
    assert 0 < start < SIZE // 2
    # The second connection carried the rest (and a TLS handshake), not the whole file.
    assert proxy.down[skip + 1] < SIZE - start + (64 << 10) < SIZE
    assert second["if-range"] == f'"{big_att.sha256}"'


async def test_repeated_cuts_still_finish(tmp_path, pen, big, big_att):
    async with CutProxy(pen.process.port, budgets=[1 << 20] * 20) as proxy:
        client, recorder = await bob_client(pen, proxy.url)
        try:
            path = await download_attachment(client, big[0], big_att, tmp_path, retry_delay=0.01, retries=2)
        finally:
            await client.aclose()
    assert path.read_bytes() == big[1]
    assert proxy.cuts >= 5 and all(s == 206 for _h, s in recorder.downloads[1:])


async def test_gives_up_after_retries_and_keeps_the_part(tmp_path, pen, big, big_att, body_path):
    skip = first_download_connection(body_path)
    async with CutProxy(pen.process.port, budgets=[None] * skip + [SIZE // 3], refuse_from=skip + 1) as proxy:
        client, _recorder = await bob_client(pen, proxy.url)
        try:
            with pytest.raises(Unreachable) as info:
                await download_attachment(client, big[0], big_att, tmp_path, retry_delay=0.01, retries=2)
        finally:
            await client.aclose()
    assert len(proxy.down) == skip + 1 + 2  # the cut one, then two retries, both refused
    assert info.value.message.endswith(".")
    part, _meta = parts_of(tmp_path)
    kept = part.stat().st_size
    assert 0 < kept < SIZE
    # Once the network is back, the same call carries on from there.
    client, recorder = await bob_client(pen)
    try:
        path = await download_attachment(client, big[0], big_att, tmp_path)
    finally:
        await client.aclose()
    assert path.read_bytes() == big[1]
    assert recorder.downloads[0][0]["range"] == f"bytes={kept}-"


async def test_restart_resumes_the_part_left_by_an_earlier_run(tmp_path, pen, big, big_att):
    first, _ = await bob_client(pen)
    try:
        kept = await cancelled_half_way(first, big[0], big_att, tmp_path)
    finally:
        await first.aclose()
    _part, meta = parts_of(tmp_path)
    doc = json.loads(meta.read_text())
    assert doc["sha256"] == big_att.sha256 and doc["size"] == SIZE and doc["etag"] == f'"{big_att.sha256}"'
    # A new client, as after a restart of penmail.
    second, recorder = await bob_client(pen)
    reports: list[Progress] = []
    try:
        path = await download_attachment(second, big[0], big_att, tmp_path, progress=reports.append)
    finally:
        await second.aclose()
    assert path.read_bytes() == big[1] and listing(tmp_path) == {"Lab results.pdf"}
    [(headers, status)] = recorder.downloads
    assert headers["range"] == f"bytes={kept}-" and headers["if-range"] == f'"{big_att.sha256}"'
    assert status == 206
    assert reports[0].done == kept


async def test_if_range_mismatch_starts_again_from_zero(tmp_path, pen, bob, big, big_att):
    client, recorder = bob
    kept = await cancelled_half_way(client, big[0], big_att, tmp_path)
    part, meta = parts_of(tmp_path)
    doc = json.loads(meta.read_text())
    doc["etag"] = '"' + "0" * 64 + '"'  # as if the file had changed on the server since
    meta.write_text(json.dumps(doc))
    part.write_bytes(os.urandom(kept))  # appending to these bytes would never verify
    recorder.seen.clear()
    path = await download_attachment(client, big[0], big_att, tmp_path)
    assert path.read_bytes() == big[1] and listing(tmp_path) == {"Lab results.pdf"}
    [(headers, status)] = recorder.downloads
    assert headers["range"] == f"bytes={kept}-" and headers["if-range"] == '"' + "0" * 64 + '"'
    assert status == 200


async def test_tampered_part_is_not_kept(tmp_path, bob, big, big_att):
    client, _recorder = bob
    await cancelled_half_way(client, big[0], big_att, tmp_path)
    part, _meta = parts_of(tmp_path)
    with part.open("r+b") as f:
        f.seek(1000)
        byte = f.read(1)
        f.seek(1000)
        f.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(DownloadError) as info:
        await download_attachment(client, big[0], big_att, tmp_path)
    assert info.value.message == ("The file arrived with a different checksum than the server gave, so it "
                                  "was not kept; try again.")
    assert listing(tmp_path) == set()


async def test_a_complete_part_is_finished_without_downloading(tmp_path, bob, big, big_att):
    client, recorder = bob
    await cancelled_half_way(client, big[0], big_att, tmp_path)
    part, _meta = parts_of(tmp_path)
    part.write_bytes(big[1])  # as if the client died after the last byte, before the move
    recorder.seen.clear()
    path = await download_attachment(client, big[0], big_att, tmp_path)
    assert path.read_bytes() == big[1] and recorder.downloads == []
    assert listing(tmp_path) == {"Lab results.pdf"}


async def test_a_part_for_another_file_is_left_alone(tmp_path, bob, big, big_att):
    client, _recorder = bob
    other = replace(big_att, sha256="1" * 64)
    await cancelled_half_way(client, big[0], big_att, tmp_path)
    part, meta = parts_of(tmp_path)
    doc = json.loads(meta.read_text())
    doc["sha256"] = other.sha256  # now it belongs to another file of the same name
    meta.write_text(json.dumps(doc))
    before = part.read_bytes()
    path = await download_attachment(client, big[0], big_att, tmp_path)
    assert path.read_bytes() == big[1]
    assert part.read_bytes() == before and json.loads(meta.read_text())["sha256"] == other.sha256
    assert listing(tmp_path) == {"Lab results.pdf", part.name, meta.name}


# ---------------------------------------------------------------- cancelling and failing


async def test_cancel_event_keeps_the_part_and_resumes_at_once(tmp_path, bob, big, big_att):
    client, recorder = bob
    kept = await cancelled_half_way(client, big[0], big_att, tmp_path)
    part, _meta = parts_of(tmp_path)
    assert part.stat().st_size == kept
    assert not (tmp_path / "Lab results.pdf").exists()
    recorder.seen.clear()
    path = await download_attachment(client, big[0], big_att, tmp_path)  # "resume" pressed at once
    assert path.read_bytes() == big[1] and listing(tmp_path) == {"Lab results.pdf"}
    assert recorder.downloads[0][0]["range"] == f"bytes={kept}-"


async def test_cancel_set_before_the_start(tmp_path, bob, big, big_att):
    stop = asyncio.Event()
    stop.set()
    with pytest.raises(DownloadCancelled):
        await download_attachment(bob[0], big[0], big_att, tmp_path, cancel=stop)
    assert listing(tmp_path) == set()


async def test_cancelling_the_task_keeps_the_part(tmp_path, bob, big, big_att):
    client, recorder = bob
    half = asyncio.Event()

    def progress(p: Progress) -> None:
        if p.done >= SIZE // 2:
            half.set()

    task = asyncio.create_task(download_attachment(client, big[0], big_att, tmp_path, progress=progress,
                                                   chunk_size=SMALL_CHUNK))
    await half.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    part, _meta = parts_of(tmp_path)
    kept = part.stat().st_size
    assert 0 < kept < SIZE
    recorder.seen.clear()
    path = await download_attachment(client, big[0], big_att, tmp_path)
    assert path.read_bytes() == big[1]
    assert recorder.downloads[0][0]["range"] == f"bytes={kept}-"


async def test_the_default_download_folder_is_made_but_a_chosen_one_never(tmp_path, bob, big, big_att, monkeypatch):
    default = tmp_path / "home" / "Downloads"
    monkeypatch.setattr(part_file, "default_download_dir", lambda: default)
    path = await download_attachment(bob[0], big[0], big_att, default)
    assert path.parent == default and path.read_bytes() == big[1]
    assert (default.stat().st_mode & 0o777) == 0o700
    with pytest.raises(DownloadError) as info:
        await download_attachment(bob[0], big[0], big_att, tmp_path / "home" / "Downlaods")
    assert "does not exist" in info.value.message and not (tmp_path / "home" / "Downlaods").exists()


async def test_missing_or_unwritable_folder(tmp_path, bob, big, big_att):
    with pytest.raises(DownloadError) as info:
        await download_attachment(bob[0], big[0], big_att, tmp_path / "nope")
    assert info.value.message.endswith("does not exist; create it or choose another.")
    (tmp_path / "file").write_text("x")
    with pytest.raises(DownloadError) as info:
        await download_attachment(bob[0], big[0], big_att, tmp_path / "file")
    assert "is not a folder" in info.value.message
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(DownloadError) as info:
            await download_attachment(bob[0], big[0], big_att, locked)
        assert info.value.message.endswith("cannot be written to; choose another folder.")


async def test_unknown_attachment_leaves_nothing(tmp_path, bob, big, big_att):
    with pytest.raises(NotFound) as info:
        await download_attachment(bob[0], big[0], replace(big_att, id="nope" * 6), tmp_path)
    assert isinstance(info.value, PenError) and info.value.message
    assert listing(tmp_path) == set()


async def test_size_different_from_the_server_keeps_nothing(tmp_path, bob, big, big_att):
    with pytest.raises(DownloadError) as info:
        await download_attachment(bob[0], big[0], replace(big_att, size=SIZE - 1), tmp_path)
    assert "different size" in info.value.message
    assert listing(tmp_path) == set()


async def test_checksum_different_from_the_listing_keeps_nothing(tmp_path, bob, big, big_att):
    with pytest.raises(DownloadError) as info:
        await download_attachment(bob[0], big[0], replace(big_att, sha256="ab" * 32), tmp_path)
    assert "different checksum" in info.value.message
    assert listing(tmp_path) == set()


async def test_an_empty_file(tmp_path, pen, bob):
    with as_user(pen, "ann") as c:
        att = upload(c, "empty.txt", b"")
    mid = send_to_bob(pen, [att["id"]], "empty")
    client, recorder = bob
    message = await client.get_message(mid)
    path = await download_attachment(client, mid, message.attachments[0], tmp_path)
    assert path.name == "empty.txt" and path.read_bytes() == b""
    assert [s for _h, s in recorder.downloads] == [200]
    assert listing(tmp_path) == {"empty.txt"}


async def test_a_fifo_planted_under_our_names_does_not_hang(tmp_path, bob, big, big_att):
    os.mkfifo(tmp_path / "Lab results.pdf.part.json")
    os.mkfifo(tmp_path / "Lab results.pdf (1).part")
    path = await asyncio.wait_for(download_attachment(bob[0], big[0], big_att, tmp_path), 30)
    assert path.read_bytes() == big[1]
    assert listing(tmp_path) == {"Lab results.pdf", "Lab results.pdf.part.json", "Lab results.pdf (1).part"}


def test_written_windows_go_to_writeback_and_old_ones_leave_the_cache(tmp_path, monkeypatch):
    """Each 8 MiB written is handed to writeback at once (no pile of dirty pages for the
    kernel to throttle, a short final fsync), and a window written four windows ago is
    dropped from the page cache; a restart starts the windows again."""
    calls = []
    monkeypatch.setattr(part_file, "_fadvise",
                        lambda fd, offset, length, advice: calls.append((offset, length, advice)))
    window = part_file.WRITEBACK_WINDOW
    part = Part.claim(
        tmp_path,
        "big.bin",
        {"format": part_file.META_FORMAT, "sha256": "0" * 64, "size": 10 * window, "etag": None, "filename": "big.bin"},
    )
    try:
        chunk = b"x" * (window // 2)
        for _ in range(12):  # 6 windows
            part.write(chunk)
        dontneed = os.POSIX_FADV_DONTNEED
        started = [(o, n) for o, n, a in calls if n == window and a == dontneed]
        assert {o for o, _ in started} >= {0, window, 2 * window, 3 * window, 4 * window, 5 * window}
        assert (0, window, dontneed) in calls and (window, window, dontneed) in calls
        # the window at 4 windows is followed by dropping the one at 0, and so on
        assert calls.count((0, window, dontneed)) == 2 and calls.count((window, window, dontneed)) == 2
        assert part.size == os.fstat(part.fd).st_size == 6 * window
        calls.clear()
        part.restart()
        part.write(b"y" * window)
        assert calls == [(0, window, dontneed)]
    finally:
        part.discard()
