"""A whole PEN on this machine for tests, benchmarks and `penmail demo`: a data folder with
its own CA, a real `pen-server run` process on a loopback port, and an SMTP sink
(aiosmtpd) that keeps every notification it receives. Shipped for the demo, imported by
nothing in pen_server (tests/server/test_server_imports.py checks that)."""

from __future__ import annotations

import email
import email.policy
import functools
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    peer: tuple

    @functools.cached_property
    def message(self) -> email.message.EmailMessage:
        # Parsed once: tests that wait for a notification look at every message the sink
        # holds, again and again (hundreds in a session's sink), and parsing them is CPU.
        return email.message_from_bytes(self.data, policy=email.policy.default)


class SinkHandler:
    """Keeps what arrives; `reply` can make it answer like a failing relay."""

    def __init__(self):
        self.received: list[Received] = []
        self.sessions = 0
        self.reply: str | None = None  # e.g. "451 try later" or "550 no such user"
        self.lock = threading.Lock()
        self.arrived = threading.Condition(self.lock)

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        with self.lock:
            self.sessions += 1
        session.host_name = hostname
        return responses

    async def handle_DATA(self, server, session, envelope):
        if self.reply:
            return self.reply
        with self.arrived:
            self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos),
                                          bytes(envelope.original_content or envelope.content), session.peer))
            self.arrived.notify_all()
        return "250 Message accepted for delivery"

    def wait_for(self, count: int, timeout: float = 30.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        with self.arrived:
            while len(self.received) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.arrived.wait(left)
            return list(self.received)

    def clear(self) -> None:
        with self.lock:
            self.received.clear()


class SmtpSink:
    def __init__(self, port: int | None = None, handler: SinkHandler | None = None):
        from aiosmtpd.controller import Controller

        self.handler = handler or SinkHandler()
        self.port = port or free_port()
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port,
                                     data_size_limit=50 << 20, decode_data=False)

    def start(self) -> SmtpSink:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()

    @property
    def received(self) -> list[Received]:
        return self.handler.received


# `pen-server run` whose imports come before it waits for a go (PenProcess.spawn(held=True)).
HELD = ("import sys\nimport pen_server.cli, pen_server.serve\n"
        "if sys.stdin.readline() != 'go\\n':\n    sys.exit(0)\n"
        "sys.exit(pen_server.cli.command(sys.argv[1:]))")


