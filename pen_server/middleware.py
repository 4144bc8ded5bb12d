"""Pure ASGI middleware: request body limits (before the app reads a byte, and before
authentication), and one log line per request.

Body limits (API calls; the web pages' forms have their own): `POST /uploads` has its own
(the PEN's upload limit, checked by the route);
`POST /messages` and `POST /messages/{id}/notifications/resend` take up to
`max_message_bytes`, and only from a caller with a valid token (checked before the body is
read, so a stranger cannot make the server hold 40 MiB per connection); everything else
takes up to `max_json_bytes`. A `Content-Length` over the limit is answered 413 at once; a
body without one (chunked) is counted as it streams and cut off at the limit. Either way the
connection is closed after the answer, so the rest of the body is never read. A body that
stops arriving for `stall_seconds` is answered 408 (a slow client cannot hold a request
open for ever)."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from urllib.parse import quote

from starlette.exceptions import HTTPException

from pen_server import metrics
from pen_server.errors import error_body

request_log = logging.getLogger("pen_server.requests")
_LARGE = re.compile(r"^/api/v1/messages(/[^/]+/notifications/resend)?$")
_OWN_LIMIT = re.compile(r"^/api/v1/uploads$")
_SECRET_PATH = re.compile(r"^(/api/v1/invitations/)[^/]+")  # the path carries the invitation token
_CLOSE = (b"connection", b"close")
_NOT_SIGNED_IN = "You are not signed in; sign in first."
LINGER_SECONDS = 0.5


class BodyTooLarge(HTTPException):
    """An HTTPException, so that FastAPI's body reading passes it on to the error handler."""

    def __init__(self, limit: int):
        super().__init__(413, f"The request body is larger than the {limit} bytes this PEN takes here; "
                              "send less.", headers={"Connection": "close"})


class NotSignedIn(HTTPException):
    def __init__(self):
        super().__init__(401, _NOT_SIGNED_IN, headers={"WWW-Authenticate": "Bearer", "Connection": "close"})


async def _answer(send, status: int, code: str, message: str, headers: list | None = None) -> None:
    body = json.dumps(error_body(code, message)).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            _CLOSE, *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


def _header(scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return value
    return None


class BodyStalled(HTTPException):
    def __init__(self, seconds: float):
        super().__init__(408, f"The request body stopped arriving for {seconds:g} seconds; send it again.",
                         headers={"Connection": "close"})


class BodyLimit:
    def __init__(self, app, small: int, large: int, signed_in: Callable[[str], Awaitable[bool]],
                 stall_seconds: float = 30.0):
        self.app, self.small, self.large, self.signed_in = app, small, large, signed_in
        self.stall_seconds = stall_seconds

    async def _may_send_large(self, scope) -> bool:
        auth = (_header(scope, b"authorization") or b"").decode("latin-1")
        scheme, _, token = auth.partition(" ")
        return scheme.lower() == "bearer" and bool(token) and await self.signed_in(token.strip())

    def _limit(self, scope) -> int | None:
        if not scope["path"].startswith("/api/"):
            return None  # the web pages' forms have limits of their own (web/core.py, web/uploads.py)
        if scope["method"] != "POST":
            return self.small
        if _OWN_LIMIT.match(scope["path"]):
            return None
        return self.large if _LARGE.match(scope["path"]) else self.small

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = self._limit(scope)
        declared = _header(scope, b"content-length")
        has_body = declared not in (None, b"0") or _header(scope, b"transfer-encoding") is not None
        received, checked, done, closing = 0, False, not has_body, False

        async def sending(message):
            nonlocal closing
            if message["type"] == "http.response.start":
                closing = any(k.lower() == b"connection" and v.lower() == b"close" for k, v in message["headers"])
                if not done and not closing and message["status"] >= 400:
                    # Refused before its body was read (an upload's 401 or 413): the rest of
                    # the body is not worth reading and throwing away.
                    message = {**message, "headers": [*message["headers"], _CLOSE]}
                    closing = True
            elif closing and not done and not message.get("more_body", False):
                # Answered before the body was read, and the connection closes. Closing with
                # unread data resets the connection, which can drop what is not yet sent:
                # the answer gets a moment to reach the client first.
                await send({**message, "more_body": True})
                await asyncio.sleep(LINGER_SECONDS)
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)

        if limit is not None and declared is not None and declared.isdigit():
            if int(declared) > limit:
                return await _answer(sending, 413, "too_large", BodyTooLarge(limit).detail)
            if int(declared) > self.small and not await self._may_send_large(scope):
                return await _answer(sending, 401, "unauthenticated", _NOT_SIGNED_IN,
                                     [(b"www-authenticate", b"Bearer")])
            limit = None  # the server reads no more than the Content-Length

        async def counted():
            nonlocal received, checked, done
            if done:  # the body is in; what follows is the wait for a disconnect
                return await receive()
            try:
                async with asyncio.timeout(self.stall_seconds):
                    message = await receive()
            except TimeoutError:
                raise BodyStalled(self.stall_seconds) from None
            if message["type"] != "http.request":
                return message
            done = not message.get("more_body", False)
            received += len(message.get("body", b""))
            if limit is not None and received > limit:
                raise BodyTooLarge(limit)
            if received > self.small and limit is not None and not checked:
                checked = True
                if not await self._may_send_large(scope):
                    raise NotSignedIn()
            return message

        await self.app(scope, counted, sending)


class RequestLog:
    """One line a request when its answer is complete: client, method, path (no query
    string, no invitation token, no control characters), status, duration; the same as
    fields for the JSON log (logs.py), and counted for GET /metrics by route template."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started, status = time.monotonic(), 0

        async def noted(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, noted)
        finally:
            seconds = time.monotonic() - started
            client = (scope.get("client") or ("-",))[0]
            route = route_template(scope)
            path = loggable_path(scope["path"])
            metrics.request(route, scope["method"], status, seconds)
            request_log.info("%s %s %s %s %d ms", client, scope["method"], path, status or "-", seconds * 1000,
                             extra={"fields": {"event": "request", "client": client, "method": scope["method"][:16],
                                               "path": path, "route": route, "status": status or None,
                                               "ms": round(seconds * 1000, 1)}})


def route_template(scope) -> str:
    """The route that answered, as its template (`/api/v1/messages/{message_id}`): a label
    with a bounded set of values, never an id. `unmatched` when no route took the path."""
    route = scope.get("route")
    template = getattr(route, "path_format", None) or getattr(route, "path", None)
    if not isinstance(template, str) or not template.startswith("/"):
        return "unmatched"
    # A route of a router included with a prefix may name its path without the prefix (as
    # FastAPI 0.16x does): the prefix is what comes before the route's own segments in the
    # path (a prefix the app has, as the route matched). No route here takes a {name:path}.
    parts = scope["path"].split("/")
    own = template.count("/")
    prefix = "/".join(parts[:len(parts) - own]) if len(parts) > own else ""
    return template if template.startswith(prefix + "/") else prefix + template


def loggable_path(path: str) -> str:
    return quote(_SECRET_PATH.sub(r"\1-", path)[:300], safe="/:@!$&'()*+,;=-._~")
