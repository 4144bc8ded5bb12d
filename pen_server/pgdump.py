"""A PostgreSQL PEN's database in a backup (`pen-server backup --pg-dump`, `restore
--database-url`): pg_dump in the snapshot of a transaction that also lists the blobs its rows
name (pg_export_snapshot), so the dump and the blobs copied after it agree; pg_restore into an
empty database. The password reaches the programs in PGPASSWORD, never on a command line."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from pen_server.backup import BackupError as PgError


def _params(url: str) -> dict:
    from sqlalchemy.engine import make_url

    u = make_url(url)
    params = {k: v for k, v in u.translate_connect_args(username="user", database="dbname").items() if v}
    params.update({k: v if isinstance(v, str) else v[-1] for k, v in u.query.items()})
    return params


def _program(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise PgError(f"{name} is not installed here (on Debian: apt-get install postgresql-client, of the "
                      f"server's major version or newer).")
    return found


def _run(args: list[str], url: str, what: str) -> None:
    from psycopg.conninfo import make_conninfo

    params = _params(url)
    env = dict(os.environ)
    if params.get("password"):
        env["PGPASSWORD"] = str(params.pop("password"))
    done = subprocess.run([*args, f"--dbname={make_conninfo(**params)}"], env=env, capture_output=True,
                          text=True, stdin=subprocess.DEVNULL)
    if done.returncode:
        said = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[0]
        raise PgError(f"{what} failed ({said}).")


@contextmanager
def dump(url: str, into: Path) -> Iterator[tuple[str, list[str], Callable[[str], bool]]]:
    """pg_dump of the database at `url` into `into` (custom format); yields the schema
    revision, the blobs the dumped rows name, and a look-up of whether a blob still has its
    row now."""
    import psycopg

    params = _params(url)
    pg_dump = _program("pg_dump")
    try:
        with psycopg.connect(**params) as conn:
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            snapshot = conn.execute("SELECT pg_export_snapshot()").fetchone()[0]
            row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
            named = sorted(r[0] for r in conn.execute("SELECT sha256 FROM blobs UNION SELECT sha256 FROM attachments"))
            # The exporting transaction stays open until pg_dump has taken the snapshot and read.
            _run([pg_dump, "--format=custom", "--no-owner", "--no-privileges", f"--snapshot={snapshot}",
                  f"--file={into}"], url, "pg_dump")
            conn.rollback()
    except psycopg.Error as exc:
        raise PgError(f"The PostgreSQL database could not be read ({str(exc).strip().splitlines()[0]}).") from None
    if row is None:
        raise PgError("The PostgreSQL database has no schema revision; is it a PEN's database?")
    with psycopg.connect(**params, autocommit=True) as live:
        def live_has(sha: str) -> bool:
            return live.execute("SELECT 1 FROM blobs WHERE sha256 = %s", (sha,)).fetchone() is not None

        yield str(row[0]), named, live_has


def restore_into(url: str, dump_file: Path) -> None:
    """pg_restore of `dump_file` into the (empty) database at `url`, in one transaction."""
    _run([_program("pg_restore"), "--no-owner", "--no-privileges", "--exit-on-error", "--single-transaction",
          str(dump_file)], url, "pg_restore")
