"""Files on disk: safe local names, atomic writes, durable renames, and locks. No Textual.

Names: attachments are named by the server (that is, by a sender).

A sender chooses every attachment's name, so a name may try to climb out of the download
folder (``../../.ssh/authorized_keys``), hide (``.bashrc``), pose as a device on Windows
(``nul.txt``), reverse itself with bidi controls, carry escape sequences, or be too long
for the file system.  This module owns:

* ``safe_filename`` -- one harmless path component for any input;
* ``unique_path`` / ``create_exclusive`` -- never overwrite an existing file;
* ``parse_content_disposition`` -- the name in an RFC 6266 header.

Writing: ``write_atomic`` replaces a state file whole (temporary file, fsync, rename, fsync
of the folder); ``fsync_dir`` makes a rename or an unlink in a folder durable. Locks:
``try_lock`` and ``lock_within`` take an advisory ``flock`` on an open file (where there is
no ``fcntl``, they succeed without one: nothing is guarded).
"""

from __future__ import annotations

import errno
import os
import re
import stat
import tempfile
import time
import unicodedata
from pathlib import Path
from urllib.parse import unquote

from tui.safe_text import clean

try:  # POSIX; elsewhere the locks below guard nothing
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "MAX_NAME_BYTES",
    "UnsafePathError",
    "create_exclusive",
    "existing_copies",
    "fsync_dir",
    "lock_within",
    "parse_content_disposition",
    "safe_filename",
    "try_lock",
    "unique_path",
    "write_atomic",
]

MAX_NAME_BYTES = 255  # NAME_MAX of ext4, APFS, NTFS (in UTF-16 units there, bytes are stricter)
_MAX_EXT_BYTES = 16  # a longer "extension" is just part of the name
_MAX_COPIES = 10_000

# Characters Windows, FAT/exFAT (USB sticks) or macOS Finder refuse or treat specially.
# Linux accepts them, but a downloaded file is often copied elsewhere.
_PORTABILITY = re.compile(r'[<>:"|?*\\/]')
_WINDOWS_RESERVED = re.compile(
    r"^(con|prn|aux|nul|conin\$|conout\$|com[0-9¹²³]|lpt[0-9¹²³])$", re.IGNORECASE
)
_SPACES = re.compile(r"\s+")


class UnsafePathError(ValueError):
    """A file would have been created outside the folder it was meant for."""


def _split_ext(name: str) -> tuple[str, str]:
    """("report", ".pdf") for "report.pdf"; no extension when it is long or the name is all dots."""
    dot = name.rfind(".")
    if dot <= 0:
        return name, ""
    ext = name[dot:]
    if len(ext.encode("utf-8")) > _MAX_EXT_BYTES or ext == ".":
        return name, ""
    return name[:dot], ext


def _truncate_bytes(s: str, max_bytes: int) -> str:
    """``s`` cut to at most ``max_bytes`` of UTF-8, on a character boundary."""
    encoded = s.encode("utf-8")
    if len(encoded) <= max_bytes:
        return s
    return encoded[: max(max_bytes, 0)].decode("utf-8", errors="ignore")


def _fit(stem: str, ext: str, suffix: str = "", max_bytes: int = MAX_NAME_BYTES) -> str:
    """stem + suffix + ext within ``max_bytes``, shortening the stem first."""
    room = max_bytes - len(ext.encode("utf-8")) - len(suffix.encode("utf-8"))
    if room < 1:  # cannot happen with the limits above, but keep the name non-empty
        return _truncate_bytes(stem + suffix + ext, max_bytes)
    stem = _truncate_bytes(stem, room).rstrip(" .") or "_"
    return stem + suffix + ext


def safe_filename(name: str, fallback: str = "download") -> str:
    """One harmless file name (a single path component) made from ``name``.

    Only the last component (after ``/`` or ``\\``) is kept; escape sequences, controls
    and bidi characters are removed; leading dots and spaces and trailing dots and spaces
    are stripped, so nothing is hidden and "." / ".." cannot occur; Windows device names
    (CON, nul.txt, LPT9.pdf) get a leading underscore; the result is at most 255 bytes of
    UTF-8 and keeps its extension.  ``fallback`` is used when nothing is left.
    """
    if not isinstance(name, str):
        name = ""
    text = unicodedata.normalize("NFC", clean(name, keep_newlines=False))
    # The last non-empty path component, whichever separator the sender used.
    parts = [p for p in re.split(r"[/\\]", text) if p.strip(" .")]
    text = parts[-1] if parts else ""
    text = _PORTABILITY.sub("_", text)
    text = _SPACES.sub(" ", text).strip(" .")
    if not text:
        if fallback == "download" or not isinstance(fallback, str):
            return "download"
        return safe_filename(fallback)
    stem, ext = _split_ext(text)
    # "nul.txt" and "NUL .tar.gz" are devices too: Windows looks at the part before the first dot.
    if _WINDOWS_RESERVED.match(text.split(".", 1)[0].rstrip(" ")):
        stem = "_" + stem
    return _fit(stem, ext)


def _candidate(name: str, n: int) -> str:
    if n == 0:
        return name
    stem, ext = _split_ext(name)
    return _fit(stem, ext, f" ({n})")


def unique_path(folder: Path, name: str) -> Path:
    """A path in ``folder`` for ``name`` that does not exist yet: "name (1).ext", "name (2).ext"...

    This only looks; between this call and creating the file another process may take
    the name, so prefer ``create_exclusive`` when writing.
    """
    safe = safe_filename(name)
    for n in range(_MAX_COPIES):
        path = Path(folder) / _candidate(safe, n)
        if not os.path.lexists(path):
            return path
    raise FileExistsError(f"There are already {_MAX_COPIES} files named like {safe} in {folder}.")


