"""`pen-server run`: uvicorn over TLS, with the delivery worker in the same process (unless
`[delivery] in_api = false`). SIGTERM and SIGINT stop both: the server stops taking
connections, ends the event streams (clients reconnect to another process), finishes the
requests in flight (at most GRACE_SECONDS) and the worker what it is sending (at most
worker.STOP_SECONDS).

`--workers N` binds N listening sockets to the port (SO_REUSEPORT, so the kernel spreads new
connections over them) and forks N API processes, one on each; this process only watches them: it
restarts one that dies, and passes SIGTERM on. On SQLite it refuses N > 1 (one writer at a
time: more processes would only queue on its lock).

Limits against hostile load live here and in `connections.py` / `middleware.py`: the
open-files limit is raised, a request head must arrive within `head_timeout_seconds`, a TLS
handshake within `handshake_timeout_seconds`, an idle kept-alive connection is closed after
`keepalive_seconds`, and at most `max_connections` are open at once."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import ssl
import sys
from pathlib import Path

import uvicorn

from pen_server import metrics
from pen_server.app import create_app
from pen_server.children import die_with
from pen_server.connections import (
    FILES_KEPT_FREE,
    ConnectionGuard,
    loop_factory,
    protocol_class,
    raise_open_files_limit,
)
from pen_server.db import migrate
from pen_server.middleware import RequestLog
from pen_server.settings import Settings, SettingsError

log = logging.getLogger("pen_server")
MAX_HEAD_BYTES = 16 << 10  # a request line and headers; h11 answers 400 past it


GRACE_SECONDS = 10  # in-flight requests may take this long after SIGTERM
SUPERVISOR_STOP_SECONDS = 40  # then the processes of --workers N are killed


def serve(settings: Settings, host: str, port: int, log_file: Path | None = None, workers: int = 1) -> int:
    cert, key = settings.tls_dir / "server.pem", settings.tls_dir / "server.key"
    if not cert.is_file() or not key.is_file():
        raise SettingsError(f"There is no TLS certificate in {settings.tls_dir}; run 'pen-server init' first.")
    if not 0 < port < 65536:
        raise SettingsError(f"The port must be between 1 and 65535, not {port}.")
    if workers < 1 or workers > 64:
        raise SettingsError(f"--workers must be between 1 and 64, not {workers}.")
    if workers > 1 and settings.database_url.startswith("sqlite"):
        raise SettingsError("SQLite takes one writer at a time, so more API processes would only wait for each "
                            "other; run with --workers 1, or use PostgreSQL ([database] url) for several.")
    log_to(log_file or settings.log_file, settings.log_format)
    from pen_server import security

    if security.cost() != "standard":
        log.warning(
            "Passwords are hashed at the test cost (PEN_PASSWORD_COST=test), which is for test suites only: "
            "unset it for a real PEN; hashes made meanwhile are renewed at each owner's next sign-in.")
    migrate(settings.database_url)
    # Before forking: each process of --workers N counts in files of its own (metrics.py).
    if metrics.setup(settings):
        metrics.compact(metrics.directory(settings))
    bounce_socket = None
    if settings.bounce_port:
        from pen_server.bounces import listen

        try:
            bounce_socket = listen(settings.bounce_host, settings.bounce_port)
        except OSError as exc:
            why = os.strerror(exc.errno) if exc.errno else str(exc)
            raise SettingsError(f"Could not take bounces on {settings.bounce_host}:{settings.bounce_port} "
                                f"({why}); change [bounces] port or free it.") from None
    open_files = raise_open_files_limit()
    listener = _listen(host, port, 2048, reuse_port=workers > 1)
    # Several processes: one listening socket each on the same port (SO_REUSEPORT), so that
    # the kernel spreads new connections over them. With one socket shared by all, whichever
    # process woke first took a burst of connections, and a second process added no requests
    # a second (bench/api_processes.py: 124/s with one process, 121/s with two).
    listeners = [listener] + [_listen(host, listener.getsockname()[1], 2048, reuse_port=True)
                              for _ in range(workers - 1)]
    where = f"https://{'[' + host + ']' if ':' in host else host}:{listener.getsockname()[1]}"
    print(f"pen-server listening on {where}, data in {settings.data_dir}"
          + (f", {workers} processes" if workers > 1 else ""), flush=True)
    log.info("listening on %s, data in %s; %d API process(es), delivery %s", where, settings.data_dir, workers,
             "in them" if settings.delivery_in_api else "by pen-server worker only")
    try:
        if workers == 1:
            return _serve_one(settings, listener, bounce_socket, open_files)
        return _supervise(workers, lambda i: _serve_one(settings, listeners[i], bounce_socket if i == 0 else None,
                                                        open_files))
    finally:
        for sock in listeners:
            sock.close()


def _serve_one(settings: Settings, listener: socket.socket, bounce_socket, open_files: int) -> int:
    """One API process on the listening socket, until SIGTERM."""
    cert, key = settings.tls_dir / "server.pem", settings.tls_dir / "server.key"
    guard = ConnectionGuard(head_timeout=settings.head_timeout_seconds,
                            max_connections=max(16, min(settings.max_connections, open_files - FILES_KEPT_FREE)))
    app = create_app(settings, bounce_socket=bounce_socket)
    config = uvicorn.Config(RequestLog(app), ssl_certfile=str(cert),
                            ssl_keyfile=str(key), log_level="warning", log_config=None, access_log=False,
                            lifespan="on", timeout_graceful_shutdown=GRACE_SECONDS, proxy_headers=False,
                            server_header=False, http=protocol_class(guard),
                            timeout_keep_alive=settings.keepalive_seconds,  # type: ignore[arg-type]  # a float works
                            h11_max_incomplete_event_size=MAX_HEAD_BYTES)
    config.load()
    config.ssl.minimum_version = ssl.TLSVersion.TLSv1_2
    services = app.state.pen
    server = _Server(config, services.stopping)
    # uvicorn shuts down gracefully, then raises the signal again; SIGTERM is how a service
    # manager asks us to stop, so that ends with 0.
    signal.signal(signal.SIGTERM, _stopped)
    try:
        with asyncio.Runner(loop_factory=loop_factory(settings.handshake_timeout_seconds)) as runner:
            runner.run(server.serve(sockets=[listener]))
    except SystemExit as stop:
        return int(stop.code or 0)
    return 0 if server.started else 1


def _supervise(count: int, child) -> int:
    """Fork `count` processes running child(i) and keep them running until SIGTERM or
    SIGINT, which each of them is sent; those still running after SUPERVISOR_STOP_SECONDS
    are killed. A process that dies is started again, unless they keep dying at once."""
    import time

    parent = os.getpid()
    running: dict[int, tuple[int, float]] = {}  # pid -> (slot, started)
    stopping = False
    quick_deaths = 0

    def start(slot: int) -> None:
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                die_with(parent)
                signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent passes SIGTERM on
                code = child(slot)
            except BaseException:
                log.exception("API process %d failed", slot)
            finally:
                os._exit(code)
        running[pid] = (slot, time.monotonic())

    def stop(_signum, _frame) -> None:
        nonlocal stopping
        stopping = True
        for pid in running:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        signal.alarm(SUPERVISOR_STOP_SECONDS)

    def kill(_signum, _frame) -> None:
        for pid in running:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    for slot in range(count):
        start(slot)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGALRM, kill)
    failed = False
    while running:
        pid, status = os.waitpid(-1, 0)
        if pid not in running:
            continue
        slot, started = running.pop(pid)
        if stopping:
            continue
        code = os.waitstatus_to_exitcode(status)
        quick_deaths = quick_deaths + 1 if time.monotonic() - started < 5 else 0
        if quick_deaths >= 5:
            log.error("API processes keep exiting at once (the last with %d); stopping", code)
            failed = True
            stop(None, None)
            continue
        log.warning("API process %d (pid %d) exited with %d; starting another", slot, pid, code)
        time.sleep(min(5.0, 0.2 * 2 ** quick_deaths))
        start(slot)
    signal.alarm(0)
    return 1 if failed else 0


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, before_shutdown):
        super().__init__(config)
        self.before_shutdown = before_shutdown

    async def shutdown(self, sockets=None) -> None:
        self.before_shutdown()  # not ready; open event streams end now instead of holding the stop up
        await super().shutdown(sockets)


def _listen(host: str, port: int, backlog: int, reuse_port: bool = False) -> socket.socket:
    """The listening socket, made here so that the line saying where we listen is true.
    IPPROTO_TCP by name: asyncio sets TCP_NODELAY only on sockets that say so, and without
    it every answer waited 40 ms for a delayed ACK."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise SettingsError(f"Could not listen on {host}:{port} ({exc.strerror or exc}).") from None
    return sock


def log_to(path: Path | None, kind: str = "text") -> None:
    """The server's log (requests, deliveries, errors) goes to standard error, or to `path`;
    `kind` "json" writes one JSON object a line (logs.py)."""
    from pen_server.logs import formatter

    root = logging.getLogger()
    root.setLevel(logging.INFO)
    if path is None:
        if not root.handlers:
            logging.basicConfig(stream=sys.stderr, level=logging.INFO)
        if kind == "json":
            for handler in root.handlers:
                handler.setFormatter(formatter(kind))
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(path, encoding="utf-8")
    except OSError as exc:
        raise SettingsError(f"Could not open the log file {path} ({exc.strerror or exc}).") from None
    if kind == "json":
        handler.setFormatter(formatter(kind))
    elif root.handlers:
        handler.setFormatter(root.handlers[0].formatter)
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)


def _stopped(_signum, _frame) -> None:
    raise SystemExit(0)
