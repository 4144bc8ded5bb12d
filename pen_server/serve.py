"""`pen-server run`: uvicorn over TLS, with the delivery worker in the same process. SIGTERM
and SIGINT stop both; the worker finishes what it is sending first.

Limits against hostile load live here and in `connections.py` / `middleware.py`: the
open-files limit is raised, a request head must arrive within `head_timeout_seconds`, a TLS
handshake within `handshake_timeout_seconds`, an idle kept-alive connection is closed after
`keepalive_seconds`, and at most `max_connections` are open at once."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import ssl
import sys
from pathlib import Path

import uvicorn

from pen_server.app import create_app
from pen_server.connections import FILES_KEPT_FREE, ConnectionGuard, loop_factory, protocol_class, raise_open_files_limit
from pen_server.db import migrate
from pen_server.middleware import RequestLog
from pen_server.settings import Settings, SettingsError

log = logging.getLogger("pen_server")
MAX_HEAD_BYTES = 16 << 10  # a request line and headers; h11 answers 400 past it


def serve(settings: Settings, host: str, port: int, log_file: Path | None = None) -> int:
    cert, key = settings.tls_dir / "server.pem", settings.tls_dir / "server.key"
    if not cert.is_file() or not key.is_file():
        raise SettingsError(f"There is no TLS certificate in {settings.tls_dir}; run 'pen-server init' first.")
    if not 0 < port < 65536:
        raise SettingsError(f"The port must be between 1 and 65535, not {port}.")
    log_to(log_file or settings.log_file)
    migrate(settings.database_url)
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
    guard = ConnectionGuard(head_timeout=settings.head_timeout_seconds,
                            max_connections=max(16, min(settings.max_connections, open_files - FILES_KEPT_FREE)))
    app = create_app(settings, bounce_socket=bounce_socket)
    config = uvicorn.Config(RequestLog(app), host=host, port=port, ssl_certfile=str(cert),
                            ssl_keyfile=str(key), log_level="warning", log_config=None, access_log=False,
                            lifespan="on", timeout_graceful_shutdown=10, proxy_headers=False,
                            server_header=False, http=protocol_class(guard),
                            timeout_keep_alive=settings.keepalive_seconds,
                            h11_max_incomplete_event_size=MAX_HEAD_BYTES)
    config.load()
    config.ssl.minimum_version = ssl.TLSVersion.TLSv1_2
    listener = _listen(host, port, config.backlog)
    where = f"https://{'[' + host + ']' if ':' in host else host}:{listener.getsockname()[1]}"
    print(f"pen-server listening on {where}, data in {settings.data_dir}", flush=True)
    log.info("listening on %s, data in %s; at most %d connections", where, settings.data_dir,
             guard.max_connections)
    server = _Server(config, app.state.pen.hub.end_all)
    # uvicorn shuts down gracefully, then raises the signal again; SIGTERM is how a service
    # manager asks us to stop, so that ends with 0.
    signal.signal(signal.SIGTERM, _stopped)
    try:
        with asyncio.Runner(loop_factory=loop_factory(settings.handshake_timeout_seconds)) as runner:
            runner.run(server.serve(sockets=[listener]))
    except SystemExit as stop:
        return int(stop.code or 0)
    finally:
        listener.close()
    return 0 if server.started else 1


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, before_shutdown):
        super().__init__(config)
        self.before_shutdown = before_shutdown

    async def shutdown(self, sockets=None) -> None:
        self.before_shutdown()  # open event streams end now instead of holding the stop up
        await super().shutdown(sockets)


def _listen(host: str, port: int, backlog: int) -> socket.socket:
    """The listening socket, made here so that the line saying where we listen is true.
    IPPROTO_TCP by name: asyncio sets TCP_NODELAY only on sockets that say so, and without
    it every answer waited 40 ms for a delayed ACK."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise SettingsError(f"Could not listen on {host}:{port} ({exc.strerror or exc}).") from None
    return sock


def log_to(path: Path | None) -> None:
    """The server's log (requests, deliveries, errors) goes to standard error, or to `path`."""
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    if path is None:
        if not root.handlers:
            logging.basicConfig(stream=sys.stderr, level=logging.INFO)
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(path, encoding="utf-8")
    except OSError as exc:
        raise SettingsError(f"Could not open the log file {path} ({exc.strerror or exc}).") from None
    if root.handlers:
        handler.setFormatter(root.handlers[0].formatter)
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)


def _stopped(_signum, _frame) -> None:
    raise SystemExit(0)
