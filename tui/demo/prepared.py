"""The demo's data prepared once and reused, so that `penmail demo` opens in seconds.

Seeding a clinic's mail through the API takes a while (a CA, migrations, members' password
hashes, a few hundred messages and their attachments). The first `penmail demo` does it and
then keeps a copy of the PEN's data folder in the user's cache folder, in an entry named by
a hash of what makes the data (the demo's and the harness's source, the server's
migrations, the demo's options). Later starts copy that folder (attachments' blobs are
hard-linked where the file system allows), point its base URL at the new port, and move
every date in the database forward by the time since it was prepared, so the mailbox still
reads as the last six weeks. A change to any of those sources makes a new entry; older ones
are removed when it is written.

The client's state of a reused demo (its drafts, its address book) is kept beside the
entries, in ``.state`` (a hidden name, which the removal of old entries passes over), so a
draft written in one demo is in Drafts at the next start. Each start serves the PEN on a
new port, and a draft belongs to the account it was written in (its server URL and
e-mail), so at each start the demo user's drafts become the new server's
(``adopt_drafts``).

Plain sqlite3 and tomllib here: a start from the cache imports nothing of the server.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import sqlite3
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

FORMAT = 1
META = "demo.json"
DB = "pen.db"
CONFIG = "pen-server.toml"
SKIP = {DB, DB + "-wal", DB + "-shm", DB + "-journal", "server.log"}
STAMP = "%Y-%m-%d %H:%M:%S.%f"  # how SQLAlchemy stores a DateTime in SQLite


def cache_root() -> Path:
    """Where prepared demos are kept: penmail's folder in the user's cache folder."""
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("penmail")) / "demo"


def state_dir(cache_dir: Path | None, run_root: Path) -> Path:
    """The client's state folder for a demo: kept across starts with a cache (``cache_dir``
    is what ``penmail demo`` passes), else the run's own folder, removed when it stops."""
    return Path(cache_dir) / ".state" if cache_dir is not None else run_root / "state"


def adopt_drafts(state: Path, server: str, email: str) -> int:
    """The demo user's drafts from earlier starts (another loopback port) belong to this
    start's server; how many were moved over."""
    from tui.drafts import DraftStore, account_key

    store = DraftStore(state / "drafts")
    now = account_key(server, email)
    moved = 0
    for draft in store.list():
        old = draft.account or ""
        if old != now and old.startswith("https://127.0.0.1:") and old.endswith("|" + email.lower()):
            draft.account = now
            store.save(draft)
            moved += 1
    return moved


def entry_for(root: Path, **options: Any) -> Path:
    """The cache entry for these options and this version of the code that makes the data."""
    import pen_devstack
    import pen_server

    here = Path(__file__).parent
    sources = [here / "__init__.py", here / "data.py", here / "prepared.py", Path(pen_devstack.__file__),
               *sorted((Path(pen_server.__file__).parent / "migrations" / "versions").glob("*.py"))]
    digest = hashlib.sha256(json.dumps({"format": FORMAT, **options}, sort_keys=True).encode())
    for path in sources:
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return root / digest.hexdigest()[:20]


def load(entry: Path) -> dict[str, Any] | None:
    """The entry's facts (stats, guests, when it was prepared), or None when it is not whole."""
    try:
        meta = json.loads((entry / META).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    ok = isinstance(meta, dict) and (entry / "pen" / DB).is_file() and "prepared_at" in meta
    return meta if ok else None


def save(entry: Path, data_dir: Path, meta: dict[str, Any]) -> None:
    """Keep a running PEN's data folder as `entry`: staged beside it, then renamed into
    place, so a half-written entry is never read. Older entries go."""
    entry.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=entry.parent))
    try:
        _copy_folder(data_dir, staging / "pen")
        with sqlite3.connect(data_dir / DB) as live, sqlite3.connect(staging / "pen" / DB) as copy:
            live.backup(copy)  # a consistent copy while the server runs
        live.close()
        copy.close()
        meta = {**meta, "prepared_at": time.time()}
        (staging / META).write_text(json.dumps(meta), encoding="utf-8")
        for old in entry.parent.iterdir():
            if old.name != entry.name and not old.name.startswith("."):
                shutil.rmtree(old, ignore_errors=True)
        try:
            os.rename(staging, entry)
        except OSError as exc:  # another demo prepared it first
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def restore(entry: Path, data_dir: Path, base_url: str) -> dict[str, Any]:
    """Make `data_dir` a copy of the entry's PEN at `base_url`, its dates moved to today;
    returns the entry's facts."""
    meta = load(entry)
    if meta is None:
        raise FileNotFoundError(entry)
    source = entry / "pen"
    _copy_folder(source, data_dir)
    shutil.copyfile(source / DB, data_dir / DB)
    os.chmod(data_dir / DB, 0o600)
    _set_base_url(data_dir / CONFIG, base_url)
    move_dates(data_dir / DB, float(meta["prepared_at"]))
    return meta


