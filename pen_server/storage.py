"""Attachment bytes, addressed by sha256, behind one small interface (`BlobStore`) with two
kinds: a folder of the data folder (the default) and an S3-compatible bucket
(pen_server/storage_s3.py). Names come from the hash, never from a file name; an upload
streams to a temporary blob while it is hashed and is put in place under its hash once
its rows are committed (`commit_temp`); an identical blob is stored once."""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from pathlib import Path

import anyio

from pen_server.errors import ApiError
from pen_server.private import DIR_MODE, FILE_MODE, make_private_dir

_HEX = re.compile(r"^[0-9a-f]{64}$")
READ_CHUNK = 1 << 20  # a download goes out in pieces of this size (64 KiB leaves most of a link idle)


class StoreUnavailable(ApiError):
    """The blob store did not answer: a 503 with one sentence (its cause goes to the log)."""

    def __init__(self, message: str = "The PEN's file storage does not answer; try again in a minute, "
                                      "and tell the PEN's administrator if it lasts."):
        super().__init__(503, "unavailable", message, headers={"Retry-After": "60"})


def blob_key(sha256: str) -> str:
    """The blob's name inside the store: ab/cd/abcd... (a folder never holds too many)."""
    if not _HEX.match(sha256):
        raise ValueError("not a sha256")
    return f"{sha256[:2]}/{sha256[2:4]}/{sha256}"


def temp_name() -> str:
    return f"upload-{secrets.token_hex(16)}"


class TempBlob(ABC):
    """An upload being written: `write` its bytes (from a worker thread: it may block), then
    `finish` (they are durable), or `discard` (any time, more than once)."""

    name: str

    @abstractmethod
    def write(self, chunk: bytes) -> None: ...

    @abstractmethod
    def finish(self) -> None: ...

    @abstractmethod
    def discard(self) -> None: ...


class BlobStore(ABC):
    """Where attachment bytes live. The synchronous methods may block (call them from a
    worker thread); `read`, `check` and `close` are for the event loop."""

    @abstractmethod
    def new_temp(self) -> TempBlob: ...

    @abstractmethod
    def commit_temp(self, temp: TempBlob, sha256: str) -> None:
        """Put a finished upload in place under its hash (or drop it when that blob is
        there already). The caller has committed the rows that keep the blob first."""

    @abstractmethod
    def size(self, sha256: str) -> int | None:
        """The blob's size in bytes, None when it is not there; StoreUnavailable when the
        store does not answer."""

    def exists(self, sha256: str) -> bool:
        return self.size(sha256) is not None

    @abstractmethod
    def read(self, sha256: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes | memoryview]:
        """The bytes start..end (both included; None: to its end) of a blob, in pieces (bytes
        or a memoryview of them) as they are read."""

    @abstractmethod
    def remove(self, sha256: str) -> None:
        """Remove a blob (nothing when it is not there)."""

    @abstractmethod
    def clean_temp(self, older_than: float) -> int:
        """Remove uploads left unfinished more than `older_than` seconds ago (a crash's);
        younger ones may be uploads another process is making. Returns how many."""

    @abstractmethod
    async def check(self) -> None:
        """Raise StoreUnavailable, with a sentence saying why, unless the store answers."""

    @abstractmethod
    async def close(self) -> None:
        """Let go of connections (at shutdown)."""

    @abstractmethod
    def describe(self) -> str:
        """Where the blobs are, for the log (never a credential)."""


class _LocalTemp(TempBlob):
    def __init__(self, folder: Path):
        self.name = temp_name()
        self.path = folder / self.name
        self._out = os.fdopen(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE), "wb",
                              buffering=0)

    def write(self, chunk: bytes) -> None:
        self._out.write(chunk)

    def finish(self) -> None:
        os.fsync(self._out.fileno())
        self._out.close()

    def discard(self) -> None:
        if not self._out.closed:
            self._out.close()
        self.path.unlink(missing_ok=True)


class LocalBlobStore(BlobStore):
    """Blobs as files under DATA/blobs (ab/cd/<sha256>), uploads under DATA/tmp until hashed."""

    def __init__(self, root: Path, tmp: Path):
        self.root, self.tmp = root, tmp
        make_private_dir(root)
        make_private_dir(tmp)

    def path(self, sha256: str) -> Path:
        return self.root / blob_key(sha256)

    def new_temp(self) -> _LocalTemp:
        return _LocalTemp(self.tmp)

    def commit_temp(self, temp: TempBlob, sha256: str) -> None:
        assert isinstance(temp, _LocalTemp)
        final = self.path(sha256)
        if final.is_file():
            temp.discard()
            return
        final.parent.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        os.replace(temp.path, final)

    def size(self, sha256: str) -> int | None:
        try:
            return self.path(sha256).stat().st_size
        except FileNotFoundError:
            return None

    async def read(self, sha256: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes | memoryview]:
        async with await anyio.open_file(self.path(sha256), "rb") as f:
            await f.seek(start)
            left = None if end is None else end - start + 1
            while left is None or left > 0:
                piece = await f.read(READ_CHUNK if left is None else min(READ_CHUNK, left))
                if not piece:
                    if left is None:
                        return
                    raise OSError(f"blob {sha256} ended {left} bytes early")
                if left is not None:
                    left -= len(piece)
                yield piece

    def remove(self, sha256: str) -> None:
        self.path(sha256).unlink(missing_ok=True)

    def clean_temp(self, older_than: float) -> int:
        cutoff, removed = time.time() - older_than, 0
        for leftover in self.tmp.glob("upload-*"):
            try:
                if leftover.stat().st_mtime < cutoff:
                    leftover.unlink()
                    removed += 1
            except FileNotFoundError:
                pass
        return removed

    async def check(self) -> None:
        def writable() -> bool:
            return os.access(self.root, os.W_OK | os.X_OK) and os.access(self.tmp, os.W_OK | os.X_OK)

        if not await anyio.to_thread.run_sync(writable):
            raise StoreUnavailable(f"The blob folder {self.root} (or {self.tmp}) is missing or not writable.")

    async def close(self) -> None:
        pass  # no connections

    def describe(self) -> str:
        return f"the folder {self.root}"


def open_store(settings) -> BlobStore:
    """The store the settings name: an S3 bucket with [storage] url, else the data folder's."""
    if settings.storage.url:
        from pen_server.storage_s3 import S3BlobStore

        return S3BlobStore(settings.storage)
    return LocalBlobStore(settings.blob_dir, settings.tmp_dir)


class Hasher:
    """sha256 and size of a stream, for both the blob name and the digest header."""

    def __init__(self):
        self.sha = hashlib.sha256()
        self.size = 0

    def update(self, chunk: bytes) -> None:
        self.sha.update(chunk)
        self.size += len(chunk)
