"""Saving attachments to a folder: streamed, checked, resumable, never overwriting.

No Textual here: the UI calls :func:`download_attachment` (or :func:`download_all`) from a
worker and shows the :class:`Progress` it reports.

How one download goes:

* The file's name is ``safe_filename(attachment.filename)``; every path this module makes
  is checked to lie directly inside the (resolved) folder.
* The bytes stream into ``NAME.part`` beside the target, with a small ``NAME.part.json``
  recording what is expected (sha256, ETag, size), so that a later call -- after a lost
  connection, a cancel, or a restart of the client -- finds the ``.part`` and continues
  with ``Range: bytes=N-`` and ``If-Range: <ETag>``.  A 206 appends; a 200 means the file
  changed, and the download starts again from zero.  A ``.part`` that is not ours (no
  metadata, or metadata for another file) is never touched: another slot, ``NAME (1).part``,
  is used instead.  A lock (``flock``) keeps two downloads off one ``.part``.
* The body is read straight off its own TLS connection by a thread of its own
  (:class:`_RawBody`: large ``recv_into`` calls into a memory BIO, decryption straight into
  chunk-sized buffers) when the client uses httpx's own transport; httpx
  (``PenClient.download``) reads it otherwise, and asks again for every answer that is not a
  plain 200/206. httpx hands the body over one 16 KiB TLS record at a time, through
  httpcore, h11 and several async generators: that, not the disk or the hash, was the limit.
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
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import errno
import hashlib
import json
import os
import re
import secrets
import ssl
import stat
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import httpx

from tui.raw_body import _RawBody, _RawFallback  # noqa: F401 (tests patch them here)
from tui.config import default_download_dir
from tui.files import UnsafePathError, create_exclusive, fsync_dir, safe_filename, try_lock, unique_path
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
    "download_all",
    "download_attachment",
]

CHUNK_SIZE = 1 << 20
PART_SUFFIX = ".part"
META_SUFFIX = ".part.json"
META_FORMAT = "penmail-download/1"
PROGRESS_INTERVAL = 0.1  # seconds between two progress reports (the first and last always go)
_MAX_SLOTS = 100
_NAME_MAX = 255
_REHASH_CHUNK = 8 << 20
# Written data is handed to the kernel's writeback a window at a time (and dropped from the
# page cache a few windows later, clean by then): a big download then never piles up dirty
# pages, which the kernel answers by throttling the writer (0.2 to 1.7 s more per GiB on the
# benchmark VM, and never the same twice), and the final fsync has only the last window to
# write. Like `dd oflag=nocache`; where posix_fadvise is missing, this is skipped.
_WRITEBACK_WINDOW = 8 << 20
_fadvise = getattr(os, "posix_fadvise", None)
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
# Never through a symlink; never blocking on a FIFO planted under our name (O_NONBLOCK does
# nothing to regular files); binary on Windows.
_OPEN_FLAGS = (getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0)
               | getattr(os, "O_BINARY", 0))
_HARD_ERRNOS = tuple(getattr(errno, n) for n in ("ENOSPC", "EDQUOT", "EROFS", "EIO") if hasattr(errno, n))
_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$", re.IGNORECASE)


class DownloadError(PenError):
    """A download failed; ``message`` says why in one sentence."""


class DownloadCancelled(PenError):
    """The download was stopped on request; the part that arrived is kept to resume."""

    def __init__(self, message: str, *, part: Path | None = None, done: int = 0):
        super().__init__(message, code="cancelled")
        self.part, self.done = part, done


@dataclass(frozen=True)
class Progress:
    """One report of a download's progress (``filename`` is already safe to show)."""

    done: int
    total: int
    bytes_per_second: float
    seconds_left: float | None
    filename: str
    file_number: int = 1
    file_count: int = 1

    @property
    def fraction(self) -> float:
        return min(1.0, self.done / self.total) if self.total > 0 else 1.0


# ---------------------------------------------------------------- small helpers


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


