"""Saving attachments to a folder: streamed, checked, resumable, never overwriting.

No Textual here: the UI calls :func:`download_attachment` (or :func:`download_all`) from a
worker and shows the :class:`Progress` it reports.

How one download goes:

* The file's name is ``safe_filename(attachment.filename)``; every path this module makes
  is checked to lie directly inside the (resolved) folder.
* The bytes stream into ``NAME.part`` beside the target (``part``), with a small ``NAME.part.json``
  recording what is expected (sha256, ETag, size), so that a later call -- after a lost
  connection, a cancel, or a restart of the client -- finds the ``.part`` and continues
  with ``Range: bytes=N-`` and ``If-Range: <ETag>``.  A 206 appends; a 200 means the file
  changed, and the download starts again from zero.  A ``.part`` that is not ours (no
  metadata, or metadata for another file) is never touched: another slot, ``NAME (1).part``,
  is used instead.  A lock (``flock``) keeps two downloads off one ``.part``.
* The body comes from one of two fetchers (``fetch``): straight off its own TLS connection
  by a thread of its own (``raw_tls``: large ``recv_into`` calls into a memory BIO,
  decryption straight into chunk-sized buffers) when the client uses httpx's own transport;
  through httpx (``PenClient.download``) otherwise, and for every answer that is not a plain
  200/206. httpx hands the body over one 16 KiB TLS record at a time, through httpcore, h11
  and several async generators: that, not the disk or the hash, was the limit. Both feed
  the one writer here.
* Writing and hashing happen in a worker thread (one chunk in flight while the next is
  read), so the event loop keeps drawing; a few chunks of 1 MiB are held, reused. Each
  8 MiB written is handed to the kernel's writeback at once (posix_fadvise), so dirty pages
  never pile up (the kernel throttles a writer that lets them) and the final fsync is short.
* A lost connection (or a 5xx / 429) is retried a few times with growing delays, within
  the same call; each retry resumes from what is on disk.
* At the end the size and sha256 are checked against the attachment, the ETag and the
  Repr-Digest; the file is fsynced and linked into place under a name nobody has (``NAME
  (1).ext`` when ``NAME`` is taken; never overwriting), and the folder is fsynced.  A
  mismatch deletes the ``.part`` and raises :class:`DownloadError`.
* The ``cancel`` event stops the download with :class:`DownloadCancelled`; cancelling the
  task raises :class:`asyncio.CancelledError` as asyncio expects.  Both keep the ``.part``.

The package also holds ``opener`` (opening a saved file with the system's opener). No
Textual; may import the client library, never the UI.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import os
import re
import time
from collections.abc import Callable
from contextlib import aclosing
from pathlib import Path

from tui.downloads.errors import DownloadCancelled, DownloadError, Progress
from tui.downloads.fetch import Body, BodyBroken, Fetcher, HttpxFetcher
from tui.downloads.part import META_FORMAT, Part, check_folder, disk_sentence
from tui.downloads.raw_tls import RawFallback, RawFetcher
from tui.files import UnsafePathError, existing_copies, safe_filename
from tui.pen_client import (
    Attachment,
    NotFound,
    PenClient,
    PenError,
    RateLimited,
    ServerError,
    Unreachable,
)

__all__ = [
    "CHUNK_SIZE",
    "DownloadCancelled",
    "DownloadError",
    "Progress",
    "already_saved",
    "check_folder",
    "download_all",
    "save_attachment",
    "download_attachment",
]

CHUNK_SIZE = 1 << 20
PROGRESS_INTERVAL = 0.1  # seconds between two progress reports (the first and last always go)
RAW_DOWNLOADS = True  # False: every download goes through httpx (PenClient.download)
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$", re.IGNORECASE)
_RETRYABLE = (Unreachable, ServerError, RateLimited)


# ---------------------------------------------------------------- checksums the server states


def _etag_sha(etag: str | None) -> str | None:
    """The sha256 in an ETag ``"<hex>"`` (weak ones do not count), else None."""
    if not etag:
        return None
    value = etag.strip()
    if value.startswith("W/"):
        return None
    value = value.strip('"').lower()
    return value if _HEX64.match(value) else None


def _digest_sha(header: str | None) -> str | None:
    """The sha-256 of a ``Repr-Digest: sha-256=:<base64>:`` header (RFC 9530), as hex."""
    if not header:
        return None
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        if key.strip().lower() != "sha-256":
            continue
        value = value.strip()
        if len(value) < 2 or value[0] != ":" or value[-1] != ":":
            return None
        try:
            raw = base64.b64decode(value[1:-1], validate=True)
        except (binascii.Error, ValueError):
            return None
        return raw.hex() if len(raw) == 32 else None
    return None


# ---------------------------------------------------------------- progress


class _Meter:
    def __init__(self, callback, filename: str, total: int, number: int, count: int):
        self.callback, self.filename, self.total = callback, filename, total
        self.number, self.count, self.interval = number, count, PROGRESS_INTERVAL
        self.rate = 0.0
        self._mark_time = time.monotonic()
        self._mark_done: int | None = None
        self._last_report = -1e9

    def start(self, done: int) -> None:
        self._mark_time, self._mark_done = time.monotonic(), done

    def update(self, done: int, *, force: bool = False) -> None:
        now = time.monotonic()
        if self._mark_done is None or done < self._mark_done:
            self.start(done)
        elapsed = now - self._mark_time
        if elapsed >= 0.25:  # an exponentially smoothed rate over quarter-second windows
            sample = (done - self._mark_done) / elapsed
            self.rate = sample if self.rate == 0 else 0.7 * self.rate + 0.3 * sample
            self._mark_time, self._mark_done = now, done
        if self.callback is None or (not force and now - self._last_report < self.interval):
            return
        self._last_report = now
        left = max(self.total - done, 0)
        seconds_left = 0.0 if left == 0 else (left / self.rate if self.rate > 0 else None)
        self.callback(Progress(done, self.total, self.rate, seconds_left, self.filename, self.number, self.count))


# ---------------------------------------------------------------- downloading


class _Download:
    def __init__(self, client: PenClient, message_id: str, attachment: Attachment, folder: Path, *,
                 progress, chunk_size: int, retries: int, retry_delay: float, number: int, count: int):
        self.client, self.message_id, self.att, self.folder = client, message_id, attachment, folder
        self.name = safe_filename(attachment.filename)
        self.chunk_size, self.retries, self.retry_delay = max(int(chunk_size), 1 << 12), retries, retry_delay
        sha = (attachment.sha256 or "").lower()
        self.expected_sha = sha if _HEX64.match(sha) else None
        self.size = attachment.size
        self.meter = _Meter(progress, self.name, attachment.size, number, count)
        self.part: Part | None = None
        self.etag: str | None = None
        self.server_shas: set[str] = set()
        self.inflight: asyncio.Future | None = None  # the thread working on the .part, if any
        self.finishing: asyncio.Future | None = None
        self.body_first = 0  # where the body being received starts in the file (for progress)

    # -- the worker thread

    def _disk_error(self, exc: BaseException) -> BaseException:
        if isinstance(exc, UnsafePathError):
            return DownloadError(f"Refusing to save {self.name} outside {self.folder}.", code="unsafe_path")
        if isinstance(exc, OSError):
            return DownloadError(disk_sentence(exc, self.name, self.folder), code="disk")
        return exc

    def _start(self, fn, *args) -> asyncio.Future:
        """Run ``fn`` in a worker thread; one at a time, so the .part has one user."""
        self.inflight = asyncio.ensure_future(asyncio.to_thread(fn, *args))
        return self.inflight

    async def _settle(self) -> None:
        """Wait for the thread in flight (a chunk being written), raising its error. Cancelled
        meanwhile, the thread goes on and stays ``inflight``, for ``quiesce`` and ``release``."""
        fut = self.inflight
        if fut is None:
            return
        try:
            await asyncio.shield(fut)
        except (OSError, UnsafePathError) as exc:
            raise self._disk_error(exc) from exc
        finally:
            if fut.done() and self.inflight is fut:
                self.inflight = None

    async def _call(self, fn, *args):
        await self._settle()
        fut = self._start(fn, *args)
        await self._settle()
        return fut.result()

    async def _settle_quietly(self) -> bool:
        """Settle, and say whether what is on disk still matches the running hash."""
        try:
            await self._settle()
            return True
        except DownloadError:
            return False

    # -- pieces

    def _mismatch(self, why: str) -> DownloadError:
        if why == "size":
            return DownloadError(f"{self.name} arrived with a different size than the server gave, so it was "
                                 f"not kept; try again.", code="size_mismatch")
        return DownloadError("The file arrived with a different checksum than the server gave, so it was not "
                             "kept; try again.", code="checksum_mismatch")

    async def _fail(self, why: str) -> None:
        """Keep nothing, and say why."""
        await self._settle_quietly()
        await self._call(self.part.discard)
        raise self._mismatch(why)

    async def _rehash(self) -> int:
        """Hash the .part on disk, a few MiB per trip to the thread; returns its size."""
        part = self.part
        size = await self._call(lambda: os.fstat(part.fd).st_size)
        part.hasher = hashlib.sha256()
        offset = 0
        if size <= self.size:
            while offset < size:
                got = await self._call(part.rehash_step, offset, size)
                if not got:
                    break
                offset += got
        if offset != size:  # longer than the file can be (or it shrank under us): start again
            await self._call(part.restart)
            return 0
        await self._call(os.lseek, part.fd, offset, os.SEEK_SET)
        part.size = part.advised = offset
        return offset

    def _learn(self, response) -> None:
        """Take the checksums the server states for this file."""
        etag = response.headers.get("etag")
        for sha in (_etag_sha(etag), _digest_sha(response.headers.get("repr-digest"))):
            if sha:
                self.server_shas.add(sha)
        if etag and not etag.strip().startswith("W/"):
            self.etag = etag.strip()

    def _range_start(self, response) -> tuple[int, int | None]:
        match = _CONTENT_RANGE.match(response.headers.get("content-range", ""))
        if not match:
            raise DownloadError(f"The server answered part of {self.name} without saying which part; try again.",
                                code="protocol")
        return int(match.group(1)), None if match.group(3) == "*" else int(match.group(3))

    async def _begin(self, response, start: int) -> None:
        """Check an answer's head against what was asked for, before a byte of its body."""
        part = self.part
        self._learn(response)
        if response.status_code == 206:
            first, total = self._range_start(response)
            if first != start:
                raise DownloadError(f"The server answered another part of {self.name} than was asked for; "
                                    f"try again.", code="protocol")
        else:  # 200: the whole file (after an If-Range mismatch: it changed, what we had is no use)
            if start:
                await self._call(part.restart)
            length = response.headers.get("content-length")
            total = int(length) if length and length.isdigit() else None
        if total is not None and total != self.size:
            await self._fail("size")
        if self.etag and self.etag != part.doc.get("etag"):
            await self._call(part.save_meta, {"etag": self.etag})
        self.meter.start(part.size)

    def _fetchers(self) -> list[Fetcher]:
        """The raw TLS fetcher first when the client allows one, then httpx."""
        route = self.client.direct_route() if RAW_DOWNLOADS else None
        raw = [RawFetcher(route, self.chunk_size, self.client.describe_failure)] if route is not None else []
        return [*raw, HttpxFetcher(self.client, self.chunk_size)]

    def _received(self, received: int) -> None:
        self.meter.update(self.body_first + received)

    async def _fetch(self) -> None:
        """One request: from what is on disk to the end (or the whole file after a 200)."""
        start = self.part.size
        if_range = (self.etag or (f'"{self.expected_sha}"' if self.expected_sha else None)) if start else None
        for fetcher in self._fetchers():
            self.body_first = start
            try:
                async with fetcher.open(self.message_id, self.att.id, start, if_range, self._received) as body:
                    await self._begin(body, start)
                    await self._write(body)
                return
            except RawFallback:
                continue  # before a byte of the body: httpx asks again, and says what went wrong

    async def _write(self, body: Body) -> None:
        """The one writer: each chunk is written and hashed in the thread while the next one
        arrives; when the connection breaks, what arrived is kept before the error is raised."""
        part = self.part
        self.body_first = end = part.size  # 0 after a 200 that restarted the .part
        if body.length is not None and part.size + body.length > self.size:
            await self._fail("size")
        written = None
        async with aclosing(body.chunks()) as chunks:
            try:
                async for chunk in chunks:
                    end += len(chunk)
                    if end > self.size:
                        await self._fail("size")
                    await self._settle()  # the chunk before this one is on disk now
                    if written is not None:
                        body.recycle(written)
                    self._start(part.write, chunk)
                    written = chunk
            except BodyBroken as broken:
                for piece in body.partial():  # keep what arrived before the connection broke
                    end += len(piece)
                    if end > self.size:
                        await self._fail("size")
                    await self._settle()
                    self._start(part.write, piece)
                await self._settle()
                raise broken.error from None
        await self._settle()

    async def run(self) -> Path:
        doc = {"format": META_FORMAT, "sha256": self.expected_sha or "", "size": self.size,
               "etag": f'"{self.expected_sha}"' if self.expected_sha else None, "filename": self.name,
               "message_id": self.message_id, "attachment_id": self.att.id}
        self.part = await self._call(Part.claim, self.folder, self.name, doc)
        self.etag = self.part.doc.get("etag")
        if await self._rehash():
            self.meter.update(self.part.size, force=True)
        failures, asked = 0, False
        while self.part.size < self.size or not (asked or self.size):  # an empty file is asked for once
            asked = True
            before = self.part.size
            try:
                await self._fetch()
            except _RETRYABLE as exc:
                consistent = await self._settle_quietly()
                failures = 1 if self.part.size > before else failures + 1
                if failures > self.retries:
                    raise
                delay = min(self.retry_delay * (2 ** (failures - 1)), 30.0)
                if exc.retry_after:
                    delay = max(delay, min(exc.retry_after, 60.0))
                await asyncio.sleep(delay)
                if not consistent:  # a write failed half way: what is on disk is the truth
                    await self._rehash()
                continue
            except PenError as exc:
                await self._settle_quietly()
                if exc.status == 416 and failures < self.retries:
                    failures += 1  # the server's file is shorter than what we have: start again
                    await self._call(self.part.restart)
                    continue
                if isinstance(exc, NotFound) and not self.part.closed:
                    await self._call(self.part.discard)  # gone from the server: nothing to resume
                raise
            break
        return await self._verify_and_finish()

    async def _verify_and_finish(self) -> Path:
        part = self.part
        if part.size != self.size:
            await self._fail("size")
        actual = part.hasher.hexdigest()
        expected = ({self.expected_sha} if self.expected_sha else set()) | self.server_shas
        if not expected:
            await self._call(part.discard)
            raise DownloadError(f"The server gave no checksum for {self.name}, so it could not be checked and "
                                f"was not kept.", code="no_checksum")
        if expected != {actual}:
            await self._fail("checksum")
        self.meter.update(part.size, force=True)
        # The move goes on in its thread even if this task is cancelled meanwhile.
        self.finishing = self._start(part.finish, self.name)
        try:
            return await asyncio.shield(self.finishing)
        except (OSError, UnsafePathError) as exc:
            raise self._disk_error(exc) from exc

    async def finished(self) -> Path:
        """The result of the move that was under way when the download was stopped."""
        try:
            return await self.finishing
        except (OSError, UnsafePathError) as exc:
            raise self._disk_error(exc) from exc

    async def quiesce(self) -> None:
        """Let a chunk being written finish (a few ms), so that the .part on disk matches
        ``part.size`` and is unlocked as soon as the caller hears that the download stopped.
        Cancelled again meanwhile, it leaves the rest to ``release``."""
        fut = self.inflight
        if fut is not None and not fut.done():
            try:
                await asyncio.shield(fut)
            except asyncio.CancelledError:
                raise
            except BaseException:
                pass

    def release(self) -> None:
        """Close the .part once no thread uses it (a cancelled write may still be running)."""
        part, fut = self.part, self.inflight
        if part is None:
            if fut is not None:  # stopped while claiming: close what the claim opens, if anything
                fut.add_done_callback(lambda f: None if f.cancelled() or f.exception() is not None
                                      else _close_quietly(f.result()) if isinstance(f.result(), Part) else None)
            return
        if fut is not None and not fut.done():
            fut.add_done_callback(lambda f: (_consume(f), _close_quietly(part)))  # type: ignore[func-returns-value]
        else:
            if fut is not None:
                _consume(fut)
            _close_quietly(part)