@dataclass
class PenProcess:
    data: Path
    port: int
    smtp_port: int | None = None
    env: dict = field(default_factory=dict)
    proc: subprocess.Popen | None = None
    log_path: Path | None = None
    nofile: int | None = None  # the process's open-files limit (soft and hard), for load tests
    args: tuple[str, ...] = ()  # more arguments for `pen-server run`, e.g. ("--workers", "2")
    held: bool = False  # spawned with held=True, waiting for start()

    def _limit_files(self) -> None:
        import resource

        resource.setrlimit(resource.RLIMIT_NOFILE, (self.nofile, self.nofile))

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def api(self) -> str:
        return self.url + "/api/v1"

    @property
    def ca_file(self) -> Path:
        return self.data / "tls" / "ca.pem"

    @property
    def database_url(self) -> str:
        """The SQLAlchemy URL of the PEN's database (SQLite or PostgreSQL), as the server reads it."""
        from pen_server.settings import load_settings

        return load_settings(self.data, env={k: v for k, v in self.env.items() if k == "PEN_DATABASE_URL"}).database_url

    @contextmanager
    def sql(self):
        """A connection (SQLAlchemy) to the PEN's database, committed at the end: for tests and
        benchmarks that look at or set up rows directly, on either database."""
        from sqlalchemy import create_engine

        engine = create_engine(self.database_url)
        try:
            with engine.begin() as conn:
                yield conn
        finally:
            engine.dispose()

    def spawn(self, *, held: bool = False) -> PenProcess:
        """Start `pen-server run` (the data folder must exist, for its log). `held`: the
        process loads the server's modules, the slow part of a start, then waits for
        `start()` before it reads the data folder, which its caller fills meanwhile (the
        demo); a held process whose caller goes away (its standard input closes) ends."""
        env = dict(os.environ, **self.env)
        if self.smtp_port:
            env.update(PEN_SMTP_HOST="127.0.0.1", PEN_SMTP_PORT=str(self.smtp_port), PEN_SMTP_SECURITY="none")
        self.log_path = self.data / "server.log"
        # In the data folder, so as private as the rest of it (pen-server run warns otherwise).
        log = os.fdopen(os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab")
        command = ["-c", HELD] if held else ["-m", "pen_server"]
        self.proc = subprocess.Popen([sys.executable, *command, "run", "--data", str(self.data),
                                      "--port", str(self.port), *self.args], env=env, stdout=log, stderr=log,
                                     stdin=subprocess.PIPE if held else subprocess.DEVNULL,
                                     preexec_fn=self._limit_files if self.nofile else None)
        log.close()
        self.held = held
        return self

    def start(self, timeout: float = 30.0) -> PenProcess:
        if not self.held:
            self.spawn()
        else:  # go on
            self.held = False
            assert self.proc is not None and self.proc.stdin is not None
            try:
                self.proc.stdin.write(b"go\n")
                self.proc.stdin.close()
            except OSError:
                pass  # it has died: said below
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"pen-server exited with {self.proc.returncode}: {self.log_tail()}")
            try:
                if httpx.get(self.api + "/health", verify=str(self.ca_file), timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"pen-server did not start within {timeout} s: {self.log_tail()}")

    def tls_socket(self, timeout: float = 10.0):
        """A raw TLS connection to the server, for tests and benchmarks that speak HTTP by hand."""
        import ssl

        ctx = ssl.create_default_context(cafile=str(self.ca_file))
        return ctx.wrap_socket(socket.create_connection(("127.0.0.1", self.port), timeout=timeout),
                               server_hostname="127.0.0.1")

    def post_raw(self, head: bytes, chunk: bytes, count: int) -> tuple[bytes, int]:
        """Send a request head, then `chunk` up to `count` times, stopping when the server
        closes (as a client that reads the early answer would); returns the server's answer
        and how many chunks went out."""
        sent = 0
        with self.tls_socket() as s:
            s.sendall(head)
            try:
                for _ in range(count):
                    s.sendall(chunk)
                    sent += 1
            except OSError:
                pass  # the server answered and closed
            answer = b""
            try:
                while data := s.recv(65536):
                    answer += data
            except OSError:
                pass
        return answer, sent

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM, as an administrator's service manager would."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode if self.proc else None

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def cli_in_process(*args: str, stdin: str = "", env: dict[str, str | None] | None = None
                   ) -> subprocess.CompletedProcess:
    """Run a `pen-server` command in this process (as fast as a function call): its exit
    code, standard output and error, as subprocess.run would give them. `env` changes the
    environment for the command (None: unset) and is put back after it."""
    import contextlib
    import io

    from pen_server import cli

    out, err = io.StringIO(), io.StringIO()
    saved_stdin, saved_env = sys.stdin, {name: os.environ.get(name) for name in env or {}}
    sys.stdin = io.StringIO(stdin)
    for name, value in (env or {}).items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = cli.main(list(args))
            except SystemExit as exc:  # argparse's usage errors
                code = exc.code if isinstance(exc.code, int) else 1
    finally:
        sys.stdin = saved_stdin
        for name, before in saved_env.items():
            if before is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = before
    return subprocess.CompletedProcess(["pen-server", *args], code, out.getvalue(), err.getvalue())


def run_cli(*args: str, stdin: str = "") -> str:
    """Run a `pen-server` command in this process (cli_in_process); raises RuntimeError with
    the command's sentence when it fails."""
    done = cli_in_process(*args, stdin=stdin)
    if done.returncode:
        raise RuntimeError(done.stderr.strip())
    return done.stdout


def init_pen(data: Path, *, name: str = "ABC Medical", footer: str = "", base_url: str | None = None,
             port: int | None = None, from_address: str | None = None, database_url: str = "") -> int:
    """Make a PEN in `data`; returns the port its base URL names. Without `from_address` it
    sends from pen@localhost (init's warning about that goes nowhere); without `database_url`
    (an empty PostgreSQL database, see pen_devstack.postgres) its database is SQLite."""
    port = port or free_port()
    run_cli("init", "--data", str(data), "--name", name, "--base-url", base_url or f"https://localhost:{port}",
            "--footer", footer, *(["--from", from_address] if from_address else []),
            *(["--database-url", database_url] if database_url else []))
    return port


def add_user(data: Path, email_: str, name: str, password: str, role: str = "member",
             package: str | None = None) -> None:
    args = ["user", "add", "--data", str(data), "--email", email_, "--name", name, "--role", role]
    run_cli(*args, *(["--package", package] if package else []), stdin=password + "\n")


def set_package(data: Path, name: str, disclaimer: str) -> None:
    run_cli("package", "set", "--data", str(data), name, "--disclaimer", disclaimer)