def _fit_bytes(text: str, max_bytes: int) -> str:
    encoded = text.encode("utf-8")
    if len(encoded) <= max_bytes:
        return text
    return encoded[:max_bytes].decode("utf-8", errors="ignore").rstrip(" .") or "_"


def _slot_names(name: str) -> Iterable[tuple[str, str]]:
    """(part name, metadata name) for slot 0, 1, 2...: ``NAME.part``, ``NAME (1).part``..."""
    room = _NAME_MAX - len(META_SUFFIX.encode()) - len(f" ({_MAX_SLOTS})".encode())
    base = _fit_bytes(name, room)
    for n in range(_MAX_SLOTS):
        stem = base if n == 0 else f"{base} ({n})"
        yield stem + PART_SUFFIX, stem + META_SUFFIX


def _inside(folder: Path, path: Path) -> Path:
    """``path`` when it is one plain name directly in ``folder`` (resolved), else
    UnsafePathError. Symlinks are dealt with where files are opened (O_NOFOLLOW, O_EXCL)."""
    name = path.name
    if (path.parent != folder or name in ("", ".", "..") or os.sep in name
            or (os.altsep and os.altsep in name) or "\0" in name):
        raise UnsafePathError(f"Refusing to use {path!r}, which is not inside {folder}.")
    return path


def _pread(fd: int, size: int, offset: int) -> bytes:
    if hasattr(os, "pread"):
        return os.pread(fd, size, offset)
    os.lseek(fd, offset, os.SEEK_SET)  # pragma: no cover - Windows
    return os.read(fd, size)  # pragma: no cover


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _disk_sentence(exc: OSError, name: str, folder: Path) -> str:
    if exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", -1)):
        return (f"There is no room left in {folder} for {name}; free some space and try again "
                f"(what arrived so far is kept).")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"The folder {folder} cannot be written to; choose another folder."
    return f"Saving {name} in {folder} failed ({exc.strerror or type(exc).__name__}); try again."


def check_folder(folder: str | os.PathLike) -> Path:
    """The resolved download folder, or DownloadError with one sentence saying what is wrong."""
    path = Path(folder).expanduser()
    if not path.exists() and path == default_download_dir():
        # The platform's Downloads folder, when nobody chose another: made, as a browser
        # would (a fresh account on a server often has none). A folder the person chose
        # is never made: a typo would put files where nobody looks.
        try:
            path.mkdir(parents=True, mode=0o700, exist_ok=True)
        except OSError:
            pass  # said below
    if not path.exists():
        raise DownloadError(f"The download folder {path} does not exist; create it or choose another.",
                            code="folder_missing")
    if not path.is_dir():
        raise DownloadError(f"The download folder {path} is not a folder; choose a folder.", code="folder_invalid")
    if not os.access(path, os.W_OK | os.X_OK):
        raise DownloadError(f"The download folder {path} cannot be written to; choose another folder.",
                            code="folder_not_writable")
    return path.resolve(strict=True)


# ---------------------------------------------------------------- the .part on disk