def existing_copies(folder: Path, name: str) -> list[Path]:
    """The regular files (not links) already in ``folder`` under ``name``'s safe form and its
    numbered copies ("name.ext", "name (1).ext", ...), up to the first name that is free."""
    safe = safe_filename(name)
    found = []
    for n in range(_MAX_COPIES):
        path = Path(folder) / _candidate(safe, n)
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            break
        if stat.S_ISREG(info.st_mode):
            found.append(path)
    return found


def create_exclusive(folder: Path, name: str) -> tuple[Path, int]:
    """Create a new, empty file for ``name`` in ``folder`` and return (path, open fd).

    The file is made with O_CREAT|O_EXCL (mode 0o600), so an existing file -- or a
    symlink planted under that name -- is never opened or overwritten; a taken name moves
    on to "name (1).ext" and so on.  The caller owns the descriptor (write, then close).
    """
    base = Path(folder).resolve(strict=True)
    safe = safe_filename(name)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    flags |= getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
    for n in range(_MAX_COPIES):
        path = base / _candidate(safe, n)
        # safe_filename cannot produce a separator or "..", but check what is created,
        # not what was intended: this is the last line before the disk.
        if path.parent != base or path.name in ("", ".", ".."):
            raise UnsafePathError(f"Refusing to create {path!r} outside {base}.")
        try:
            fd = os.open(path, flags, 0o600)
        except FileExistsError:
            continue
        if path.resolve().parent != base:  # pragma: no cover - defence in depth
            os.close(fd)
            raise UnsafePathError(f"Refusing to write {path!r}, which resolves outside {base}.")
        return path, fd
    raise FileExistsError(f"There are already {_MAX_COPIES} files named like {safe} in {base}.")


def _split_params(header: str) -> list[tuple[str, str]]:
    """``; name=value`` pairs of a header, with quoted strings (and ``\\`` escapes) decoded."""
    params: list[tuple[str, str]] = []
    i, n = 0, len(header)
    # Skip the disposition type ("attachment" / "inline").
    while i < n and header[i] != ";":
        i += 1
    while i < n:
        i += 1  # past ";"
        eq = header.find("=", i)
        semi = header.find(";", i)
        if eq == -1 or (semi != -1 and semi < eq):
            if semi == -1:
                break
            i = semi
            continue
        key = header[i:eq].strip().lower()
        i = eq + 1
        while i < n and header[i] in " \t":
            i += 1
        if i < n and header[i] == '"':
            i += 1
            value = []
            while i < n and header[i] != '"':
                if header[i] == "\\" and i + 1 < n:
                    i += 1
                value.append(header[i])
                i += 1
            i += 1  # past the closing quote (or the end)
            params.append((key, "".join(value)))
            while i < n and header[i] != ";":
                i += 1
        else:
            end = header.find(";", i)
            end = n if end == -1 else end
            params.append((key, header[i:end].strip()))
            i = end
    return params


def _decode_ext_value(value: str) -> str | None:
    """RFC 8187 ``charset'lang'percent-encoded``; UTF-8 and ISO-8859-1 only."""
    parts = value.split("'", 2)
    if len(parts) != 3:
        return None
    charset = parts[0].strip().lower()
    if charset not in ("utf-8", "iso-8859-1"):
        return None
    try:
        return unquote(parts[2], encoding=charset, errors="strict")
    except (UnicodeDecodeError, LookupError):
        return None


def parse_content_disposition(header: str | None) -> str | None:
    """The file name a Content-Disposition header gives, made safe with ``safe_filename``.

    ``filename*`` (RFC 6266 / 8187, percent-encoded UTF-8) wins over ``filename``
    wherever each appears.  Returns None when the header names no file.
    """
    if not header or not isinstance(header, str):
        return None
    header = header[:8192]  # a file name is far shorter; do not parse megabytes
    plain: str | None = None
    extended: str | None = None
    for key, value in _split_params(header):
        if key == "filename*" and extended is None:
            extended = _decode_ext_value(value)
        elif key == "filename" and plain is None:
            plain = value
    raw = extended if extended is not None else plain
    if raw is None:
        return None
    return safe_filename(raw)


# ---------------------------------------------------------------- durable writes


def fsync_dir(folder: Path) -> None:
    """Make a rename or unlink in ``folder`` durable; not every platform can open a folder,
    and some file systems refuse to fsync one (then this does nothing)."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:  # pragma: no cover - e.g. Windows cannot open a directory
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so that a crash at any moment leaves old or new, whole.

    The file is private to the user (mode 0o600, as ``mkstemp`` creates it).
    """
    path = Path(path)
    folder = path.parent
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())  # the bytes are on disk before the name points at them
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    fsync_dir(folder)


# ---------------------------------------------------------------- locks


def try_lock(fd: int) -> bool:
    """An exclusive ``flock`` on ``fd`` now, or False when another holds it (True where
    there is no fcntl). Closing the file releases it."""
    if fcntl is None:  # pragma: no cover
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False


def lock_within(fd: int, seconds: float, *, stop=None, poll: float = 0.05) -> bool:
    """Try to lock ``fd`` until ``seconds`` have passed (or ``stop``, a threading.Event, is
    set); False when it could not be had, or when the file system cannot lock at all."""
    if fcntl is None:  # pragma: no cover
        return True
    deadline = time.monotonic() + seconds
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return False  # ENOLCK and the like: this file system cannot lock
        if time.monotonic() >= deadline:
            return False
        if stop is not None:
            if stop.wait(poll):
                return False
        else:
            time.sleep(poll)
