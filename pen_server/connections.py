"""Connection limits under uvicorn: a time limit for the request head, a cap on open
connections, time limits for the TLS handshake and shutdown, and the open-files limit.

uvicorn has a keep-alive timeout but no head timeout: a client that opens a connection and
sends half a request head (or nothing) holds it, and a file descriptor, for ever. The
protocol class here starts a timer whenever the connection waits for a head (just opened, or
the first byte of the next request after a keep-alive pause) and cancels it once a whole
head has arrived; a connection still waiting when it fires is dropped. At the connection
cap, a new connection pushes out the oldest one that is waiting for a head, so strangers
holding half-open connections cannot lock out a real client; only when every connection is
busy with a request is the new one refused."""

from __future__ import annotations

import asyncio
import logging
import resource
import time
from asyncio import selector_events, sslproto
from dataclasses import dataclass, field

from uvicorn.protocols.http.h11_impl import H11Protocol

FILES_KEPT_FREE = 64  # descriptors for the database, blobs, the SMTP relay and logs
DROPS = {"slow": "without a whole request head in time", "pushed_out": "pushed out at the connection cap",
         "refused": "refused at the cap (every connection busy)"}
log = logging.getLogger("pen_server")


def raise_open_files_limit() -> int:
    """The soft RLIMIT_NOFILE raised to the hard limit; returns the limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 16)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft


@dataclass
class ConnectionGuard:
    """Shared by every connection of one server."""
    head_timeout: float
    max_connections: int
    # Connections waiting for a request head (new or between requests), oldest first.
    waiting: dict = field(default_factory=dict)
    # Counted and logged at most once a minute (an attack must not flood the log).
    counts: dict = field(default_factory=lambda: dict.fromkeys(DROPS, 0))
    logged_at: float = 0.0

    def note(self, drop: str) -> None:
        self.counts[drop] += 1
        now = time.monotonic()
        if now - self.logged_at >= 60:
            log.warning("connections dropped since the last report: %s",
                        ", ".join(f"{n} {DROPS[k]}" for k, n in self.counts.items() if n))
            self.counts, self.logged_at = dict.fromkeys(DROPS, 0), now


class GuardedH11Protocol(H11Protocol):
    guard: ConnectionGuard  # set by protocol_class()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._head_timer: asyncio.TimerHandle | None = None
        super().connection_made(transport)
        guard = self.guard
        if len(self.connections) > guard.max_connections:
            victim = next(iter(guard.waiting), None)
            if victim is None:
                guard.note("refused")
                self._drop()
                return
            guard.note("pushed_out")
            victim._drop()
        self._wait_for_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._head_arrived()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._idle() and self._head_timer is None:
            self._wait_for_head()  # the first bytes of the next request on a kept-alive connection
        super().data_received(data)
        if not self._idle():
            self._head_arrived()

    def on_response_complete(self) -> None:
        super().on_response_complete()  # may start a pipelined request at once
        if self._idle() and not self.transport.is_closing():
            self.guard.waiting[self] = None  # may be pushed out; the keep-alive timer runs

    def _idle(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def _wait_for_head(self) -> None:
        if self.transport.is_closing():
            return
        self.guard.waiting[self] = None
        self._head_timer = self.loop.call_later(self.guard.head_timeout, self._head_timed_out)

    def _head_arrived(self) -> None:
        self.guard.waiting.pop(self, None)
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self._idle():
            self.guard.note("slow")
            self._drop()

    def _drop(self) -> None:
        """Close at once, without a TLS goodbye: the descriptor is free now, not later."""
        self._head_arrived()
        self._unset_keepalive_if_required()
        self.transport.abort()


def protocol_class(guard: ConnectionGuard) -> type[GuardedH11Protocol]:
    return type("PenH11Protocol", (GuardedH11Protocol,), {"guard": guard})


class LeanSSLProtocol(sslproto.SSLProtocol):
    """asyncio's TLS layer gives every connection a 256 KiB read buffer from the start, so
    1,000 half-open connections hold 250 MiB. This one starts with 16 KiB and takes the big
    buffer once a read fills the small one (a body or download is flowing)."""
    max_size = 16 << 10
    busy_size = sslproto.SSLProtocol.max_size

    def buffer_updated(self, nbytes: int) -> None:
        if nbytes >= self.max_size < self.busy_size:
            self.max_size = self.busy_size  # get_buffer() grows the buffer to it next time
        super().buffer_updated(nbytes)


def loop_factory(handshake_timeout: float, shutdown_timeout: float = 5.0):
    """An event loop whose TLS servers give up on a handshake after `handshake_timeout`
    seconds (asyncio's default is 60) and on a closing handshake after `shutdown_timeout`
    (default 30): uvicorn's create_server call passes neither. Its TLS connections use
    LeanSSLProtocol."""

    class PenLoop(asyncio.SelectorEventLoop):
        async def create_server(self, *args, ssl=None, ssl_handshake_timeout=None, ssl_shutdown_timeout=None,
                                **kwargs):
            if ssl is not None:
                ssl_handshake_timeout = ssl_handshake_timeout or handshake_timeout
                ssl_shutdown_timeout = ssl_shutdown_timeout or shutdown_timeout
            return await super().create_server(*args, ssl=ssl, ssl_handshake_timeout=ssl_handshake_timeout,
                                               ssl_shutdown_timeout=ssl_shutdown_timeout, **kwargs)

        # As asyncio.selector_events.BaseSelectorEventLoop._make_ssl_transport (3.11, 3.12),
        # with the lean protocol.
        def _make_ssl_transport(self, rawsock, protocol, sslcontext, waiter=None, *, server_side=False,
                                server_hostname=None, extra=None, server=None,
                                ssl_handshake_timeout=handshake_timeout, ssl_shutdown_timeout=shutdown_timeout):
            ssl_protocol = LeanSSLProtocol(self, protocol, sslcontext, waiter, server_side, server_hostname,
                                           ssl_handshake_timeout=ssl_handshake_timeout,
                                           ssl_shutdown_timeout=ssl_shutdown_timeout)
            selector_events._SelectorSocketTransport(self, rawsock, ssl_protocol, extra=extra, server=server)
            return ssl_protocol._app_transport

    return PenLoop