def _close_quietly(part: Part) -> None:
    try:
        part.close()
    except OSError:  # pragma: no cover
        pass


def _consume(fut: asyncio.Future) -> None:
    if not fut.cancelled():
        fut.exception()  # retrieved, so asyncio does not log it as never retrieved


def already_saved(folder: str | os.PathLike, attachment: Attachment) -> Path | None:
    """A file already in ``folder`` under the attachment's name (or a numbered copy of it)
    with its size and sha256, so that saving it again need write no copy; None when there
    is none (or the attachment has no sha256 to compare). Reads files: call it in a thread."""
    if not re.fullmatch(r"[0-9a-f]{64}", attachment.sha256 or ""):
        return None
    for path in existing_copies(Path(folder), attachment.filename):
        try:
            if path.stat().st_size != attachment.size:
                continue
            with open(path, "rb") as f:
                if hashlib.file_digest(f, "sha256").hexdigest() == attachment.sha256:
                    return path
        except OSError:
            continue
    return None


async def download_attachment(client: PenClient, message_id: str, attachment: Attachment,
                              folder: str | os.PathLike, *, progress: Callable[[Progress], None] | None = None,
                              cancel: asyncio.Event | None = None, chunk_size: int = CHUNK_SIZE,
                              retries: int = 4, retry_delay: float = 0.5, _number: int = 1,
                              _count: int = 1) -> Path:
    """Save one attachment in ``folder`` and return its path (see the module's docstring).

    Raises DownloadError (folder, disk, size or checksum), DownloadCancelled (``cancel``
    was set; the .part is kept), asyncio.CancelledError (the task was cancelled; the
    .part is kept), or another PenError from the client (not signed in, not found, the
    server unreachable after ``retries`` tries).
    """
    checked = await asyncio.to_thread(check_folder, folder)
    job = _Download(client, message_id, attachment, checked, progress=progress, chunk_size=chunk_size,
                    retries=retries, retry_delay=retry_delay, number=_number, count=_count)
    stopped = False

    def stopped_message() -> DownloadCancelled:
        done = job.part.size if job.part else 0
        return DownloadCancelled(f"The download of {job.name} was stopped; what arrived so far is kept, so it "
                                 f"can go on later.", part=job.part.path if job.part else None, done=done)

    if cancel is not None and cancel.is_set():
        raise stopped_message()
    task = asyncio.current_task()
    watcher = None
    if cancel is not None and task is not None:
        async def watch() -> None:
            nonlocal stopped
            await cancel.wait()
            stopped = True
            task.cancel()

        watcher = asyncio.create_task(watch())
    try:
        try:
            return await job.run()
        except asyncio.CancelledError:
            if not stopped or task.uncancel() > 0:  # the task itself was cancelled
                await job.quiesce()
                raise
            if job.finishing is not None:  # stopped while moving the finished file into place
                return await job.finished()
            await job.quiesce()  # so the .part is complete and unlocked when this returns
            raise stopped_message() from None
    finally:
        if watcher is not None:
            watcher.cancel()
        job.release()


