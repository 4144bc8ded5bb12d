"""A download's body read straight off its own TLS connection, in a thread of its own.

httpx hands a body over 16 KiB at a time (one TLS record per trip through httpcore, h11 and
three async generators), which caps a download at a fraction of what the link carries. Here
one thread connects, sends the GET, reads the head, and decrypts the body into chunk-sized
buffers (large ``recv_into`` calls into a memory BIO, decryption straight into the chunk;
both release the GIL); the event loop only takes full chunks. Measured on the benchmark VM,
receiving a GiB this way costs 0.5 s of CPU against 0.7 s through asyncio's SSL transport,
and none of it is on the event loop, which keeps drawing.

:class:`RawFetcher` is one of the two fetchers of tui.downloads.fetch, used for a plain
200/206 answer with a Content-Length only, when ``PenClient.direct_route()`` gives a route;
anything else (an error status, a 401 to renew
the token on, a chunked or encoded body, a head that does not parse) raises
:class:`RawFallback` before a byte of the body is taken, and httpx asks again. A failing
network raises what PenClient raises for it. No Textual here."""

from __future__ import annotations

import asyncio
import collections
import socket
import ssl
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import httpx

from tui.downloads.fetch import BodyBroken, Chunk
from tui.pen_client import DirectRoute, PenError, download_request

__all__ = ["RawBody", "RawFallback", "RawFetcher"]

_RAW_QUEUED = 4  # full chunks waiting for the writer before the reader waits (2: ~10% slower here)
_HEAD_MAX = 64 << 10
_RECV = 1 << 20  # one recv_into takes what the socket has, up to this


class RawFallback(Exception):
    """The raw path cannot take this request or answer; httpx does it instead."""


def _parse_head(head: bytes) -> tuple[int, httpx.Headers, int | None]:
    """(status, headers, body length or None when the body is not a plain one of ours)."""
    status_line, *lines = head.decode("latin-1").split("\r\n")
    version, status, *_ = status_line.split(" ", 2)
    if not version.startswith("HTTP/1.") or not status.isdigit():
        raise ValueError(status_line)
    pairs = []
    for line in lines:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise ValueError(line)
        pairs.append((name, value.strip()))
    code, headers = int(status), httpx.Headers(pairs)
    length = headers.get_list("content-length")
    left = None
    if code in (200, 206) and len(set(length)) == 1 and length[0].isdigit() and "transfer-encoding" not in headers:
        encoding = headers.get("content-encoding", "identity").strip().lower()
        if encoding in ("", "identity"):
            left = int(length[0])
    return code, headers, left


