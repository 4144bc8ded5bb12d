"""Fetching an attachment's body: one interface, two ways. No Textual here.

A fetcher opens one GET (``Range``/``If-Range`` from ``pen_client.download_request``) and
yields a :class:`Body`: the answer's status and headers, then the body as chunks for the
one writer in tui.downloads. Two fetchers exist:

* :class:`HttpxFetcher` -- through httpx (``PenClient.download``), which renews the token
  on a 401, goes through proxies, and turns an error status into PenClient's error;
* ``tui.downloads.raw_tls.RawFetcher`` -- the body straight off a TLS connection of its own,
  read by a thread (httpx hands a body over 16 KiB at a time, which caps a download);
  it raises ``RawFallback`` before a byte of the body for anything but a plain 200/206,
  and httpx asks again.

When the connection breaks in the body, ``chunks()`` raises :class:`BodyBroken`; what arrived
and was not handed out yet is in ``partial()``, so the writer keeps it before it raises
``BodyBroken.error``.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Protocol

import httpx

from tui.pen_client import PenClient

__all__ = ["Body", "BodyBroken", "Chunk", "Fetcher", "HttpxBody", "HttpxFetcher"]

Chunk = bytes | bytearray | memoryview


class BodyBroken(Exception):
    """The connection broke in the body; ``error`` is what to raise once what arrived is kept."""

    def __init__(self, error: BaseException):
        super().__init__(str(error))
        self.error = error


class Body(Protocol):
    status_code: int
    headers: Mapping[str, str]

    @property
    def length(self) -> int | None:
        """The body's length when the head says it (before a byte arrives), else None."""

    def chunks(self) -> AsyncIterator[Chunk]:
        """Chunks of about the fetcher's chunk size, until the end; BodyBroken if it breaks."""

    def partial(self) -> list[Chunk]:
        """What arrived and was not handed out yet (after BodyBroken)."""

    def recycle(self, chunk: Chunk) -> None:
        """A chunk handed out is on disk: its buffer may be filled again."""


class Fetcher(Protocol):
    def open(self, message_id: str, attachment_id: str, start: int, if_range: str | None,
             on_bytes: Callable[[int], None]) -> AsyncIterator[Body]:
        """An async context manager: the answer to one GET (``start``: the bytes from there on;
        ``on_bytes``: told the body bytes received so far, as they arrive)."""


class HttpxBody:
    """An httpx response's body, gathered from the network's pieces (a TLS record, 16 KiB, or
    more) into chunks of ``chunk_size`` for the disk. Identity bodies skip httpx's decoder."""

    length = None  # an httpx body is checked as it arrives

    def __init__(self, response: httpx.Response, chunk_size: int, on_bytes: Callable[[int], None]):
        self.response, self.chunk_size, self.on_bytes = response, chunk_size, on_bytes
        self.status_code, self.headers = response.status_code, response.headers
        self.buffer = bytearray()

    async def chunks(self) -> AsyncIterator[Chunk]:
        encoding = self.headers.get("content-encoding", "identity").strip().lower()
        pieces = self.response.aiter_raw() if encoding in ("", "identity") else self.response.aiter_bytes()
        received = 0
        try:
            async for piece in pieces:
                self.buffer += piece
                received += len(piece)
                self.on_bytes(received)
                if len(self.buffer) >= self.chunk_size:
                    chunk, self.buffer = self.buffer, bytearray()
                    yield chunk
        except (httpx.HTTPError, ssl.SSLError, ConnectionError) as exc:
            raise BodyBroken(exc) from exc
        if self.buffer:
            chunk, self.buffer = self.buffer, bytearray()
            yield chunk

    def partial(self) -> list[Chunk]:
        pieces, self.buffer = ([self.buffer] if self.buffer else []), bytearray()
        return pieces

    def recycle(self, chunk: Chunk) -> None:
        pass  # a fresh buffer each time


class HttpxFetcher:
    """Fetches through ``PenClient.download`` (httpx)."""

    def __init__(self, client: PenClient, chunk_size: int):
        self.client, self.chunk_size = client, chunk_size

    @asynccontextmanager
    async def open(self, message_id: str, attachment_id: str, start: int, if_range: str | None,
                   on_bytes: Callable[[int], None]) -> AsyncIterator[HttpxBody]:
        async with self.client.download(message_id, attachment_id, start=start, if_range=if_range) as response:
            yield HttpxBody(response, self.chunk_size, on_bytes)