async def save_attachment(client: PenClient, message_id: str, attachment: Attachment,
                          folder: str | os.PathLike, **options) -> tuple[Path, bool]:
    """The attachment in ``folder``: the copy already there with its sha256 (True: nothing
    was written), else a new download (False). The TUI and line mode both save this way, so
    saving twice never makes "name (1).pdf" with the same bytes. ``options`` go to
    download_attachment."""
    if os.path.isdir(folder):
        found = await asyncio.to_thread(already_saved, folder, attachment)
        if found is not None:
            return found, True
    return await download_attachment(client, message_id, attachment, folder, **options), False


async def download_all(client: PenClient, message, folder: str | os.PathLike, *,
                       progress: Callable[[Progress], None] | None = None, cancel: asyncio.Event | None = None,
                       chunk_size: int = CHUNK_SIZE, retries: int = 4,
                       retry_delay: float = 0.5) -> list[tuple[Path, bool]]:
    """Save every attachment of ``message`` (a pen_client.Message) in turn (save_attachment);
    returns (path, already saved) in order. When one fails, the error carries ``saved`` (the
    paths saved so far)."""
    saved: list[tuple[Path, bool]] = []
    attachments = list(message.attachments)
    for number, attachment in enumerate(attachments, 1):
        try:
            saved.append(await save_attachment(client, message.id, attachment, folder, progress=progress,
                                               cancel=cancel, chunk_size=chunk_size, retries=retries,
                                               retry_delay=retry_delay, _number=number, _count=len(attachments)))
        except PenError as exc:
            exc.saved = [path for path, _ in saved]  # type: ignore[attr-defined]  # saved before it failed
            raise
    return saved
