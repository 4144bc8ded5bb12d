"""A throwaway PostgreSQL for tests and benchmarks: Debian's binaries (or those in
``PEN_PG_BIN``) start a cluster in a temporary folder, listening on a free loopback port and
on a unix socket in that folder, trust authentication on loopback only, durability off (it
is thrown away). ``initdb`` and ``pg_ctl`` refuse to run as root, so under root the cluster
belongs to Debian's ``postgres`` user (run with runuser). ``create_database()`` gives each
PEN a database of its own.

    cluster = PostgresCluster().start()
    url = cluster.create_database()   # postgresql+psycopg://postgres@127.0.0.1:PORT/pen_...
    ...
    cluster.stop()
"""

from __future__ import annotations

import atexit
import os
import re
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path

from pen_devstack import free_port

HOW_TO_ENABLE = ("PostgreSQL is not installed: `apt-get install -y postgresql` (or PEN_PG_BIN=the folder of "
                 "initdb and pg_ctl) runs the PostgreSQL half of the server tests.")
SETTINGS = """
listen_addresses = '127.0.0.1'
port = {port}
unix_socket_directories = '{socket_dir}'
max_connections = 300
shared_buffers = 64MB
fsync = off
synchronous_commit = off
full_page_writes = off
log_min_messages = warning
"""
# Loopback and the socket in the cluster's own folder only; nothing else may connect.
HBA = "local all all trust\nhost all all 127.0.0.1/32 trust\n"


def pg_bin() -> Path | None:
    """The folder with initdb and pg_ctl: PEN_PG_BIN, else the newest Debian PostgreSQL,
    else the one on PATH; None when there is none."""
    candidates: list[Path] = []
    if os.environ.get("PEN_PG_BIN"):
        candidates.append(Path(os.environ["PEN_PG_BIN"]))
    debian = Path("/usr/lib/postgresql")
    if debian.is_dir():
        versions = [p for p in debian.iterdir() if re.fullmatch(r"\d+(\.\d+)?", p.name)]
        candidates += [p / "bin" for p in sorted(versions, key=lambda p: float(p.name), reverse=True)]
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).parent)
    for folder in candidates:
        if all(os.access(folder / tool, os.X_OK) for tool in ("initdb", "pg_ctl", "postgres")):
            return folder
    return None


def available() -> bool:
    """PostgreSQL's programs and psycopg (the server's driver) are both here."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return False
    return pg_bin() is not None


class PostgresCluster:
    def __init__(self, bin_dir: Path | None = None):
        self.bin_dir = bin_dir or pg_bin()
        if self.bin_dir is None:
            raise RuntimeError(HOW_TO_ENABLE)
        self.root: Path | None = None
        self.port = 0
        self.as_root = os.getuid() == 0
        self.running = False

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root / "run"

    def _run(self, *args: str, timeout: float = 120) -> None:
        cmd = [str(self.bin_dir / args[0]), *args[1:]]
        if self.as_root:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
                              cwd=self.root)
        if done.returncode:
            raise RuntimeError(f"{args[0]} failed ({done.returncode}): {(done.stderr or done.stdout).strip()[-2000:]}")

    def start(self) -> PostgresCluster:
        self.root = Path(tempfile.mkdtemp(prefix="penmail-pg-"))
        self.socket_dir.mkdir()
        if self.as_root:
            import pwd

            try:
                owner = pwd.getpwnam("postgres")
            except KeyError:
                raise RuntimeError("Running as root, PostgreSQL needs Debian's postgres user to own its "
                                   "cluster; install the postgresql package.") from None
            for path in (self.root, self.socket_dir):
                os.chown(path, owner.pw_uid, owner.pw_gid)
        try:
            self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "--encoding=UTF8",
                      "--locale=C.UTF-8", "--no-sync", "--no-instructions")
            (self.data / "pg_hba.conf").write_text(HBA)
            for attempt in range(3):  # another process may take the free port before we bind it
                self.port = free_port()
                with open(self.data / "postgresql.auto.conf", "w") as conf:
                    conf.write(SETTINGS.format(port=self.port, socket_dir=self.socket_dir))
                try:
                    self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "postgres.log"), "-w",
                              "-t", "60", "start")
                    break
                except RuntimeError:
                    if attempt == 2:
                        raise RuntimeError(f"PostgreSQL did not start: {self.log_tail()}") from None
        except BaseException:
            shutil.rmtree(self.root, ignore_errors=True)
            raise
        self.running = True
        atexit.register(self.stop)
        return self

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join((self.root / "postgres.log").read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def url(self, database: str = "postgres") -> str:
        """The SQLAlchemy URL of one of the cluster's databases (psycopg 3, over TCP)."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def connect(self, database: str = "postgres"):
        import psycopg

        return psycopg.connect(host="127.0.0.1", port=self.port, user="postgres", dbname=database,
                               autocommit=True)

    def create_database(self, prefix: str = "pen") -> str:
        """A new, empty database; returns its SQLAlchemy URL."""
        from psycopg import sql

        name = f"{prefix}_{secrets.token_hex(6)}"
        with self.connect() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)

    def stop(self) -> None:
        if self.running:
            self.running = False
            try:
                self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop", timeout=60)
            except (RuntimeError, subprocess.TimeoutExpired):
                pass  # the folder goes anyway
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None
