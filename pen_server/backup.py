"""`pen-server backup`, `backup --verify` and `restore`: a running SQLite PEN copied
consistently, checked, and brought back into a new data folder.

What a backup holds, and in which order it is taken:
1. The database, through SQLite's online backup API, in steps, inside one read transaction
   held on the source from the first step to the last. The PEN's database is always in WAL
   mode (db.make_engine), where a reader never holds a writer back: the server goes on
   writing meanwhile, and the held transaction is the snapshot. (Without it, a stepped
   backup starts again from the first page whenever another connection writes between two
   steps, and under a steady writer never ends.)
2. The attachment blobs that the copied rows name (the `blobs` and `attachments` tables),
   and no others. A blob is never rewritten in place: an upload is hashed in tmp/ and
   renamed to its sha256 (storage.py), so the bytes under a name never change. The rows
   commit *before* the rename (api/attachments.py, store_upload), so a blob of the snapshot
   may not be in place yet: it is looked for again for up to BLOB_WAIT_SECONDS. The hourly
   clean-up (app.py, remove_stale_uploads) may delete an upload no message took, its blob
   row and file after the snapshot: such a blob is dropped from the copied database the
   same way, and the backup shows the PEN as the clean-up left it.
3. The data folder's other files: pen-server.toml, secret.key, tls/, dkim/ and any other
   file there (a secret key file, say), but neither logs nor tmp/.
4. manifest.json, last: every file's size and sha256, the schema revision, and a checksum
   of the manifest itself. A backup is written under a temporary name beside PATH and
   renamed to PATH only once whole, so a backup stopped half-way (kill -9, a full disk) is
   never at PATH, and `--verify` and `restore` refuse what has no manifest.

PATH is a folder (laid out as a data folder, plus manifest.json), or one file: a tar
archive when it ends in .tar, and a zstd-compressed one (the `zstandard` package) for
.tar.zst. Everything is written 0700/0600: a backup holds every key of the PEN.
"""

from __future__ import annotations

import glob
import hashlib
import io
import json
import os
import re
import shutil
import sqlite3
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import IO, BinaryIO

from pen_server.private import DIR_MODE, FILE_MODE, make_private_dir
from pen_server.settings import CONFIG_NAME, Settings
from pen_server.storage import blob_key

MANIFEST = "manifest.json"
DATABASE = "pen.db"
PG_DUMP = "pen.pgdump"  # a PostgreSQL PEN's database, pg_dump's custom format
FORMAT = "pen-backup"
VERSION = 1
STEP_PAGES = 2048  # pages the online backup copies in one step (8 MiB at SQLite's 4 KiB pages)
BLOB_WAIT_SECONDS = 10.0  # how long a blob whose row committed may take to be put in place
CHUNK = 1 << 20
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
ZSTD_LEVEL = 3  # zstd's default: attachments (PDF, JPEG) barely compress; the database does
DOCS = 'docs/operating.md, "Backups"'
_HEX = re.compile(r"^[0-9a-f]{64}$")
_LOG_NAME = re.compile(r".*\.log(\.\d+)?(\.gz|\.zst)?$")
_SKIPPED = {"blobs", "tmp"}  # the blobs go by the rows that name them; tmp/ holds unfinished uploads


class BackupError(Exception):
    """One sentence for the administrator."""


@dataclass
class Made:
    path: Path
    files: int
    size: int
    blobs: int
    revision: str
    seconds: float
    warnings: list[str] = field(default_factory=list)


@dataclass
class Checked:
    manifest: dict
    files: int
    size: int
    notes: list[str] = field(default_factory=list)


@dataclass
class Restored:
    data: Path
    revision: str
    migrated_from: str | None
    waiting: int
    notes: list[str] = field(default_factory=list)