class _Part:
    """An open, locked ``.part`` with its metadata file. Methods other than ``close``
    run in a worker thread; the writer is used by one thread at a time."""

    def __init__(self, folder: Path, part: Path, meta: Path, fd: int, meta_doc: dict):
        self.folder, self.path, self.meta, self.fd, self.doc = folder, part, meta, fd, meta_doc
        self.hasher = hashlib.sha256()
        self.size = 0
        self.advised = 0  # where the next writeback window starts
        self._closed = False
        self._close_lock = threading.Lock()

    # -- opening

    @staticmethod
    def _read_meta(meta: Path) -> dict | None:
        try:
            fd = os.open(meta, os.O_RDONLY | _OPEN_FLAGS)
        except OSError:
            return None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return None
            raw = os.read(fd, 64 << 10)
        finally:
            os.close(fd)
        try:
            doc = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return None
        if not isinstance(doc, dict) or doc.get("format") != META_FORMAT:
            return None
        return doc

    @staticmethod
    def _matches(doc: dict | None, sha256: str, size: int) -> bool:
        return bool(doc) and doc.get("sha256") == sha256 and doc.get("size") == size

    @classmethod
    def _open_existing(cls, part: Path) -> int | None:
        try:
            fd = os.open(part, os.O_RDWR | _OPEN_FLAGS)
        except OSError:
            return None
        if not stat.S_ISREG(os.fstat(fd).st_mode) or not try_lock(fd):
            os.close(fd)
            return None
        return fd

    @classmethod
    def _create(cls, path: Path, mode: int = os.O_RDWR) -> int | None:
        try:
            return os.open(path, mode | os.O_CREAT | os.O_EXCL | _OPEN_FLAGS, 0o600)
        except FileExistsError:
            return None

    @classmethod
    def claim(cls, folder: Path, name: str, doc: dict) -> "_Part":
        """Resume a matching ``.part`` when there is one, else start a new one in a free slot."""
        sha, size = doc["sha256"], doc["size"]
        slots = [(_inside(folder, folder / p), _inside(folder, folder / m)) for p, m in _slot_names(name)]
        # First a .part of this very file left by an earlier call.
        for part, meta in slots:
            if not os.path.lexists(meta):
                continue
            found = cls._read_meta(meta)
            if not cls._matches(found, sha, size):
                continue
            if os.path.lexists(part):
                fd = cls._open_existing(part)
            else:  # metadata written, .part not yet made (a crash in between)
                fd = cls._create(part)
                if fd is not None and not try_lock(fd):
                    os.close(fd)
                    fd = None
            if fd is not None:
                merged = {**found, **{k: v for k, v in doc.items() if k != "etag" or not found.get("etag")}}
                return cls(folder, part, meta, fd, merged)
        # Else a slot where neither name exists; metadata first, so a .part is never anonymous.
        for part, meta in slots:
            if os.path.lexists(part) or os.path.lexists(meta):
                continue
            mfd = cls._create(meta, os.O_WRONLY)
            if mfd is None:
                continue
            try:
                _write_all(mfd, json.dumps(doc, ensure_ascii=False).encode("utf-8"))
                os.fsync(mfd)
            finally:
                os.close(mfd)
            fd = cls._create(part)
            if fd is None or not try_lock(fd):
                if fd is not None:
                    os.close(fd)
                os.unlink(meta)
                continue
            return cls(folder, part, meta, fd, doc)
        raise DownloadError(f"There are already {_MAX_SLOTS} partial downloads named like {name} in {folder}; "
                            f"remove some and try again.", code="too_many_parts")

    # -- worker-thread operations

    def rehash_step(self, offset: int, size: int) -> int:
        block = _pread(self.fd, min(_REHASH_CHUNK, size - offset), offset)
        self.hasher.update(block)
        return len(block)

    def restart(self) -> None:
        os.ftruncate(self.fd, 0)
        os.lseek(self.fd, 0, os.SEEK_SET)
        self.hasher = hashlib.sha256()
        self.size = self.advised = 0

    def write(self, chunk: bytes) -> None:
        self.hasher.update(chunk)
        _write_all(self.fd, chunk)
        self.size += len(chunk)
        if self.size - self.advised >= _WRITEBACK_WINDOW:
            self._write_back(self.advised, self.size - self.advised)
            self.advised = self.size

    def _write_back(self, offset: int, length: int) -> None:
        """Start writing this window out, and drop an older one (written by now) from the cache."""
        if _fadvise is None:
            return
        try:
            _fadvise(self.fd, offset, length, os.POSIX_FADV_DONTNEED)
            older = offset - 4 * _WRITEBACK_WINDOW
            if older >= 0:
                _fadvise(self.fd, older, _WRITEBACK_WINDOW, os.POSIX_FADV_DONTNEED)
        except OSError:
            pass  # advice only

    def save_meta(self, changes: dict) -> None:
        """Rewrite the metadata (atomically, via a fresh temporary name)."""
        self.doc = {**self.doc, **changes}
        tmp = _inside(self.folder, self.folder / f"{self.meta.name[:200]}.{secrets.token_hex(6)}.tmp")
        fd = self._create(tmp, os.O_WRONLY)
        if fd is None:  # pragma: no cover - 48 random bits
            return
        try:
            _write_all(fd, json.dumps(self.doc, ensure_ascii=False).encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.meta)

    def finish(self, name: str) -> Path:
        """fsync, link into a name nobody has, drop the .part and its metadata, fsync the folder."""
        os.fsync(self.fd)
        final = None
        for _ in range(_MAX_SLOTS):
            candidate = _inside(self.folder, unique_path(self.folder, name))
            try:
                os.link(self.path, candidate)
            except FileExistsError:
                continue  # taken between the look and the link: next name
            except OSError as exc:
                if exc.errno in _HARD_ERRNOS:
                    raise
                break  # no hard links here (FAT, some network shares): reserve and rename
            final = candidate
            os.unlink(self.path)
            break
        if final is None:
            reserved, fd = create_exclusive(self.folder, name)
            os.close(fd)
            final = _inside(self.folder, reserved)
            os.replace(self.path, final)  # onto the empty file made for it just now
        self.close()
        try:
            os.unlink(self.meta)
        except FileNotFoundError:
            pass
        fsync_dir(self.folder)
        if final.resolve(strict=True).parent != self.folder:  # pragma: no cover - defence in depth
            raise UnsafePathError(f"{final!r} resolves outside {self.folder}.")
        return final

    def discard(self) -> None:
        self.close()
        for path in (self.path, self.meta):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        fsync_dir(self.folder)

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        with self._close_lock:
            if not self._closed:
                self._closed = True
                os.close(self.fd)  # also releases the lock


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