def move_dates(db: Path, prepared_at: float) -> None:
    """Every date moved forward by the time since `prepared_at` (a time.time()), and the
    audit trail's chain hashed again over the moved dates."""
    _shift_dates(db, timedelta(seconds=max(0.0, time.time() - prepared_at)))
    with sqlite3.connect(db) as conn:
        _rechain(conn)
    conn.close()


def _copy_folder(source: Path, target: Path) -> None:
    """The data folder without its database and log; blobs (written once, never changed)
    are hard-linked when both folders are on one file system."""

    def ignore(folder: str, names: list[str]) -> set[str]:
        if Path(folder) == source:
            return SKIP & set(names)
        return set(names) if Path(folder) == source / "tmp" else set()

    def link_or_copy(src: str, dst: str) -> None:
        if Path(src).is_relative_to(source / "blobs"):
            link_blob(Path(src), Path(dst))
        else:
            shutil.copy2(src, dst)

    shutil.copytree(source, target, ignore=ignore, copy_function=link_or_copy)


def link_blob(src: Path, dst: Path) -> None:
    """An attachment's file (written once, never changed) into a demo's data folder: a hard
    link, or on another file system a copy that appears whole under its name; one that is
    there already is kept."""
    dst.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except FileExistsError:
        pass
    except OSError:  # another file system
        tmp = dst.with_name(dst.name + ".part")
        shutil.copyfile(src, tmp)
        os.chmod(tmp, 0o600)
        os.replace(tmp, dst)


def _set_base_url(config: Path, base_url: str) -> None:
    import tomllib

    import tomli_w

    doc = tomllib.loads(config.read_text(encoding="utf-8"))
    doc.setdefault("pen", {})["base_url"] = base_url
    config.write_text(tomli_w.dumps(doc), encoding="utf-8")


def _shift_dates(db: Path, by: timedelta) -> None:
    """Every DATETIME column of every table, moved forward by `by`."""
    if by <= timedelta(0):
        return
    with sqlite3.connect(db) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                                             "AND name NOT LIKE 'sqlite_%' AND name != 'alembic_version'")]
        for table in tables:
            columns = [r[1] for r in conn.execute(f'PRAGMA table_info("{table}")') if r[2].upper() == "DATETIME"]
            for column in columns:
                rows = conn.execute(f'SELECT rowid, "{column}" FROM "{table}" WHERE "{column}" IS NOT NULL').fetchall()
                conn.executemany(f'UPDATE "{table}" SET "{column}" = ? WHERE rowid = ?',
                                 [((_parse(value) + by).strftime(STAMP), rowid) for rowid, value in rows])
    conn.close()


def _rechain(conn: sqlite3.Connection) -> None:
    """The audit trail's hashes again, as pen_server.audit.row_hash makes them (its `at`
    timezone-aware in UTC), for rows whose dates were moved; the head names the last row."""
    fields = "id, at, action, actor_id, actor, recipient, message_id, attachment_id, channel, client, detail"
    prev, updates, last = "0" * 64, [], 0
    for row in conn.execute(f"SELECT {fields} FROM audit_log ORDER BY id").fetchall():
        at = _parse(row[1]).replace(tzinfo=UTC).isoformat()
        values = [row[0], at, *row[2:], prev]
        digest = hashlib.sha256(json.dumps(values, separators=(",", ":"), ensure_ascii=False).encode()).hexdigest()
        updates.append((prev, digest, row[0]))
        prev, last = digest, row[0]
    conn.executemany("UPDATE audit_log SET prev_hash = ?, hash = ? WHERE id = ?", updates)
    if last:
        conn.execute("UPDATE audit_head SET last_id = ?, last_hash = ? WHERE id = 1", (last, prev))


def _parse(value: str) -> datetime:
    return datetime.fromisoformat(value)
