"""The demo's data set, prepared when penmail is built and shipped in the package, so that
even the first `penmail demo` on a machine opens in a few seconds.

`python -m tui.demo.shipped build` seeds a clinic through the real API exactly as
`penmail demo --fresh` does (tui/demo/__init__.py), then writes what the server wrote:

- ``dataset/pen.sql``: its SQLite database as SQL text (schema and rows, the search
  index's tables too), without the seeding's sign-in sessions;
- ``dataset/meta.json``: the facts of the data set (when it was made, the options,
  the seeding's figures, the guests' passwords, the server's configuration, which
  notification's link is the guest's link) and the sha256 of every attachment in the order
  the seeding's planner makes them.

No key ships: each demo gets its own secret key and its own CA (EC keys, tens of
milliseconds), and the notifications' link tokens (derived from the secret key) are hashed
again under the new key. The attachments' bytes do not ship either: the planner makes the
very same files again from the seed (tests/client/test_demo.py checks their sha256), once
per machine, in a helper process, after the server is up; each demo links them into its
data folder. Every date moves forward by the time since the data set was made, and the
audit trail's chain is hashed again over the moved dates.

The data set is current when its ``digest`` is that of data.py, the demo stack's seeding
methods and the server's migrations; `penmail demo` falls back to seeding through the API when it
is not (and a test says to run the build again).

Plain sqlite3 here, and the server's tlsgen: a start from the data set loads no SQLAlchemy.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import quote

from tui.demo import prepared as demo_prepared

HERE = Path(__file__).parent / "dataset"
SQL = "pen.sql"
META = "meta.json"
FORMAT = 1
DONE = ".complete"  # in a blob folder whose every file is there
TLS_HOSTS = ["127.0.0.1", "localhost", "::1"]


def digest() -> str:
    """What the data set was made from: a change to any of it calls for a new build."""
    import inspect

    import pen_server
    from tui.demo import DemoStack

    here = Path(__file__).parent
    sources = [here / "data.py",
               *sorted((Path(pen_server.__file__).parent / "migrations" / "versions").glob("*.py"))]
    h = hashlib.sha256(str(FORMAT).encode())
    for path in sources:
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    # demo.py's seeding (not the rest of it, which starts and stops stacks)
    for method in (DemoStack._add_members, DemoStack._seed, DemoStack._file_demo_mailbox, DemoStack._backdate):
        h.update(inspect.getsource(method).encode() + b"\0")
    return h.hexdigest()[:20]


def load_meta(folder: Path = HERE) -> dict[str, Any] | None:
    try:
        meta = json.loads((folder / META).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) and (folder / SQL).is_file() else None


def usable(options: dict[str, Any], folder: Path = HERE) -> dict[str, Any] | None:
    """The shipped data set's facts when it was made by this code with these options."""
    meta = load_meta(folder)
    if meta is None or meta.get("options") != options or meta.get("digest") != digest():
        return None
    return meta


# ---------------------------------------------------------------- a demo from the data set


def restore(meta: dict[str, Any], data_dir: Path, base_url: str, folder: Path = HERE) -> str:
    """Make `data_dir` a PEN at `base_url` with the data set's data (all but the
    attachments' files, see `blob_files`); returns the guest link's path."""
    from pen_server.private import make_private_dir, write_private
    from pen_server.tlsgen import make_tls

    make_private_dir(data_dir)
    for sub in ("blobs", "tmp"):
        make_private_dir(data_dir / sub)
    write_private(data_dir / demo_prepared.CONFIG, meta["config"].encode("utf-8"))
    demo_prepared._set_base_url(data_dir / demo_prepared.CONFIG, base_url)
    secret = secrets.token_bytes(32)
    write_private(data_dir / "secret.key", (secret.hex() + "\n").encode("ascii"))
    make_tls(data_dir / "tls", TLS_HOSTS)
    db = data_dir / demo_prepared.DB
    write_private(db, b"")
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        conn.executescript((folder / SQL).read_text(encoding="utf-8"))
        conn.execute("BEGIN")
        conn.executemany("UPDATE notifications SET token_hash = ? WHERE id = ?",
                         [(_token_hash(secret, nid), nid) for (nid,) in conn.execute("SELECT id FROM notifications")])
        conn.execute("COMMIT")
    finally:
        conn.close()
    demo_prepared.move_dates(db, float(meta["built_at"]))
    guest = meta["guest_link"]
    return f"/m/{guest['message_id']}?t={quote(_derived(secret, 'invite', guest['notification_id']), safe='')}"