# ---------------------------------------------------------------- the body straight off the TLS connection

RAW_DOWNLOADS = True  # False: every download goes through httpx (PenClient.download)


# ---------------------------------------------------------------- downloading


_RETRYABLE = (Unreachable, ServerError, RateLimited)


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
        self.part: _Part | None = None
        self.etag: str | None = None
        self.server_shas: set[str] = set()
        self.inflight: asyncio.Future | None = None  # the thread working on the .part, if any
        self.finishing: asyncio.Future | None = None

    # -- the worker thread

    def _disk_error(self, exc: BaseException) -> BaseException:
        if isinstance(exc, UnsafePathError):
            return DownloadError(f"Refusing to save {self.name} outside {self.folder}.", code="unsafe_path")
        if isinstance(exc, OSError):
            return DownloadError(_disk_sentence(exc, self.name, self.folder), code="disk")
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

    async def _fetch(self) -> None:
        """One request: from what is on disk to the end (or the whole file after a 200)."""
        start = self.part.size
        if_range = self.etag or (f'"{self.expected_sha}"' if self.expected_sha else None)
        route = self.client.direct_route() if RAW_DOWNLOADS else None
        if route is not None:
            try:
                await self._fetch_raw(route, start, if_range if start else None)
                return
            except _RawFallback:
                pass  # before a byte of the body: httpx asks again, and says what went wrong
        await self._fetch_httpx(start, if_range if start else None)

    async def _fetch_raw(self, route, start: int, if_range: str | None) -> None:
        part = self.part
        base = route.base_url
        path = (base.raw_path.decode("ascii").rstrip("/")
                + f"/messages/{quote(self.message_id, safe='')}/attachments/{quote(self.att.id, safe='')}")
        headers = {"Accept-Encoding": "identity", "Authorization": route.authorization}
        if start:
            headers["Range"] = f"bytes={start}-"
            if if_range:
                headers["If-Range"] = if_range
        first = start
        body = await _RawBody.open(route, path, headers, self.chunk_size,
                                   lambda received: self.meter.update(first + received), self.client.describe_failure)
        try:
            await self._begin(body, start)
            first = part.size  # 0 after a 200 that restarted the .part
            if part.size + body.received + body.left > self.size:
                await self._fail("size")
            try:
                written = None
                while (chunk := await body.next_chunk()) is not None:
                    await self._settle()  # the chunk before this one is on disk now
                    if written is not None:
                        body.recycle(written)
                    self._start(part.write, chunk)
                    written = chunk
            except ConnectionError as exc:
                for piece in body.partial():  # keep what arrived before the connection broke
                    await self._settle()
                    self._start(part.write, piece)
                await self._settle()
                raise self.client.describe_failure(httpx.ReadError(str(exc))) from None
            await self._settle()
        finally:
            body.close()

    async def _fetch_httpx(self, start: int, if_range: str | None) -> None:
        part = self.part
        async with self.client.download(self.message_id, self.att.id, start=start,
                                        if_range=if_range) as response:
            await self._begin(response, start)
            done = part.size
            buffer = bytearray()
            try:
                # The network's pieces (a TLS record, 16 KiB, or more) are gathered into chunks
                # of chunk_size for the disk; one chunk is written and hashed in the thread
                # while the next one arrives. Identity bodies skip httpx's decoder layer.
                encoding = response.headers.get("content-encoding", "identity").strip().lower()
                pieces = response.aiter_raw() if encoding in ("", "identity") else response.aiter_bytes()
                async for piece in pieces:
                    if done + len(piece) > self.size:
                        await self._fail("size")
                    buffer += piece
                    done += len(piece)
                    if len(buffer) >= self.chunk_size:
                        await self._settle()  # the chunk before this one is on disk now
                        self._start(part.write, buffer)
                        buffer = bytearray()
                    self.meter.update(done)
            except (httpx.HTTPError, ssl.SSLError, ConnectionError):
                if buffer:  # keep what arrived before the connection broke
                    await self._settle()
                    self._start(part.write, buffer)
                    await self._settle()
                raise
            if buffer:
                await self._settle()
                self._start(part.write, buffer)
            await self._settle()

    async def run(self) -> Path:
        doc = {"format": META_FORMAT, "sha256": self.expected_sha or "", "size": self.size,
               "etag": f'"{self.expected_sha}"' if self.expected_sha else None, "filename": self.name,
               "message_id": self.message_id, "attachment_id": self.att.id}
        self.part = await self._call(_Part.claim, self.folder, self.name, doc)
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
                                      else _close_quietly(f.result()) if isinstance(f.result(), _Part) else None)
            return
        if fut is not None and not fut.done():
            fut.add_done_callback(lambda f: (_consume(f), _close_quietly(part)))
        else:
            if fut is not None:
                _consume(fut)
            _close_quietly(part)