def _kind(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(".tar.zst"):
        return "tar.zst"
    if name.endswith(".tar"):
        return "tar"
    return "folder"


def _sqlite_path(url: str) -> Path | None:
    return Path(url[len("sqlite:///"):]) if url.startswith("sqlite:///") else None


def mib(size: int) -> str:
    return f"{size / (1 << 20):,.1f} MiB"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _copy(src: IO[bytes], dst: IO[bytes] | None, size: int | None = None) -> tuple[int, str]:
    """Copy `src` to `dst` (None: only read it), `size` bytes or to its end; returns the
    size and sha256 of what was read."""
    sha, done = hashlib.sha256(), 0
    while size is None or done < size:
        piece = src.read(CHUNK if size is None else min(CHUNK, size - done))
        if not piece:
            break
        sha.update(piece)
        if dst is not None:
            try:
                dst.write(piece)
            except OSError as exc:  # not to be taken for a backup that cannot be read
                raise BackupError(f"Writing {getattr(dst, 'name', 'a file')} failed ({exc.strerror or exc}).") \
                    from None
        done += len(piece)
    return done, sha.hexdigest()


def _private_opener(path: str, flags: int) -> int:
    return os.open(path, flags, FILE_MODE)


def _new_private_file(path: Path) -> BinaryIO:
    """A new file of mode 0600 (whatever the umask), in a folder made 0700 if need be."""
    make_private_dir(path.parent)
    return open(path, "xb", opener=_private_opener)


def _checksum(manifest: dict) -> str:
    rest = {k: v for k, v in manifest.items() if k != "checksum"}
    return hashlib.sha256(json.dumps(rest, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


# -- writing ------------------------------------------------------------------------------------


class _Out:
    """Where the files of a backup go: a folder or a tar stream. `add` copies `src` (of
    `size` bytes) under `rel` and returns its size and sha256."""

    def add(self, rel: str, src: IO[bytes], size: int) -> tuple[int, str]:
        raise NotImplementedError

    def add_manifest(self, data: bytes) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def abort(self) -> None:
        raise NotImplementedError


class _FolderOut(_Out):
    def __init__(self, root: Path):
        self.root = root
        root.mkdir(mode=DIR_MODE)
        os.chmod(root, DIR_MODE)
        self.dirs: set[Path] = {root}

    def _file(self, rel: str) -> BinaryIO:
        path = self.root / rel
        self.dirs.add(path.parent)
        return _new_private_file(path)

    def add(self, rel: str, src: IO[bytes], size: int) -> tuple[int, str]:
        with self._file(rel) as out:
            done = _copy(src, out, size)
            out.flush()
            os.fsync(out.fileno())
        return done

    def add_manifest(self, data: bytes) -> None:
        self.add(MANIFEST, io.BytesIO(data), len(data))

    def close(self) -> None:
        for folder in sorted(self.dirs, key=lambda p: len(p.parts), reverse=True):
            _fsync_dir(folder)

    def abort(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


class _Hashing:
    """A file object that hashes what tarfile reads through it."""

    def __init__(self, src: IO[bytes]):
        self.src, self.sha, self.size = src, hashlib.sha256(), 0

    def read(self, n: int = -1) -> bytes:
        piece = self.src.read(n)
        self.sha.update(piece)
        self.size += len(piece)
        return piece


class _TarOut(_Out):
    def __init__(self, path: Path, compress: bool):
        self.path = path
        self.file = open(path, "xb", opener=_private_opener)
        self.zstd = None
        stream: IO[bytes] = self.file
        if compress:
            import zstandard

            self.zstd = zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_checksum=True).stream_writer(
                self.file, closefd=False)
            stream = self.zstd  # type: ignore[assignment]
        self.tar = tarfile.open(fileobj=stream, mode="w|", format=tarfile.PAX_FORMAT)
        self.now = int(time.time())

    def _info(self, rel: str, size: int) -> tarfile.TarInfo:
        info = tarfile.TarInfo(rel)
        info.size, info.mode, info.mtime, info.type = size, FILE_MODE, self.now, tarfile.REGTYPE
        return info

    def add(self, rel: str, src: IO[bytes], size: int) -> tuple[int, str]:
        hashing = _Hashing(src)
        self.tar.addfile(self._info(rel, size), hashing)  # reads exactly `size` bytes, or raises
        return hashing.size, hashing.sha.hexdigest()

    def add_manifest(self, data: bytes) -> None:
        self.tar.addfile(self._info(MANIFEST, len(data)), io.BytesIO(data))

    def close(self) -> None:
        self.tar.close()
        if self.zstd is not None:
            self.zstd.close()
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()

    def abort(self) -> None:
        for closing in (self.tar.close, *([self.zstd.close] if self.zstd is not None else []), self.file.close):
            try:
                closing()
            except Exception:
                pass
        self.path.unlink(missing_ok=True)


def _put_in_place(partial: Path, to: Path) -> None:
    """The whole backup under its name, never over another that appeared meanwhile (a second
    backup to the same PATH): a file by a hard link (which fails when the name is taken),
    a folder by a rename (which fails over a folder that holds files)."""
    if partial.is_dir():
        os.rename(partial, to)
        return
    try:
        os.link(partial, to)
    except FileExistsError:
        raise BackupError(f"Another backup was written to {to} meanwhile; this one was not kept.") from None
    except OSError:  # a file system without hard links
        if to.exists():
            raise BackupError(f"Another backup was written to {to} meanwhile; this one was not kept.") from None
        os.rename(partial, to)
        return
    partial.unlink()


def _partial_name(path: Path, pid: int) -> Path:
    return path.parent / f".{path.name}.partial-{pid}"


def _remove_stale_partials(path: Path) -> None:
    """What a backup to the same PATH left when it was killed (its process is gone)."""
    for leftover in path.parent.glob(f".{glob.escape(path.name)}.partial-*"):
        pid = leftover.name.rpartition("-")[2].split(".")[0]
        if not pid.isdigit() or _alive(int(pid)):
            continue
        if leftover.is_dir() and not leftover.is_symlink():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            leftover.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _check_target(settings: Settings, to: Path) -> Path:
    to = to.expanduser().absolute()
    if to.exists() or to.is_symlink():
        raise BackupError(f"There is already something at {to}; give a new name (a backup never replaces another).")
    data = settings.data_dir.resolve()
    parent = to.parent.resolve()
    if parent == data or data in parent.parents:
        raise BackupError(f"The backup cannot go inside the data folder {data}; put it somewhere else "
                          f"(another disk or host is best).")
    if not to.parent.exists():
        make_private_dir(to.parent)
    return to


def refusal(settings: Settings, pg_dump: bool = False, without_blobs: bool = False) -> str | None:
    """The sentence with which `backup` refuses a PEN whose parts live elsewhere (or options
    that do not fit it)."""
    postgres = not settings.database_url.startswith("sqlite:///")
    if postgres and not pg_dump:
        return ("This PEN's database is PostgreSQL, which pen-server backup copies only through pg_dump: add "
                f"--pg-dump, or back it up with pgBackRest as {DOCS} describes.")
    if pg_dump and not postgres:
        return "--pg-dump is for a PEN on PostgreSQL; this one's database is SQLite, which backup copies itself."
    if settings.storage.url and not without_blobs:
        return (f"This PEN keeps its attachments in the bucket {settings.storage.url}, which pen-server backup "
                f"does not copy: back it up with the bucket's versioning or rclone sync as {DOCS} describes, and "
                f"the rest of the PEN with --without-blobs.")
    if without_blobs and not settings.storage.url:
        return ("--without-blobs is for a PEN whose attachments are in a bucket; this one keeps them in its data "
                "folder, and a backup without them would not restore.")
    return None


@dataclass
class _Snapshot:
    """The database as one moment saw it: its copy's name in the backup, the schema
    revision, the blobs its rows name, and what to do with a blob the clean-up removed
    after that moment (`drop`: True when the copy lost its rows too)."""
    name: str
    revision: str
    named: list[str]
    live_has: Callable[[str], bool]
    drop: Callable[[str], bool]


def backup(settings: Settings, to: Path, *, pg_dump: bool = False, without_blobs: bool = False,
           on_blob: Callable[[int, int], None] | None = None) -> Made:
    """Copy the PEN of `settings` to `to` (a new folder, .tar or .tar.zst), as the module
    says. `pg_dump`: its PostgreSQL database through pg_dump; `without_blobs`: not the
    attachments (they are in a bucket). `on_blob(done, total)` is called after each blob
    (for tests and progress)."""
    started = time.monotonic()
    refused = refusal(settings, pg_dump, without_blobs)
    if refused:
        raise BackupError(refused)
    db_path = _sqlite_path(settings.database_url)
    if db_path is not None and not db_path.is_file():
        raise BackupError(f"There is no database at {db_path}; is {settings.data_dir} a PEN's data folder?")
    to = _check_target(settings, to)
    _remove_stale_partials(to)
    kind = _kind(to)
    partial = _partial_name(to, os.getpid())
    out: _Out = _FolderOut(partial) if kind == "folder" else _TarOut(partial, kind == "tar.zst")
    name = DATABASE if db_path is not None else PG_DUMP
    # The database's copy: inside the folder backup, else a file beside the tar until it goes in.
    db_copy = partial / name if kind == "folder" else partial.with_name(partial.name + ".db")
    files: dict[str, dict] = {}
    warnings: list[str] = []
    problems: dict[str, str] = {}
    try:
        with _snapshot(settings, db_path, db_copy) as snap:
            for rel, path in _data_files(settings, db_path):
                with open(path, "rb") as src:
                    size, sha = out.add(rel, src, os.fstat(src.fileno()).st_size)
                files[rel] = {"size": size, "sha256": sha}
            if not without_blobs:
                problems = _copy_blobs(snap, settings.blob_dir, out, files, on_blob)
        for sha, problem in problems.items():
            if problem == "missing":
                warnings.append(f"the attachment blob {sha} is missing in the PEN itself, so the backup cannot hold "
                                f"it either (the backup keeps its rows; the file is lost unless an older backup has "
                                f"it)")
            elif problem == "damaged":
                warnings.append(f"the attachment blob {sha} is damaged in the PEN itself (its bytes no longer have "
                                f"that sha256); the backup holds it as it is, and an older backup may hold it whole")
        with open(db_copy, "rb") as src:
            if kind == "folder":
                files[name] = dict(zip(("size", "sha256"), _copy(src, None)))
            else:
                size, sha = out.add(name, src, os.fstat(src.fileno()).st_size)
                files[name] = {"size": size, "sha256": sha}
        if kind != "folder":
            db_copy.unlink()
        blob_count = sum(1 for rel in files if rel.startswith("blobs/"))
        manifest = {
            "format": FORMAT, "version": VERSION, "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "pen": settings.name, "source": str(settings.data_dir), "schema_revision": snap.revision,
            "database": name, "blobs": blob_count,
            "source_problems": [{"blob": sha, "problem": p} for sha, p in sorted(problems.items())],
            "files": [{"path": rel, **files[rel]} for rel in sorted(files)],
        }
        if without_blobs:
            manifest["blobs_in"] = settings.storage.url
        if name == PG_DUMP:  # the dump is not read back here: the blobs its rows name, as listed then
            manifest["named_blobs"] = snap.named
        manifest["checksum"] = _checksum(manifest)
        out.add_manifest(json.dumps(manifest, indent=1).encode() + b"\n")
        out.close()
        _put_in_place(partial, to)
        _fsync_dir(to.parent)
    except BaseException as exc:
        out.abort()
        if kind != "folder":
            db_copy.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise BackupError(f"The backup could not be written ({exc.strerror or exc}"
                              f"{': ' + str(exc.filename) if exc.filename else ''}); nothing was left at {to}.") \
                from None
        raise
    return Made(to, len(files), (to.stat().st_size if kind != "folder" else sum(f["size"] for f in files.values())),
                blob_count, snap.revision, time.monotonic() - started, warnings)


@contextmanager
def _snapshot(settings: Settings, db_path: Path | None, into: Path) -> Iterator[_Snapshot]:
    """The database copied to `into`: SQLite's online backup, or pg_dump."""
    if db_path is None:
        from pen_server import pgdump

        with _new_private_file(into):
            pass  # pg_dump writes into it, keeping its mode
        with pgdump.dump(settings.database_url, into) as (revision, named, live_has):
            yield _Snapshot(PG_DUMP, revision, named, live_has, lambda sha: False)
        return
    revision = _copy_database(db_path, into)
    copy = sqlite3.connect(str(into), isolation_level=None)
    try:
        def live_has(sha: str) -> bool:
            live = sqlite3.connect(str(db_path), isolation_level=None, timeout=30)
            try:
                return live.execute("SELECT 1 FROM blobs WHERE sha256 = ?", (sha,)).fetchone() is not None
            finally:
                live.close()

        def drop(sha: str) -> bool:
            copy.execute("BEGIN")
            copy.execute("DELETE FROM attachments WHERE sha256 = ? AND message_id IS NULL", (sha,))
            copy.execute("DELETE FROM blobs WHERE sha256 = ? AND NOT EXISTS "
                         "(SELECT 1 FROM attachments WHERE attachments.sha256 = blobs.sha256)", (sha,))
            copy.execute("COMMIT")
            return sha not in _named_blobs(copy)

        yield _Snapshot(DATABASE, revision, sorted(_named_blobs(copy)), live_has, drop)
    finally:
        copy.close()


def _copy_database(db_path: Path, into: Path) -> str:
    """The online backup of `db_path` into the new file `into`, inside one read transaction
    on the source (the snapshot); returns the copy's schema revision. The copy is a plain
    rollback-journal database (no -wal beside it) and passes SQLite's quick_check."""
    with _new_private_file(into):
        pass  # SQLite keeps the mode of an existing file
    src = sqlite3.connect(str(db_path), isolation_level=None, timeout=30)
    try:
        src.execute("BEGIN")
        src.execute("SELECT count(*) FROM sqlite_master").fetchone()  # the read transaction starts here
        dst = sqlite3.connect(str(into), isolation_level=None)
        try:
            src.backup(dst, pages=STEP_PAGES, sleep=0.05)
            dst.execute("PRAGMA journal_mode=DELETE").fetchone()
            checked = dst.execute("PRAGMA quick_check").fetchone()[0]
            if checked != "ok":
                raise BackupError(f"The copy of the database fails SQLite's check ({checked}); the PEN's own "
                                  f"database may be damaged: run PRAGMA integrity_check on {db_path}.")
            row = dst.execute("SELECT version_num FROM alembic_version").fetchone()
        finally:
            dst.close()
    except sqlite3.Error as exc:
        raise BackupError(f"The database {db_path} could not be copied ({exc}).") from None
    finally:
        src.close()
    with open(into, "rb+") as f:
        os.fsync(f.fileno())
    if row is None:
        raise BackupError(f"The database {db_path} has no schema revision; is it a PEN's database?")
    return str(row[0])


def _data_files(settings: Settings, db_path: Path | None) -> Iterator[tuple[str, Path]]:
    """The data folder's files but the database, blobs/, tmp/ and logs: the settings, the
    server's secret, the TLS and DKIM keys, and whatever else the administrator keeps there."""
    data = settings.data_dir
    skip = {db_path.name + suffix for suffix in ("", "-wal", "-shm", "-journal")} \
        if db_path is not None and db_path.parent == data else set()
    log_file = settings.log_file.resolve() if settings.log_file else None
    seen: set[Path] = set()
    for folder, dirs, names in os.walk(data, followlinks=True):
        here = Path(folder)
        real = here.resolve()
        if real in seen:  # a symlink loop
            dirs[:] = []
            continue
        seen.add(real)
        if here == data:
            dirs[:] = [d for d in dirs if d not in _SKIPPED]
        dirs.sort()
        for name in sorted(names):
            path = here / name
            rel = path.relative_to(data).as_posix()
            if (here == data and name in skip) or _LOG_NAME.match(name) or path.resolve() == log_file:
                continue
            if path.is_file():  # a symlink is followed: the backup holds the file itself
                yield rel, path


def _named_blobs(db: sqlite3.Connection) -> set[str]:
    return {row[0] for row in db.execute("SELECT sha256 FROM blobs UNION SELECT sha256 FROM attachments")}


def _copy_blobs(snap: _Snapshot, blob_dir: Path, out: _Out, files: dict[str, dict],
                on_blob: Callable[[int, int], None] | None) -> dict[str, str]:
    """Every blob the snapshot's rows name, into `out`; returns the blobs the PEN itself
    lacks or holds damaged, and those the clean-up removed after the snapshot that the copy
    still names ({sha256: "missing" | "damaged" | "cleaned"})."""
    problems: dict[str, str] = {}
    total, done = len(snap.named), 0

    def take(sha: str) -> bool:
        nonlocal done
        rel = f"blobs/{blob_key(sha)}"
        try:
            src = open(blob_dir / blob_key(sha), "rb")
        except FileNotFoundError:
            return False
        with src:  # the bytes under a name never change: the open file is the blob
            size, got = out.add(rel, src, os.fstat(src.fileno()).st_size)
        files[rel] = {"size": size, "sha256": got}
        if got != sha:
            problems[sha] = "damaged"
        done += 1
        if on_blob is not None:
            on_blob(done, total)
        return True

    waiting = [sha for sha in snap.named if not take(sha)]
    deadline = time.monotonic() + BLOB_WAIT_SECONDS
    while waiting:
        # Gone from the PEN's own rows since the snapshot: the clean-up took an upload no
        # message named. The copy loses it the same way (SQLite), or says so (a dump).
        for sha in [sha for sha in waiting if not snap.live_has(sha)]:
            if not snap.drop(sha):
                problems[sha] = "cleaned"
            waiting.remove(sha)
        # Else its row committed and the file is about to be put in place (or is lost).
        waiting = [sha for sha in waiting if not take(sha)]
        if waiting and time.monotonic() > deadline:
            problems.update({sha: "missing" for sha in waiting})
            break
        if waiting:
            time.sleep(0.2)
    return problems


# -- reading ------------------------------------------------------------------------------------


def _safe_rel(rel: object) -> str | None:
    """A relative path inside the backup (no absolute path, no '..'), else None."""
    if not isinstance(rel, str) or not rel or "\x00" in rel or "\\" in rel:
        return None
    parts = PurePosixPath(rel).parts
    if rel.startswith("/") or any(p in ("", ".", "..") for p in parts) or PurePosixPath(*parts).as_posix() != rel:
        return None
    return rel


def _load_manifest(data: bytes, where: str) -> dict:
    try:
        manifest = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise BackupError(f"The manifest of {where} is not readable JSON: the backup is damaged.") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BackupError(f"{where} is not a pen-server backup (its manifest says no {FORMAT!r}).")
    if manifest.get("version") != VERSION:
        raise BackupError(f"{where} is a backup of format version {manifest.get('version')!r}, which this "
                          f"pen-server does not read (it reads {VERSION}).")
    if manifest.get("checksum") != _checksum(manifest):
        raise BackupError(f"The manifest of {where} does not match its own checksum: it was changed or damaged.")
    entries = manifest.get("files")
    if not isinstance(entries, list):
        raise BackupError(f"The manifest of {where} lists no files: the backup is damaged.")
    for entry in entries:
        if not isinstance(entry, dict) or _safe_rel(entry.get("path")) is None or entry["path"] == MANIFEST \
                or not isinstance(entry.get("size"), int) or not isinstance(entry.get("sha256"), str):
            raise BackupError(f"The manifest of {where} lists a file it should not ({str(entry)[:80]}): the "
                              f"backup is damaged.")
    if manifest.get("database") not in (DATABASE, PG_DUMP) or manifest["database"] not in {e["path"] for e in entries}:
        raise BackupError(f"The manifest of {where} lists no database: the backup is damaged.")
    return manifest


_NOT_WHOLE = "it is not a whole backup (one that was stopped half-way, or not a pen-server backup)"


def _read(source: Path, place: Callable[[str], Path | None]) -> tuple[dict, dict[str, tuple[int, str]]]:
    """Read every file of the backup at `source` once, hashing it, and write it where
    `place(rel)` says (None: nowhere). Returns the manifest and what was read
    ({rel: (size, sha256)}); raises BackupError for a backup that cannot be read."""
    if not source.exists():
        raise BackupError(f"There is no backup at {source}.")
    read: dict[str, tuple[int, str]] = {}

    def keep(rel: str, src: IO[bytes], size: int | None) -> None:
        target = place(rel)
        if target is None:
            read[rel] = _copy(src, None, size)
            return
        with _new_private_file(target) as out:
            read[rel] = _copy(src, out, size)
            out.flush()
            os.fsync(out.fileno())

    if source.is_dir():
        try:
            raw = (source / MANIFEST).read_bytes()
        except FileNotFoundError:
            raise BackupError(f"{source} has no {MANIFEST}: {_NOT_WHOLE}.") from None
        manifest = _load_manifest(raw, str(source))
        for entry in manifest["files"]:
            path = source / entry["path"]
            try:
                with open(path, "rb") as src:
                    keep(entry["path"], src, None)
            except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
                continue  # reported by _compare, in the manifest's order
        return manifest, read
    manifest_raw: bytes | None = None
    try:
        with open(source, "rb") as f:
            stream: IO[bytes] = f
            magic = f.read(4)
            f.seek(0)
            if magic == ZSTD_MAGIC:  # by its content, whatever the name says
                import zstandard

                stream = zstandard.ZstdDecompressor().stream_reader(f)  # type: ignore[assignment]
            with tarfile.open(fileobj=stream, mode="r|") as tar:
                for member in tar:
                    rel = _safe_rel(member.name)
                    if rel is None or not member.isreg() or rel in read or (rel == MANIFEST and manifest_raw):
                        raise BackupError(f"{source} holds {member.name[:100]!r}, which no pen-server backup "
                                          f"holds: it was changed, or is not a pen-server backup.")
                    member_file = tar.extractfile(member)
                    assert member_file is not None
                    if rel == MANIFEST:
                        manifest_raw = member_file.read(1 << 26)
                    else:
                        keep(rel, member_file, member.size)
    except BackupError:
        raise
    except (tarfile.TarError, OSError, EOFError, ValueError) as exc:
        raise BackupError(f"{source} cannot be read to its end ({exc or type(exc).__name__}): {_NOT_WHOLE}.") \
            from None
    except Exception as exc:  # zstandard.ZstdError: a damaged or cut compressed stream
        raise BackupError(f"{source} cannot be read to its end ({exc or type(exc).__name__}): {_NOT_WHOLE}.") \
            from None
    if manifest_raw is None:
        raise BackupError(f"{source} has no {MANIFEST}: {_NOT_WHOLE}.")
    return _load_manifest(manifest_raw, str(source)), read


def _compare(source: Path, manifest: dict, read: dict[str, tuple[int, str]]) -> None:
    """Every file the manifest lists was read, with its size and sha256; nothing else was."""
    listed = {e["path"] for e in manifest["files"]}
    for entry in manifest["files"]:
        rel = entry["path"]
        if rel not in read:
            raise BackupError(f"{rel} is missing from the backup {source}, which its manifest lists.")
        size, sha = read[rel]
        if size != entry["size"]:
            raise BackupError(f"{rel} in the backup {source} has {size} bytes, not the {entry['size']} its manifest "
                              f"lists: the file was cut short or changed.")
        if sha != entry["sha256"]:
            raise BackupError(f"{rel} in the backup {source} has the sha256 {sha}, not the {entry['sha256']} its "
                              f"manifest lists: the file was changed or damaged.")
    extra = sorted(set(read) - listed)
    if extra:
        raise BackupError(f"The backup {source} holds {extra[0]}, which its manifest does not list: it was changed.")


def _check_blobs(source: Path, manifest: dict, named: set[str]) -> list[str]:
    """Each blob in the backup holds what its name says, and every blob the database's rows
    name (`named`) is there, or was missing or damaged in the PEN itself, as the manifest
    says, or lives in a bucket. Returns notes for the administrator."""
    known = {p["blob"]: p["problem"] for p in manifest.get("source_problems") or [] if isinstance(p, dict)}
    blobs = {e["path"]: e["sha256"] for e in manifest["files"] if e["path"].startswith("blobs/")}
    for rel, sha in blobs.items():
        name = rel.rpartition("/")[2]
        if sha != name and known.get(name) != "damaged":
            raise BackupError(f"{rel} in the backup {source} does not hold the blob its name says (its sha256 is "
                              f"{sha}): it was damaged before the backup was made.")
    if manifest.get("blobs_in"):
        return [f"the attachment blobs are not in this backup but in the bucket {manifest['blobs_in']}, kept with "
                f"its own tools"]
    unnamed = sorted(rel for rel in blobs if rel.rpartition("/")[2] not in named)
    if unnamed:
        raise BackupError(f"The backup {source} holds {unnamed[0]}, a blob no row of its database names: it was "
                          f"changed.")
    for sha in sorted(named):
        if not _HEX.match(sha):
            raise BackupError(f"The database in the backup {source} names an attachment blob {sha[:80]!r}, which "
                              f"is no sha256.")
        if f"blobs/{blob_key(sha)}" not in blobs and sha not in known:
            raise BackupError(f"The database in the backup {source} names the attachment blob {sha}, which the "
                              f"backup does not hold.")
    said = {"missing": "was missing in the PEN", "damaged": "was damaged in the PEN",
            "cleaned": "was removed by the PEN's clean-up of unsent uploads"}
    return [f"the attachment blob {sha} {said.get(problem, problem)} when this backup was made"
            for sha, problem in sorted(known.items())]


def _check_database(db: Path, source: Path, manifest: dict) -> list[str]:
    """The backup's SQLite database passes SQLite's check and has the manifest's schema
    revision; then _check_blobs with the blobs its rows name. A pg_dump is checked by its
    sha256 only, against the blobs the manifest says its rows name."""
    if manifest.get("database") == PG_DUMP:
        named = manifest.get("named_blobs")
        if not isinstance(named, list) or not all(isinstance(sha, str) for sha in named):
            raise BackupError(f"The manifest of {source} does not list the blobs its database names: the backup "
                              f"is damaged.")
        return _check_blobs(source, manifest, set(named))
    try:
        conn = sqlite3.connect(f"file:{db.as_posix()}?mode=ro&immutable=1", uri=True)
    except sqlite3.Error as exc:
        raise BackupError(f"The database in the backup {source} cannot be opened ({exc}).") from None
    try:
        checked = conn.execute("PRAGMA quick_check").fetchone()[0]
        if checked != "ok":
            raise BackupError(f"The database in the backup {source} fails SQLite's check ({checked}).")
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        if row is None or str(row[0]) != manifest.get("schema_revision"):
            raise BackupError(f"The database in the backup {source} is at schema revision {row and row[0]}, not "
                              f"the {manifest.get('schema_revision')} its manifest lists.")
        named = _named_blobs(conn)
    except sqlite3.Error as exc:
        raise BackupError(f"The database in the backup {source} cannot be read ({exc}).") from None
    finally:
        conn.close()
    return _check_blobs(source, manifest, named)


@contextmanager
def _scratch() -> Iterator[Path]:
    """A private folder in the system's temporary folder (TMPDIR), removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="pen-verify-"))
    try:
        os.chmod(folder, DIR_MODE)
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def verify(source: Path) -> Checked:
    """Read the backup at `source` whole: every file's size and sha256 against the manifest,
    the database's check and schema revision, every blob its rows name. BackupError names
    the first problem."""
    source = source.expanduser().absolute()
    if source.is_dir():
        manifest, read = _read(source, lambda rel: None)
        _compare(source, manifest, read)
        notes = _check_database(source / DATABASE, source, manifest)
    else:
        with _scratch() as scratch:
            manifest, read = _read(source, lambda rel: scratch / DATABASE if rel == DATABASE else None)
            _compare(source, manifest, read)
            notes = _check_database(scratch / DATABASE, source, manifest)
    return Checked(manifest, len(read), sum(size for size, _ in read.values()), notes)


# -- restoring ----------------------------------------------------------------------------------


def _revisions() -> tuple[list[str], str]:
    """The schema revisions this pen-server knows, oldest first, and the newest."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from pen_server.db import MIGRATIONS

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    script = ScriptDirectory.from_config(cfg)
    known = [rev.revision for rev in script.walk_revisions()][::-1]
    return known, script.get_current_head() or known[-1]


def _restore_target(source: Path, data: Path, database_url: str | None) -> str | None:
    """Refuse a target folder that holds files, a backup that is not there and a
    --database-url that is not PostgreSQL's; the URL checked and normalised."""
    if data.exists() or data.is_symlink():
        if not data.is_dir():
            raise BackupError(f"{data} is a file, not a folder; restore into a new or empty folder.")
        if any(data.iterdir()):
            raise BackupError(f"{data} holds files already; restore into a new or empty folder (nothing was "
                              f"written).")
    if not source.exists():
        raise BackupError(f"There is no backup at {source}.")
    if database_url:
        from pen_server.initpen import InitError, check_database_url

        try:
            database_url = check_database_url(database_url)
        except InitError as exc:
            raise BackupError(str(exc)) from None
        if not database_url.startswith("postgresql"):
            raise BackupError("--database-url is for an empty PostgreSQL database, postgresql+psycopg://...")
    return database_url


def _database_kind(source: Path, manifest: dict, database_url: str | None) -> bool:
    """True for a backup with a pg_dump; refuses one that does not fit --database-url."""
    pg = manifest["database"] == PG_DUMP
    if pg and not database_url:
        raise BackupError(f"The backup {source} holds a PostgreSQL database (pg_dump): give --database-url with "
                          f"an empty PostgreSQL database to restore it into.")
    if database_url and not pg:
        raise BackupError(f"The backup {source} holds a SQLite database: restore it without --database-url "
                          f"(then pen-server migrate-to moves it to PostgreSQL).")
    return pg


def _schema_revision(source: Path, manifest: dict) -> tuple[str, str]:
    """The backup's schema revision and this pen-server's newest; refuses a revision it does
    not know (a backup of a newer pen-server)."""
    revision = str(manifest["schema_revision"])
    known, head = _revisions()
    if revision not in known:
        raise BackupError(f"The backup {source} is of schema revision {revision}, which this pen-server does "
                          f"not know (its newest is {head}): restore it with the pen-server that made it, or "
                          f"a newer one.")
    return revision, head


def _refuse_tables(database_url: str) -> None:
    """The database at `database_url` opens and holds no tables (a restore never writes into
    one that does, nor empties it afterwards)."""
    from pen_server.db import existing_tables

    try:
        found = existing_tables(database_url)
    except Exception as exc:
        raise BackupError(f"Could not open the database at --database-url "
                          f"({str(getattr(exc, 'orig', None) or exc).splitlines()[0]}).") from None
    if found:
        raise BackupError(f"The database at --database-url already holds {len(found)} tables; restore "
                          f"only into an empty one (nothing was written).")


def restore(source: Path, data: Path, database_url: str | None = None) -> Restored:
    """Bring the backup at `source` back as the PEN in `data` (a new or empty folder): every
    file checked against the manifest while it is written, the database checked, migrated
    forward when the backup is of an older schema, and the folder moved into place in one
    rename at the end, so a failure leaves `data` as it was. A backup with a pg_dump goes
    into the empty PostgreSQL database at `database_url`."""
    source, data = source.expanduser().absolute(), data.expanduser().absolute()
    database_url = _restore_target(source, data, database_url)
    data.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{data.name}.restore-", dir=data.parent))
    filled = False  # the PostgreSQL database holds what pg_restore wrote
    try:
        os.chmod(staging, DIR_MODE)
        manifest, read = _read(source, lambda rel: staging / rel)
        _compare(source, manifest, read)
        pg = _database_kind(source, manifest, database_url)
        notes = _check_database(staging / DATABASE, source, manifest)
        if not (staging / CONFIG_NAME).is_file():
            raise BackupError(f"The backup {source} holds no {CONFIG_NAME}.")
        revision, head = _schema_revision(source, manifest)
        from pen_server.db import migrate

        if pg:
            from pen_server import pgdump

            _refuse_tables(database_url)
            filled = True  # from here on a failure empties the database again
            pgdump.restore_into(database_url, staging / PG_DUMP)
            (staging / PG_DUMP).unlink()
            url = database_url
        else:
            url = f"sqlite:///{staging / DATABASE}"
        notes += _own_database(staging, database_url)
        migrated_from = None
        if revision != head:
            migrate(url)
            migrated_from = revision
        make_private_dir(staging / "blobs")
        make_private_dir(staging / "tmp")
        waiting = _due_now(url)
        for folder, _dirs, _files in os.walk(staging):
            _fsync_dir(Path(folder))
        os.rename(staging, data)  # replaces an empty `data`, in one step
        _fsync_dir(data.parent)
    except BaseException as exc:
        shutil.rmtree(staging, ignore_errors=True)
        if filled:
            from pen_server.migrate_to import _empty

            _empty(database_url)
        if isinstance(exc, OSError):
            raise BackupError(f"The restore could not be written ({exc.strerror or exc}"
                              f"{': ' + str(exc.filename) if exc.filename else ''}); nothing was left in {data}.") \
                from None
        raise
    return Restored(data, head, migrated_from, waiting, notes)


def _own_database(staging: Path, database_url: str | None) -> list[str]:
    """The restored settings name the restored database: `database_url` (PostgreSQL), else
    the data folder's pen.db, so a [database] url (a SQLite file elsewhere) is taken out."""
    import tomllib

    import tomli_w

    from pen_server.private import write_private

    path = staging / CONFIG_NAME
    doc = tomllib.loads(path.read_text(encoding="utf-8"))
    old = str(doc.get("database", {}).get("url") or "")
    if old == (database_url or ""):
        return []
    if database_url:
        doc["database"] = {"url": database_url}
    else:
        doc.pop("database")
    write_private(path, tomli_w.dumps(doc).encode("utf-8"))
    if database_url:
        return []
    return [f"the settings named the database {old[:200]}; the restored PEN uses its own {DATABASE} (the "
            f"[database] url was taken out of {CONFIG_NAME})"]


def _due_now(url: str) -> int:
    """The notifications that were waiting when the backup was made go out as soon as the
    restored PEN starts: the old server's retry times (minutes, after a relay that refused)
    and its delivery leases mean nothing on the new one. One the old server had sent stays
    sent. One it was handing to the relay at that moment ("sending") goes again, as after a
    crash: at least once, with the same Message-ID. Returns how many wait."""
    from sqlalchemy import update

    from pen_server.db import Database
    from pen_server.models import Notification as N
    from pen_server.models import utcnow

    database = Database(url)
    try:
        with database.session() as session:
            now = utcnow()
            session.execute(update(N).where(N.status.in_(("queued", "deferred", "sending")))
                            .values(next_attempt_at=now, lease_owner=None, lease_until=None)
                            .execution_options(synchronize_session=False))
            return session.query(N).filter(N.status.in_(("queued", "deferred", "sending"))).count()
    finally:
        database.dispose()