def _derived(secret: bytes, purpose: str, ident: str) -> str:
    # as pen_server.security.derived_token (hmac-sha256, urlsafe base64 without padding),
    # which imports the server's settings; tests/client/test_demo.py holds them together
    import base64
    import hmac

    mac = hmac.new(secret, f"{purpose}:{ident}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def _token_hash(secret: bytes, notification_id: str) -> str:
    return hashlib.sha256(_derived(secret, "invite", notification_id).encode()).hexdigest()


def blob_key(sha256: str) -> str:
    return f"{sha256[:2]}/{sha256[2:4]}/{sha256}"  # as pen_server.storage.blob_key


def link_blobs(meta: dict[str, Any], store: Path, blobs: Path) -> subprocess.Popen | None:
    """The attachments' files into `blobs` (a demo's data folder), from `store` (kept in
    the user's cache folder across demos): linked at once when `store` has them all, else
    made there by a helper process that links each into `blobs` as it is written (returned,
    for stop() to wait on)."""
    if (store / DONE).is_file() and all((store / blob_key(s)).is_file() for s in meta["blobs"]):
        for sha in dict.fromkeys(meta["blobs"]):
            demo_prepared.link_blob(store / blob_key(sha), blobs / blob_key(sha))
        return None
    # At a lower priority: the server and the client starting come first on a busy machine.
    return subprocess.Popen([sys.executable, "-m", "tui.demo.shipped", "blobs", str(store), str(blobs)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            preexec_fn=lambda: os.nice(10),
                            env={**os.environ, "PYTHONPATH": os.pathsep.join(
                                [str(Path(__file__).parents[2]), os.environ.get("PYTHONPATH", "")])})


def planned_files(meta: dict[str, Any]) -> list:
    """Every attachment's FileSpec, in the order the seeding's planner makes them."""
    import random
    from datetime import datetime

    from tui.demo.data import Planner

    options = meta["options"]
    threads = Planner(random.Random(options["seed"]), datetime.fromisoformat(meta["now"]),
                      options["big_attachment_bytes"]).plan(options["messages"])
    return [spec for thread in threads for step in thread.steps for spec in step.files]


def blob_files(meta: dict[str, Any]) -> list:
    """(sha256, FileSpec) of every attachment of the data set."""
    specs = planned_files(meta)
    if len(specs) != len(meta["blobs"]):
        raise RuntimeError("The demo's planner makes other attachments than the data set names.")
    return list(zip(meta["blobs"], specs))


def make_blobs(store: Path, also: Path | None = None, meta: dict[str, Any] | None = None) -> None:
    """Each attachment's file into `store` (written beside, then renamed into place), and
    linked into `also`; then the mark that `store` is whole."""
    meta = meta or load_meta()
    store.mkdir(mode=0o700, parents=True, exist_ok=True)
    # The first page's attachments are small; the large imaging file goes last.
    for sha, spec in sorted(blob_files(meta), key=lambda pair: pair[1].size_hint):
        final = store / blob_key(sha)
        if not final.is_file():
            final.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=final.parent, prefix=".part-")
            os.close(fd)
            spec.make(Path(tmp))
            os.replace(tmp, final)
        if also is not None:
            demo_prepared.link_blob(final, also / blob_key(sha))
    (store / DONE).write_text("", encoding="ascii")


# ---------------------------------------------------------------- build


def dump(db: Path) -> str:
    """The database as SQL: the schema, then every row (the search index's shadow tables
    too, whose contentless virtual table cannot be read row by row), in one transaction."""
    conn = sqlite3.connect(db)
    try:
        lines = ["PRAGMA journal_mode = WAL;", "BEGIN;"]
        objects = conn.execute("SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL "
                               "ORDER BY type = 'table' DESC, name").fetchall()
        virtual = [name for kind, name, sql in objects if sql.upper().startswith("CREATE VIRTUAL TABLE")]
        shadow = {f"{v}_{part}" for v in virtual for part in ("data", "idx", "config", "docsize", "content")}
        for _kind, name, sql in objects:
            if name.startswith("sqlite_") or name in shadow:
                continue
            lines.append(sql + ";")
        for kind, name, _ in objects:
            # The seeding's sign-in sessions stay behind (no demo signs in with them).
            if kind != "table" or name in virtual or name == "auth_tokens" or name.startswith("sqlite_"):
                continue
            columns = [r[1] for r in conn.execute(f'PRAGMA table_info("{name}")')]
            if name in shadow:
                lines.append(f'DELETE FROM "{name}";')
            quoted = " || ',' || ".join(f'quote("{c}")' for c in columns)
            order = "rowid" if name not in shadow or name.endswith("_data") else "1"
            try:
                rows = conn.execute(f'SELECT {quoted} FROM "{name}" ORDER BY {order}').fetchall()
            except sqlite3.OperationalError:  # WITHOUT ROWID
                rows = conn.execute(f'SELECT {quoted} FROM "{name}"').fetchall()
            lines += [f'INSERT INTO "{name}" VALUES({values});' for (values,) in rows]
        if any(name == "sqlite_sequence" for _, name, _ in objects):
            lines.append("DELETE FROM sqlite_sequence;")
            lines += [f"INSERT INTO sqlite_sequence VALUES({values});" for (values,) in
                      conn.execute("SELECT quote(name) || ',' || quote(seq) FROM sqlite_sequence ORDER BY name")]
        lines.append("COMMIT;")
        return "\n".join(lines) + "\n"
    finally:
        conn.close()


def build(folder: Path = HERE) -> dict[str, Any]:
    """Seed a demo through the API and write the data set into `folder`."""
    import re
    import time
    from datetime import UTC, datetime

    from tui.demo import DemoStack
    from tui.demo.data import DEFAULT_BIG_MB, DEFAULT_MESSAGES

    now = datetime.now(UTC)
    stack = DemoStack(messages=DEFAULT_MESSAGES, big_attachment_mb=DEFAULT_BIG_MB, handle_signals=False,
                      progress=lambda line: print(line, file=sys.stderr))
    stack.now = now
    try:
        stack.start()
        link = stack.guest_link()
        match = re.search(r"/m/([A-Za-z0-9_-]+)\?t=([A-Za-z0-9_-]+)", link or "")
        if not match:
            raise RuntimeError("The seeded demo has no guest link.")
        with tempfile.TemporaryDirectory() as tmp:
            copy = Path(tmp) / "pen.db"
            with sqlite3.connect(stack.data_dir / demo_prepared.DB) as live, sqlite3.connect(copy) as target:
                live.backup(target)
            live.close()
            target.close()
            token_hash = hashlib.sha256(match.group(2).encode()).hexdigest()
            with sqlite3.connect(copy) as conn:
                (nid,) = conn.execute("SELECT id FROM notifications WHERE token_hash = ?", (token_hash,)).fetchone()
                stored = {sha for (sha,) in conn.execute("SELECT sha256 FROM blobs")}
            conn.close()
            sql = dump(copy)
        config = (stack.data_dir / demo_prepared.CONFIG).read_text(encoding="utf-8")
        meta: dict[str, Any] = {
            "format": FORMAT, "digest": digest(), "built_at": time.time(), "now": now.isoformat(),
            "options": stack_options(stack), "seed_stats": stack.seed_stats, "guests": stack.guests,
            "guest_link": {"message_id": match.group(1), "notification_id": nid}, "config": config, "blobs": []}
    finally:
        stack.stop()
    # The attachments again, from the seed: each must be one the server stored.
    with tempfile.TemporaryDirectory() as tmp:
        blobs = []
        for spec in planned_files(meta):
            path = Path(tmp) / "file"
            spec.make(path)
            blobs.append(hashlib.sha256(path.read_bytes()).hexdigest())
            path.unlink()
    if set(blobs) != stored:
        raise RuntimeError("The attachments made again from the seed differ from those the server stored.")
    meta["blobs"] = blobs
    folder.mkdir(parents=True, exist_ok=True)
    (folder / SQL).write_text(sql, encoding="utf-8")
    (folder / META).write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return meta


def stack_options(stack) -> dict[str, Any]:
    return {"messages": stack.messages, "seed": stack.seed, "big_attachment_bytes": stack.big_attachment_bytes,
            "backdate": stack.backdate}


def main(argv: list[str]) -> int:
    if argv[:1] == ["build"]:
        meta = build()
        print(f"Wrote {HERE / SQL} and {HERE / META} ({len(meta['blobs'])} attachments).")
        return 0
    if argv[:1] == ["blobs"] and len(argv) == 3:
        make_blobs(Path(argv[1]), Path(argv[2]))
        return 0
    print("usage: python -m tui.demo.shipped build | blobs STORE DATA_BLOBS", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
