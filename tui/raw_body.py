"""A download's body read straight off its own TLS connection (asyncio BufferedProtocol,
chunk-sized buffers): httpx hands a body over 16 KiB at a time, which caps a download at a
fraction of what the link carries. Used by tui.downloads for a plain 200/206 answer only,
when PenClient.direct_route() gives a route; anything else goes through httpx. No Textual."""

from __future__ import annotations

import asyncio
import collections
import ssl
from collections.abc import Callable

import httpx

from tui.pen_client import DirectRoute, PenError

_RAW_QUEUED = 2  # full chunks waiting for the writer before reading pauses
_HEAD_MAX = 64 << 10
_SCRATCH = 64 << 10


class _RawFallback(Exception):
    """The raw path cannot take this request or answer; httpx does it instead."""


class _RawBody(asyncio.BufferedProtocol):
    """One GET over its own TLS connection (``Connection: close``): the head is parsed here,
    and the body is decrypted by asyncio's SSL layer straight into chunk-sized buffers
    (hundreds of KiB per callback, against httpx's one 16 KiB TLS record per trip through
    httpcore, h11 and three async generators). Full chunks queue for the writer; reading
    pauses while ``_RAW_QUEUED`` of them wait, so memory stays at a few chunks.

    Anything but a plain 200/206 with a Content-Length (an error status, a 401 to renew the
    token on, a chunked or encoded body, a head that does not parse) raises
    :class:`_RawFallback`, and the request is made again through httpx, which has all the
    error handling; a failing network raises what PenClient raises for it."""

    def __init__(self, chunk_size: int, on_bytes: Callable[[int], None]):
        loop = asyncio.get_running_loop()
        self.chunk_size, self.on_bytes = chunk_size, on_bytes
        self.head = bytearray()
        self.head_done: asyncio.Future = loop.create_future()
        self.status_code = 0
        self.headers = httpx.Headers()
        self.left: int | None = None  # body bytes still to come; None until the head is in
        self.received = 0
        self.buf: bytearray | None = None  # the chunk being filled, of chunk_size
        self.filled = 0
        self.limit = 0  # how much of it this body will fill
        self.full: collections.deque = collections.deque()  # (buffer, bytes in it)
        self.spare: list[bytearray] = []  # buffers written out, to fill again
        self.wakeup = asyncio.Event()
        self.lost = False
        self.error: BaseException | None = None
        self.paused = False
        self.transport: asyncio.Transport | None = None
        self._scratch = bytearray(_SCRATCH)

    # -- opening

    @classmethod
    async def open(cls, route: DirectRoute, path: str, headers: dict, chunk_size: int,
                   on_bytes: Callable[[int], None], describe: Callable[[Exception], PenError]) -> "_RawBody":
        """Connect, ask, and read the head. Network failures raise what PenClient raises for
        them (``describe``: Unreachable, CertificateError), as httpx's would."""
        base, ctx, timeout = route.base_url, route.ssl_context, route.timeout
        lines = [f"GET {path} HTTP/1.1", f"Host: {base.netloc.decode('ascii')}", "User-Agent: penmail",
                 *(f"{k}: {v}" for k, v in headers.items()), "Connection: close"]
        if any(c in line for line in lines for c in "\r\n\0"):
            raise _RawFallback("a header that cannot be sent as is")
        request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        loop = asyncio.get_running_loop()
        body = cls(chunk_size, on_bytes)
        connect = timeout.connect if timeout.connect is not None else 60.0
        try:
            async with asyncio.timeout(connect):
                await loop.create_connection(lambda: body, base.host, base.port or 443, ssl=ctx,
                                             server_hostname=base.host)
        except TimeoutError:
            raise describe(httpx.ConnectTimeout("connecting timed out")) from None
        except (OSError, ssl.SSLError) as exc:
            raise describe(httpx.ConnectError(str(exc))) from None
        try:
            body.transport.write(request)
            try:
                async with asyncio.timeout(timeout.read):
                    await asyncio.shield(body.head_done)
            except TimeoutError:
                raise describe(httpx.ReadTimeout("no answer in time")) from None
            except ConnectionError as exc:
                raise describe(httpx.ReadError(str(exc))) from None
            if body.status_code not in (200, 206):
                raise _RawFallback(f"status {body.status_code}")
            encoding = body.headers.get("content-encoding", "identity").strip().lower()
            if body.left is None or encoding not in ("", "identity"):
                raise _RawFallback("a body without a plain Content-Length")
        except BaseException:
            body.close()
            raise
        body.read_timeout = timeout.read
        return body

    def close(self) -> None:
        if self.transport is not None:
            self.transport.abort()
        self.full.clear()
        self.buf = None

    # -- asyncio's side

    def connection_made(self, transport) -> None:
        self.transport = transport

    def get_buffer(self, sizehint: int):
        if not self.left:  # the head (or, past the body's end, bytes that are thrown away)
            return memoryview(self._scratch)  # a view: asyncio reads into slices of it
        if self.buf is None:
            # Buffers are used again: a fresh 1 MiB one is a fresh mmap, whose 256 page
            # faults cost more than the hash on this VM.
            self.buf = self.spare.pop() if self.spare else bytearray(self.chunk_size)
            self.filled, self.limit = 0, min(self.chunk_size, self.left)
        return memoryview(self.buf)[self.filled:self.limit]

    def buffer_updated(self, nbytes: int) -> None:
        if self.left is None:
            self._head_bytes(bytes(self._scratch[:nbytes]))
        elif self.left:
            self.filled += nbytes
            self._took(nbytes)

    def eof_received(self) -> bool:
        return False  # close

    def connection_lost(self, exc: BaseException | None) -> None:
        self.lost, self.error = True, exc
        if not self.head_done.done():
            self.head_done.set_exception(ConnectionError(f"the connection closed before the answer ({exc})"))
        self.wakeup.set()

    # -- the head and the body

    def _head_bytes(self, data: bytes) -> None:
        self.head += data
        end = self.head.find(b"\r\n\r\n")
        if end < 0:
            if len(self.head) > _HEAD_MAX:
                self._give_up("a head too long")
            return
        head, rest = bytes(self.head[:end]), bytes(self.head[end + 4:])
        self.head = bytearray()
        try:
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
        except ValueError:
            self._give_up("a head that does not parse")
            return
        self.status_code, self.headers = int(status), httpx.Headers(pairs)
        length = self.headers.get_list("content-length")
        if self.status_code in (200, 206) and len(set(length)) == 1 and length[0].isdigit() \
                and "transfer-encoding" not in self.headers:
            self.left = int(length[0])
        self.head_done.set_result(None)
        if self.left is None:
            self.transport.pause_reading()  # not ours to read: httpx asks again
            return
        if self.left == 0:
            self._push()
        view = memoryview(rest)[: self.left]
        while view:  # body bytes that came with the head
            target = self.get_buffer(len(view))
            n = min(len(target), len(view))
            target[:n] = view[:n]
            view = view[n:]
            self.filled += n
            self._took(n)

    def _give_up(self, why: str) -> None:
        if not self.head_done.done():
            self.head_done.set_exception(_RawFallback(why))
        if self.transport is not None:
            self.transport.abort()

    def _took(self, n: int) -> None:
        self.left -= n
        self.received += n
        if self.filled == self.limit or not self.left:
            self._push()
        self.on_bytes(self.received)

    def _push(self) -> None:
        if self.buf is not None:
            self.full.append((self.buf, self.filled))
            self.buf, self.filled = None, 0
        if len(self.full) >= _RAW_QUEUED and not self.paused and not self.lost:
            self.paused = True
            self.transport.pause_reading()
        self.wakeup.set()

    # -- the consumer's side

    async def next_chunk(self) -> bytearray | memoryview | None:
        """The next full chunk; None at the body's end; the connection's error when it ends
        early (after :meth:`partial` is taken, what arrived can still be kept)."""
        while not self.full:
            if self.left == 0:
                return None
            if self.lost:
                raise ConnectionError(f"the connection closed {self.left} bytes before the end ({self.error})")
            self.wakeup.clear()
            try:
                async with asyncio.timeout(self.read_timeout):
                    await self.wakeup.wait()
            except TimeoutError:
                raise ConnectionError("no data arrived in time") from None
        buf, n = self.full.popleft()
        chunk = buf if n == len(buf) else memoryview(buf)[:n]
        if self.paused and len(self.full) < _RAW_QUEUED and not self.lost:
            self.paused = False
            self.transport.resume_reading()
        return chunk

    def recycle(self, chunk) -> None:
        """A chunk handed out by next_chunk is on disk: its buffer can be filled again."""
        buf = chunk.obj if isinstance(chunk, memoryview) else chunk
        if isinstance(buf, bytearray) and len(buf) == self.chunk_size and len(self.spare) < _RAW_QUEUED + 2:
            self.spare.append(buf)

    def partial(self) -> list:
        """What arrived and was not handed out yet (after the connection broke)."""
        pieces = [memoryview(buf)[:n] for buf, n in self.full]
        if self.buf is not None and self.filled:
            pieces.append(memoryview(self.buf)[: self.filled])
        self.full.clear()
        self.buf = None
        return pieces
