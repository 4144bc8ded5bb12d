"""A download's ``.part`` file beside its target, with the ``.part.json`` saying what it is
for (sha256, size, ETag), so that a later call finds it and goes on. No Textual here.

A ``.part`` that is not ours (no metadata, or metadata for another file) is never touched:
another slot, ``NAME (1).part``, is used instead. A lock (``flock``) keeps two downloads off
one ``.part``. Written data is handed to the kernel's writeback a window at a time. Every
path made here is checked to lie directly inside the (resolved) folder.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import secrets
import stat
import threading
from collections.abc import Iterable
from pathlib import Path

from tui.config import default_download_dir
from tui.downloads.errors import DownloadError
from tui.files import UnsafePathError, create_exclusive, fsync_dir, try_lock, unique_path

__all__ = ["META_FORMAT", "Part", "WRITEBACK_WINDOW", "check_folder", "disk_sentence"]

PART_SUFFIX = ".part"
META_SUFFIX = ".part.json"
META_FORMAT = "penmail-download/1"
_MAX_SLOTS = 100
_NAME_MAX = 255
_REHASH_CHUNK = 8 << 20
# Written data is handed to the kernel's writeback a window at a time (and dropped from the
# page cache a few windows later, clean by then): a big download then never piles up dirty
# pages, which the kernel answers by throttling the writer (0.2 to 1.7 s more per GiB on the
# benchmark VM, and never the same twice), and the final fsync has only the last window to
# write. Like `dd oflag=nocache`; where posix_fadvise is missing, this is skipped.
WRITEBACK_WINDOW = 8 << 20
_fadvise = getattr(os, "posix_fadvise", None)
# Never through a symlink; never blocking on a FIFO planted under our name (O_NONBLOCK does
# nothing to regular files); binary on Windows.
_OPEN_FLAGS = (getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0)
               | getattr(os, "O_BINARY", 0))
_HARD_ERRNOS = tuple(getattr(errno, n) for n in ("ENOSPC", "EDQUOT", "EROFS", "EIO") if hasattr(errno, n))


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


def disk_sentence(exc: OSError, name: str, folder: Path) -> str:
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


class Part:
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
    def claim(cls, folder: Path, name: str, doc: dict) -> "Part":
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
        if self.size - self.advised >= WRITEBACK_WINDOW:
            self._write_back(self.advised, self.size - self.advised)
            self.advised = self.size

    def _write_back(self, offset: int, length: int) -> None:
        """Start writing this window out, and drop an older one (written by now) from the cache."""
        if _fadvise is None:
            return
        try:
            _fadvise(self.fd, offset, length, os.POSIX_FADV_DONTNEED)
            older = offset - 4 * WRITEBACK_WINDOW
            if older >= 0:
                _fadvise(self.fd, older, WRITEBACK_WINDOW, os.POSIX_FADV_DONTNEED)
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