class RawBody:
    """One GET over its own TLS connection (``Connection: close``), read by its own thread.

    Full chunks queue for the writer; the reading thread waits while ``_RAW_QUEUED`` of them
    do, so memory stays at a few chunks. Buffers given back with :meth:`recycle` are filled
    again (a fresh 1 MiB buffer is a fresh mmap, whose page faults cost more than the hash on
    this VM)."""

    def __init__(self, chunk_size: int, on_bytes: Callable[[int], None], describe: Callable[[Exception], PenError]):
        self.loop = asyncio.get_running_loop()
        self.chunk_size, self.on_bytes, self.describe = chunk_size, on_bytes, describe
        self.head_done: asyncio.Future = self.loop.create_future()
        self.status_code = 0
        self.headers = httpx.Headers()
        self.left: int | None = None  # body bytes still to come; None until the head is in
        self.received = 0
        self.full: collections.deque = collections.deque()  # (buffer, bytes in it)
        self.spare: list[bytearray] = []
        self.filling: tuple[bytearray, int] | None = None  # the chunk the thread fills
        self.wakeup = asyncio.Event()
        self.ended = False  # the thread is done: the body is in, or it failed (``error``)
        self.error: BaseException | None = None
        self._cond = threading.Condition()
        self._closed = False
        self._sock: socket.socket | None = None

    # -- opening

    @classmethod
    async def open(cls, route: DirectRoute, path: str, headers: dict, chunk_size: int,
                   on_bytes: Callable[[int], None], describe: Callable[[Exception], PenError]) -> RawBody:
        """Connect, ask, and read the head. Network failures raise what PenClient raises for
        them (``describe``: Unreachable, CertificateError), as httpx's would."""
        base = route.base_url
        lines = [f"GET {path} HTTP/1.1", f"Host: {base.netloc.decode('ascii')}", "User-Agent: penmail",
                 *(f"{k}: {v}" for k, v in headers.items()), "Connection: close"]
        if any(c in line for line in lines for c in "\r\n\0"):
            raise RawFallback("a header that cannot be sent as is")
        request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        body = cls(chunk_size, on_bytes, describe)
        threading.Thread(target=body._run, args=(route, request), name="penmail-download", daemon=True).start()
        try:
            try:
                await asyncio.shield(body.head_done)
            except httpx.TransportError as exc:
                raise describe(exc) from None
            except ConnectionError as exc:
                raise describe(httpx.ReadError(str(exc))) from None
            if body.left is None:
                raise RawFallback(f"status {body.status_code}, or a body without a plain Content-Length")
        except BaseException:
            body.close()
            raise
        return body

    def close(self) -> None:
        """Stop the thread (it may be waiting on the network: the socket is shut down)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            sock = self._sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.full.clear()

    # -- the thread

    def _tell(self, fn, *args) -> None:
        try:
            self.loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # the loop is gone (penmail is quitting)
            pass

    def _head_failed(self, exc: BaseException) -> None:
        if not self.head_done.done():
            self.head_done.set_exception(exc)

    def _run(self, route: DirectRoute, request: bytes) -> None:
        base, timeout = route.base_url, route.timeout
        host, port = base.host, base.port or 443
        phase = "connect"
        try:
            connect = timeout.connect if timeout.connect is not None else 60
            sock = socket.create_connection((host, port), timeout=connect)
            with self._cond:
                self._sock = sock
                if self._closed:
                    return
            with sock:
                sock.settimeout(timeout.read)
                incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
                tls = route.ssl_context.wrap_bio(incoming, outgoing, server_hostname=host)
                recv = bytearray(_RECV)
                view = memoryview(recv)

                def more() -> None:
                    """Send what TLS has to send, and feed it what the socket has."""
                    out = outgoing.read()
                    if out:
                        sock.sendall(out)
                    n = sock.recv_into(view)
                    if not n:
                        raise ConnectionError("the server closed the connection")
                    incoming.write(view[:n])

                while True:
                    try:
                        tls.do_handshake()
                        break
                    except ssl.SSLWantReadError:
                        more()
                phase = "head"
                tls.write(request)
                sock.sendall(outgoing.read())
                head = bytearray()
                while (end := head.find(b"\r\n\r\n")) < 0:
                    if len(head) > _HEAD_MAX:
                        raise ValueError("a head too long")
                    try:
                        head += tls.read(_HEAD_MAX)
                    except ssl.SSLWantReadError:
                        more()
                code, headers, left = _parse_head(bytes(head[:end]))
                rest = memoryview(bytes(head[end + 4 :]))
                self._tell(self._got_head, code, headers, left)
                if left is None:
                    return
                phase = "body"
                rest = rest[:left]
                while left:
                    buf = self._take_buffer()
                    if buf is None:
                        return  # closed
                    limit, filled = min(self.chunk_size, left), 0
                    chunk = memoryview(buf)
                    self.filling = (buf, 0)
                    while filled < limit:
                        if rest:
                            n = min(len(rest), limit - filled)
                            chunk[filled : filled + n] = rest[:n]
                            rest = rest[n:]
                        else:
                            try:
                                n = tls.read(limit - filled, chunk[filled:limit])  # type: ignore[assignment]
                            except ssl.SSLWantReadError:
                                more()
                                continue
                            if not n:
                                raise ConnectionError("the connection closed before the end of the body")
                        filled += n
                        self.filling = (buf, filled)
                    left -= filled
                    self._push(buf, filled)
        except BaseException as exc:  # noqa: BLE001 - handed to the event loop below
            if self._closed:
                return
            if phase == "connect":
                error: BaseException = (
                    httpx.ConnectTimeout("connecting timed out")
                    if isinstance(exc, TimeoutError)
                    else httpx.ConnectError(str(exc))
                )
            elif isinstance(exc, ValueError):
                error = RawFallback(f"a head that does not parse ({exc})")
            elif isinstance(exc, TimeoutError):
                error = httpx.ReadTimeout("no data arrived in time")
            else:
                error = httpx.ReadError(str(exc) or type(exc).__name__)
            if phase == "body":
                self.error = ConnectionError(str(error))
            else:
                self._tell(self._head_failed, error)
        finally:
            self._tell(self._end)

    def _take_buffer(self) -> bytearray | None:
        with self._cond:
            while len(self.full) >= _RAW_QUEUED and not self._closed:
                self._cond.wait()
            if self._closed:
                return None
            return self.spare.pop() if self.spare else bytearray(self.chunk_size)

    def _push(self, buf: bytearray, n: int) -> None:
        with self._cond:
            self.full.append((buf, n))
            self.filling = None
        self._tell(self._arrived, n)

    # -- the event loop's side

    def _got_head(self, code: int, headers: httpx.Headers, left: int | None) -> None:
        self.status_code, self.headers, self.left = code, headers, left
        if not self.head_done.done():
            self.head_done.set_result(None)

    def _arrived(self, n: int) -> None:
        self.left -= n
        self.received += n
        self.on_bytes(self.received)
        self.wakeup.set()

    def _end(self) -> None:
        self.ended = True
        self._head_failed(ConnectionError("the connection ended before the answer"))
        self.wakeup.set()

    @property
    def length(self) -> int | None:
        """The body's length (known once the head is in)."""
        return None if self.left is None else self.received + self.left

    async def chunks(self) -> AsyncIterator[Chunk]:
        """Full chunks until the body's end; BodyBroken when the connection breaks first."""
        while True:
            try:
                chunk = await self.next_chunk()
            except ConnectionError as exc:
                raise BodyBroken(self.describe(httpx.ReadError(str(exc)))) from None
            if chunk is None:
                return
            yield chunk

    async def next_chunk(self) -> bytearray | memoryview | None:
        """The next full chunk; None at the body's end; the connection's error when it ends
        early (after :meth:`partial` is taken, what arrived can still be kept)."""
        while not self.full:
            if self.left == 0:
                return None
            if self.ended:
                raise self.error or ConnectionError(f"the connection closed {self.left} bytes before the end")
            self.wakeup.clear()
            await self.wakeup.wait()  # the thread has the read timeout
        with self._cond:
            buf, n = self.full.popleft()
            self._cond.notify_all()
        return buf if n == len(buf) else memoryview(buf)[:n]

    def recycle(self, chunk) -> None:
        """A chunk handed out by next_chunk is on disk: its buffer can be filled again."""
        buf = chunk.obj if isinstance(chunk, memoryview) else chunk
        if isinstance(buf, bytearray) and len(buf) == self.chunk_size:
            with self._cond:
                if len(self.spare) < _RAW_QUEUED + 2:
                    self.spare.append(buf)

    def partial(self) -> list:
        """What arrived and was not handed out yet (after the connection broke)."""
        with self._cond:
            pieces = [memoryview(buf)[:n] for buf, n in self.full]
            if self.filling is not None and self.filling[1]:
                buf, n = self.filling
                pieces.append(memoryview(buf)[:n])
            self.full.clear()
            self.filling = None
        return pieces


class RawFetcher:
    """Fetches over a connection of its own (``PenClient.direct_route()``), body read by a thread."""

    def __init__(self, route: DirectRoute, chunk_size: int, describe: Callable[[Exception], PenError]):
        self.route, self.chunk_size, self.describe = route, chunk_size, describe

    @asynccontextmanager
    async def open(
        self, message_id: str, attachment_id: str, start: int, if_range: str | None, on_bytes: Callable[[int], None]
    ) -> AsyncIterator[RawBody]:
        url, headers = download_request(message_id, attachment_id, start=start, if_range=if_range)
        path = self.route.base_url.raw_path.decode("ascii").rstrip("/") + url
        body = await RawBody.open(
            self.route,
            path,
            {**headers, **dict(self.route.headers), "Authorization": self.route.authorization},
            self.chunk_size,
            on_bytes,
            self.describe,
        )
        try:
            yield body
        finally:
            body.close()