def _close_quietly(part: _Part) -> None:
    try:
        part.close()
    except OSError:  # pragma: no cover
        pass


def _consume(fut: asyncio.Future) -> None:
    if not fut.cancelled():
        fut.exception()  # retrieved, so asyncio does not log it as never retrieved


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
    folder = await asyncio.to_thread(check_folder, folder)
    job = _Download(client, message_id, attachment, folder, progress=progress, chunk_size=chunk_size,
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


async def download_all(client: PenClient, message, folder: str | os.PathLike, *,
                       progress: Callable[[Progress], None] | None = None, cancel: asyncio.Event | None = None,
                       chunk_size: int = CHUNK_SIZE, retries: int = 4, retry_delay: float = 0.5) -> list[Path]:
    """Save every attachment of ``message`` (a pen_client.Message) in turn; returns their
    paths in order. When one fails, the error carries ``saved`` (the paths saved so far)."""
    saved: list[Path] = []
    attachments = list(message.attachments)
    for number, attachment in enumerate(attachments, 1):
        try:
            saved.append(await download_attachment(client, message.id, attachment, folder, progress=progress,
                                                   cancel=cancel, chunk_size=chunk_size, retries=retries,
                                                   retry_delay=retry_delay, _number=number,
                                                   _count=len(attachments)))
        except PenError as exc:
            exc.saved = list(saved)
            raise
    return saved
