"""`pen-server run`: uvicorn over TLS, with the delivery worker in the same process. SIGTERM
and SIGINT stop both; the worker finishes what it is sending first."""

from __future__ import annotations

import os
import signal
import ssl

import uvicorn

from pen_server.app import create_app
from pen_server.db import migrate
from pen_server.settings import Settings, SettingsError


def serve(settings: Settings, host: str, port: int) -> int:
    cert, key = settings.tls_dir / "server.pem", settings.tls_dir / "server.key"
    if not cert.is_file() or not key.is_file():
        raise SettingsError(f"There is no TLS certificate in {settings.tls_dir}; run 'pen-server init' first.")
    if not 0 < port < 65536:
        raise SettingsError(f"The port must be between 1 and 65535, not {port}.")
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
    config = uvicorn.Config(create_app(settings, bounce_socket=bounce_socket), host=host, port=port,
                            ssl_certfile=str(cert), ssl_keyfile=str(key), log_level="warning", lifespan="on",
                            timeout_graceful_shutdown=10, proxy_headers=False, server_header=False)
    config.load()
    config.ssl.minimum_version = ssl.TLSVersion.TLSv1_2
    server = uvicorn.Server(config)
    # uvicorn shuts down gracefully, then raises the signal again; SIGTERM is how a service
    # manager asks us to stop, so that ends with 0.
    signal.signal(signal.SIGTERM, _stopped)
    try:
        server.run()
    except SystemExit as stop:
        return int(stop.code or 0)
    except OSError as exc:
        raise SettingsError(f"Could not listen on {host}:{port} ({exc.strerror or exc}).") from None
    return 0 if server.started else 1


def _stopped(_signum, _frame) -> None:
    raise SystemExit(0)
