"""The PEN API for Python callers: async, on httpx, no Textual. Typed objects for the
contract's objects, one exception class per kind of failure (each with a sentence for a
person), access-token refresh that callers never see, a timeout and an overall deadline per
call, and TLS always verified (system store, or the configured CA file)."""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import quote, urlsplit

# httpx imports its command-line tool (click, pygments, rich.progress: ~25 ms of start-up)
# whenever click is installed, as it is beside the server; penmail never runs it. A None in
# sys.modules makes that one import fail, and httpx then goes on without its CLI.
sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
import httpx  # noqa: E402 (after the line above, on purpose)

from tui.text.format import iso  # noqa: E402

API = "/api/v1"
CHANNEL_HEADER = "X-PEN-Channel"  # what the PEN's audit trail records a request as coming through


# ---------------------------------------------------------------- errors


class PenError(Exception):
    """A failure, with `message` as one sentence for a person."""

    def __init__(self, message: str, *, code: str = "error", status: int | None = None,
                 fields: dict | None = None, retry_after: float | None = None):
        super().__init__(message)
        self.message, self.code, self.status = message, code, status
        self.fields = fields or {}
        self.retry_after = retry_after


class Unreachable(PenError):
    """The server could not be reached or did not answer in time."""


class CertificateError(PenError):
    """The server's certificate is not trusted."""


class NotSignedIn(PenError):
    """No valid sign-in: the person must sign in again."""


class InvalidCredentials(PenError):
    """Wrong e-mail address or password."""


class RateLimited(PenError):
    pass


class NotFound(PenError):
    pass


class Forbidden(PenError):
    pass


class Conflict(PenError):
    pass


class ValidationFailed(PenError):
    pass


class TooLarge(PenError):
    pass


class ServerError(PenError):
    """The server failed or is unavailable for now."""


class ProtocolError(PenError):
    """The server answered something that is not the PEN API."""


class Gone(PenError):
    """The message can no longer be read by the caller (410): its sender withdrew it (code
    ``revoked``) or its end date passed (code ``expired``)."""


_BY_CODE = {
    "invalid_credentials": InvalidCredentials, "unauthenticated": NotSignedIn, "token_expired": NotSignedIn,
    "rate_limited": RateLimited, "not_found": NotFound, "forbidden": Forbidden,
    "guest_recipient_forbidden": Forbidden, "conflict": Conflict, "account_exists": Conflict,
    "validation_failed": ValidationFailed, "idempotency_key_reused": ValidationFailed, "too_large": TooLarge,
    "unavailable": ServerError, "revoked": Gone, "expired": Gone,
}
_BY_STATUS = {400: ValidationFailed, 401: NotSignedIn, 403: Forbidden, 404: NotFound, 409: Conflict,
              410: Gone, 413: TooLarge, 422: ValidationFailed, 429: RateLimited}


# ---------------------------------------------------------------- objects


def parse_time(value: str | None) -> datetime | None:
    """An RFC 3339 time of the API (ValueError when it is not one), or None."""
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


@dataclass(frozen=True)
class Address:
    email: str
    name: str | None = None

    @classmethod
    def of(cls, d: dict) -> Address:
        return cls(str(d.get("email", "")), d.get("name") or None)

    def to_json(self) -> dict:
        return {"email": self.email, "name": self.name}

    def __str__(self) -> str:
        return f"{self.name} <{self.email}>" if self.name else self.email


@dataclass(frozen=True)
class User:
    id: str
    email: str
    display_name: str
    role: str
    package: str | None

    @classmethod
    def of(cls, d: dict) -> User:
        return cls(d["id"], d["email"], d.get("display_name") or "", d.get("role", "member"), d.get("package"))


@dataclass(frozen=True)
class Attachment:
    id: str
    filename: str
    content_type: str
    size: int
    sha256: str

    @classmethod
    def of(cls, d: dict) -> Attachment:
        return cls(d["id"], d.get("filename") or "", d.get("content_type") or "application/octet-stream",
                   int(d.get("size", 0)), str(d.get("sha256", "")).lower())


@dataclass(frozen=True)
class Notification:
    recipient: Address
    kind: str
    status: str
    attempts: int
    last_error: str | None
    updated_at: datetime | None
    # The first time this recipient read the message or downloaded one of its files (over
    # HTTPS, never a pixel); None until then.
    opened_at: datetime | None = None
    revoked_at: datetime | None = None  # when the sender withdrew the message from this recipient

    @classmethod
    def of(cls, d: dict) -> Notification:
        return cls(Address.of(d["recipient"]), d.get("kind", "to"), d.get("status", "queued"),
                   int(d.get("attempts", 0)), d.get("last_error"), parse_time(d.get("updated_at")),
                   parse_time(d.get("opened_at")), parse_time(d.get("revoked_at")))


@dataclass(frozen=True)
class Summary:
    id: str
    thread_id: str
    folder: str
    sender: Address
    to: tuple[Address, ...]
    cc: tuple[Address, ...]
    subject: str
    sent_at: datetime
    unread: bool
    attachment_count: int
    size: int
    snippet: str
    # In a list of threads (GET /threads), this summary is a thread's newest message there:
    # how many of the folder's messages the thread holds, and how many of those are unread.
    thread_count: int = 0
    thread_unread: int = 0
    # The end date after which recipients can no longer read it (None: none).
    expires_at: datetime | None = None
    # A recipient's copy: when the sender withdrew it.
    revoked_at: datetime | None = None
    # What the PEN said the last time the caller tried to read it: "revoked" (withdrawn) or
    # "expired" (410); None while it could (tui.text.format.gone_state adds an end date passed since).
    gone: str | None = None

    @classmethod
    def fields_of(cls, d: dict) -> dict:
        return dict(id=d["id"], thread_id=d.get("thread_id", ""), folder=d.get("folder", "inbox"),
                    sender=Address.of(d.get("from") or {}), to=tuple(Address.of(a) for a in d.get("to", [])),
                    cc=tuple(Address.of(a) for a in d.get("cc", [])), subject=d.get("subject") or "",
                    sent_at=parse_time(d.get("sent_at")), unread=bool(d.get("unread")),
                    attachment_count=int(d.get("attachment_count", 0)), size=int(d.get("size", 0)),
                    snippet=d.get("snippet") or "", expires_at=parse_time(d.get("expires_at")),
                    revoked_at=parse_time(d.get("revoked_at")), gone="revoked" if d.get("revoked_at") else None)

    @classmethod
    def of(cls, d: dict) -> Summary:
        return cls(**cls.fields_of(d))


@dataclass(frozen=True)
class Message(Summary):
    bcc: tuple[Address, ...] = ()
    body_text: str = ""
    body_html: str | None = None
    attachments: tuple[Attachment, ...] = ()
    in_reply_to: str | None = None
    notifications: tuple[Notification, ...] = ()

    @classmethod
    def of(cls, d: dict) -> Message:
        return cls(**cls.fields_of(d), bcc=tuple(Address.of(a) for a in d.get("bcc", [])),
                   body_text=d.get("body_text") or "", body_html=d.get("body_html"),
                   attachments=tuple(Attachment.of(a) for a in d.get("attachments", [])),
                   in_reply_to=d.get("in_reply_to"),
                   notifications=tuple(Notification.of(n) for n in d.get("notifications", [])))


@dataclass(frozen=True)
class AuditRow:
    """One row of a message's audit trail: when, who (a member's or a guest's address), what
    (``read``, ``download``, ``reply``, ``forward``, ``revoke``, ``expiry``, ``notified``,
    ``bounce``), whom it concerns (``recipient``), which attachment, through what (``api``,
    ``web``, ``intercept``, ``smtp``) and from which client address."""

    id: int
    at: datetime | None
    action: str
    actor: str | None
    recipient: str | None
    message_id: str | None
    attachment_id: str | None
    channel: str
    client: str | None
    detail: dict = field(default_factory=dict)

    @classmethod
    def of(cls, d: dict) -> AuditRow:
        def text(key: str) -> str | None:
            value = d.get(key)
            return str(value) if value not in (None, "") else None

        detail = d.get("detail")
        return cls(int(d.get("id") or 0), parse_time(d.get("at")), str(d.get("action") or ""), text("actor"),
                   text("recipient"), text("message_id"), text("attachment_id"), str(d.get("channel") or ""),
                   text("client"), detail if isinstance(detail, dict) else {})


@dataclass(frozen=True)
class Page:
    items: tuple[Summary, ...]
    next_cursor: str | None
    total: int
    # False when a search found more than the PEN counts (1,000): `total` is then at least that.
    exact: bool = True


@dataclass(frozen=True)
class FolderCount:
    name: str
    total: int
    unread: int

    @classmethod
    def of(cls, d: dict) -> FolderCount:
        return cls(str(d.get("name", "")), int(d.get("total", 0)), int(d.get("unread", 0)))


@dataclass(frozen=True)
class PenInfo:
    name: str
    max_upload_bytes: int


@dataclass(frozen=True)
class Invitation:
    email: str
    pen_name: str
    sender: Address
    subject: str
    message_id: str
    registered: bool


@dataclass(frozen=True)
class Event:
    kind: str  # "message.new" | "notification.updated" | "resync" | "stream.open" ...
    data: dict = field(default_factory=dict)
    # "stream.open" only: whether the PEN replays what was missed since the last event this
    # client saw (it was given Last-Event-ID); if not, the caller fetches its lists again.
    caught_up: bool = False


# ---------------------------------------------------------------- the client


def rfc3339(when: datetime | str) -> str:
    """A time as the API writes it (UTC, "Z"); a string is taken to be one already."""
    return when if isinstance(when, str) else iso(when.astimezone()) or ""


def tls_context(ca_file: str | os.PathLike | None) -> ssl.SSLContext:
    """Verification is always on: the system store, or the configured CA file."""
    if ca_file:
        path = Path(ca_file).expanduser()
        if not path.is_file():
            raise CertificateError(f"The CA file {path} does not exist; fix ca_file in your configuration.",
                                   code="ca_file")
        try:
            ctx = ssl.create_default_context(cafile=str(path))
        except ssl.SSLError:
            raise CertificateError(f"The CA file {path} holds no certificate that can be read.",
                                   code="ca_file") from None
    else:
        ctx = ssl.create_default_context()
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


class DirectRoute(NamedTuple):
    """The PEN's API address, the TLS context this client verifies it with, the client's
    timeouts, the Authorization header of the current sign-in, and the client's other
    headers of its own (the audit trail's channel)."""

    base_url: httpx.URL
    ssl_context: ssl.SSLContext
    timeout: httpx.Timeout
    authorization: str
    headers: tuple[tuple[str, str], ...] = ()


def download_request(message_id: str, attachment_id: str, *, start: int = 0,
                     if_range: str | None = None) -> tuple[str, dict[str, str]]:
    """(path below the API root, headers) of an attachment's GET: the bytes from ``start`` on
    (``Range``), the whole file again if it changed (``If-Range``, with ``start`` only)."""
    url = f"/messages/{quote(message_id, safe='')}/attachments/{quote(attachment_id, safe='')}"
    headers = {"Accept-Encoding": "identity"}
    if start:
        headers["Range"] = f"bytes={start}-"
        if if_range:
            headers["If-Range"] = if_range
    return url, headers


def _event_id(value: str) -> str | None:
    """An event id as the PEN gives them (`id:` lines, Pen-Event-Id), or None."""
    return value if value.isdigit() and len(value) <= 20 else None


class PenClient:
    """One sign-in to one PEN. `on_refresh_token` is called with each new refresh token (so
    the caller can keep it in the keyring), and with None when the sign-in ends.

    `refresh_guard`, when given, wraps every refresh: it is called with the refresh token
    this client holds and returns an async context manager that yields the refresh token to
    use instead (the freshest one, where another process shares the sign-in and may have
    rotated it; or the same one); the refresh and its `on_refresh_token` call happen inside
    it. The client knows nothing of keyrings or locks (tui/signin/session.py provides the guard)."""

    def __init__(self, server: str, *, ca_file: str | os.PathLike | None = None, timeout: float = 15.0,
                 deadline: float = 60.0, on_refresh_token: Callable[[str | None], None] | None = None,
                 transport: httpx.AsyncBaseTransport | None = None,
                 refresh_guard: Callable[[str], AbstractAsyncContextManager[str | None]] | None = None):
        parts = urlsplit(server)
        try:
            _ = parts.port  # raises ValueError for a bad port
        except ValueError:
            raise PenError(f"The server address {server!r} has a port that is not a number.", code="config") from None
        if parts.scheme != "https" or not parts.hostname:
            raise PenError(f"The server address must start with https://, not {server!r}.", code="config")
        self.server = server.rstrip("/")
        self.deadline = deadline
        self.on_refresh_token = on_refresh_token
        self.refresh_guard = refresh_guard
        self.user: User | None = None
        self._access: str | None = None
        self._refresh: str | None = None
        self._last_event_id: str | None = None  # of the event stream, for Last-Event-ID
        # Until the stream has an id of its own: the oldest Pen-Event-Id of the lists read (the
        # PEN's newest event as each was read); the stream opens from there, so what came
        # after those lists is replayed instead of every list being fetched again.
        self._listed_at: int | None = None
        self._refresh_lock = asyncio.Lock()
        self._ssl_context = tls_context(ca_file)
        self._own_transport = transport is None
        self._http = httpx.AsyncClient(base_url=self.server + API, verify=self._ssl_context,
                                       timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
                                       transport=transport, headers={"User-Agent": "penmail"},
                                       follow_redirects=False)

    async def __aenter__(self) -> PenClient:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    @property
    def signed_in(self) -> bool:
        return self._access is not None

    def direct_route(self) -> DirectRoute | None:
        """How to make one request over a connection of one's own, as tui/downloads/raw_tls.py does
        for a download's body; None when only httpx can make it: requests that go through a
        proxy (from the environment) or a transport the caller gave, or no sign-in yet."""
        if not self._own_transport or self._access is None:
            return None
        try:
            proxied = any(mount is not None for mount in self._http._mounts.values())
        except AttributeError:  # another httpx than the one this was written for: ask httpx
            return None
        if proxied:
            return None
        channel = self._http.headers.get(CHANNEL_HEADER)
        own = ((CHANNEL_HEADER, channel),) if channel else ()
        return DirectRoute(self._http.base_url, self._ssl_context, self._http.timeout, f"Bearer {self._access}", own)

    def use_channel(self, channel: str) -> None:
        """Name what this client's requests come through, for the PEN's audit trail:
        "intercept" for `penmail intercept` (the PEN records "api" otherwise)."""
        self._http.headers[CHANNEL_HEADER] = channel

    @property
    def refresh_token(self) -> str | None:
        return self._refresh

    # ------------------------------------------------------------ plumbing

    def describe_failure(self, exc: Exception) -> PenError:
        """The PenError (one sentence) for a network failure of httpx's kind."""
        host = urlsplit(self.server).netloc
        text = str(exc)
        if isinstance(exc, httpx.TimeoutException):
            return Unreachable(f"The PEN at {host} did not answer in time; check your network and try again.",
                               code="timeout")
        if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
            return CertificateError(
                f"The certificate of {host} is not trusted; set ca_file to the PEN's CA certificate.",
                code="certificate")
        if isinstance(exc, (httpx.ConnectError, httpx.NetworkError, httpx.RemoteProtocolError)):
            reason = "the connection was refused" if "refused" in text.lower() else "the connection failed"
            return Unreachable(f"Could not reach the PEN at {host} ({reason}); check the server address and "
                               f"that it is running.", code="unreachable")
        return Unreachable(f"Talking to the PEN at {host} failed ({type(exc).__name__}).", code="transport")

    @staticmethod
    def _error_of(response: httpx.Response) -> PenError:
        code, message, fields = "error", None, None
        try:
            err = response.json().get("error", {})
            code, message, fields = err.get("code", code), err.get("message"), err.get("fields")
        except (ValueError, AttributeError):
            pass
        if not isinstance(message, str) or not message:
            message = f"The PEN answered {response.status_code} {response.reason_phrase}."
        retry = response.headers.get("Retry-After")
        retry_after = float(retry) if retry and retry.isdigit() else None
        cls = _BY_CODE.get(code) or _BY_STATUS.get(response.status_code)
        if cls is None:
            cls = ServerError if response.status_code >= 500 else PenError
        return cls(message, code=code, status=response.status_code, fields=fields, retry_after=retry_after)

    def _auth(self) -> dict:
        return {"Authorization": f"Bearer {self._access}"} if self._access else {}

    async def _send(self, method: str, url: str, **kw) -> httpx.Response:
        try:
            return await self._http.request(method, url, headers={**kw.pop("headers", {}), **self._auth()}, **kw)
        except (httpx.HTTPError, httpx.InvalidURL, ssl.SSLError, OSError) as exc:
            raise self.describe_failure(exc) from None

    async def _call(self, method: str, url: str, *, auth: bool = True, ok=(200,), **kw) -> httpx.Response:
        """One API call within the deadline, refreshing the access token once if it expired."""
        try:
            async with asyncio.timeout(self.deadline):
                if auth and not self._access:
                    await self._renew()
                response = await self._send(method, url, **kw)
                if auth and response.status_code == 401 and self._refresh:
                    await self._renew(expired=self._access)
                    response = await self._send(method, url, **kw)
        except TimeoutError:
            raise Unreachable(f"The PEN did not finish answering within {self.deadline:.0f} seconds; "
                              f"try again.", code="deadline") from None
        if response.status_code not in ok:
            raise self._error_of(response)
        return response

    def _json(self, response: httpx.Response) -> Any:
        try:
            return response.json()
        except ValueError:
            raise ProtocolError("The server's answer is not the PEN API's JSON; check the server address.",
                                code="protocol") from None

    def _take_tokens(self, body: dict) -> User:
        try:
            self._access, self._refresh = body["access_token"], body["refresh_token"]
            self.user = User.of(body["user"])
        except (KeyError, TypeError):
            raise ProtocolError("The server's sign-in answer is not the PEN API's.", code="protocol") from None
        if self.on_refresh_token:
            self.on_refresh_token(self._refresh)
        return self.user

    async def _renew(self, expired: str | None = None) -> None:
        async with self._refresh_lock:
            if expired is not None and self._access != expired:
                return  # another call renewed it while we waited
            if not self._refresh:
                raise NotSignedIn("You are not signed in; sign in first.", code="unauthenticated")
            if self.refresh_guard is None:
                await self._refresh_now()
                return
            async with self.refresh_guard(self._refresh) as freshest:
                if freshest:
                    self._refresh = freshest  # another process rotated it: ours is dead
                await self._refresh_now()

    async def _refresh_now(self) -> None:
        """Trade the refresh token for new tokens (the caller holds `_refresh_lock`)."""
        response = await self._send("POST", "/auth/refresh", json={"refresh_token": self._refresh})
        if response.status_code != 200:
            self._access = self._refresh = None
            if self.on_refresh_token:
                self.on_refresh_token(None)
            err = self._error_of(response)
            if isinstance(err, (NotSignedIn, ValidationFailed)):
                raise NotSignedIn("Your sign-in has ended; sign in again.", code=err.code, status=err.status)
            raise err
        self._take_tokens(self._json(response))

    # ------------------------------------------------------------ accounts

    async def login(self, email: str, password: str) -> User:
        r = await self._call("POST", "/auth/login", auth=False, json={"email": email, "password": password})
        return self._take_tokens(self._json(r))

    async def resume(self, refresh_token: str) -> User:
        """Sign in again with a remembered refresh token."""
        self._refresh = refresh_token
        await self._renew()
        return self.user

    async def logout(self) -> None:
        try:
            if self._access or self._refresh:
                await self._call("POST", "/auth/logout", ok=(204,))
        except (NotSignedIn, NotFound):
            pass
        finally:
            self._access = self._refresh = None
            self.user = None
            if self.on_refresh_token:
                self.on_refresh_token(None)

    async def me(self) -> User:
        self.user = User.of(self._json(await self._call("GET", "/me")))
        return self.user

    async def health(self) -> None:
        """The PEN answers over trusted TLS (GET /health, no sign-in); PenError otherwise."""
        body = self._json(await self._call("GET", "/health", auth=False))
        if not isinstance(body, dict) or body.get("status") != "ok":
            raise ProtocolError("The server's answer is not the PEN API's; check the server address.",
                                code="protocol")

    async def pen_info(self) -> PenInfo:
        d = self._json(await self._call("GET", "/pen"))
        return PenInfo(str(d.get("name", "")), int(d.get("max_upload_bytes", 0)))

    async def invitation(self, token: str) -> Invitation:
        d = self._json(await self._call("GET", f"/invitations/{quote(token, safe='')}", auth=False))
        return Invitation(d["email"], d.get("pen_name", ""), Address.of(d.get("sender") or {}),
                          d.get("subject", ""), d["message_id"], bool(d.get("registered")))

    async def register(self, token: str, display_name: str, password: str) -> User:
        r = await self._call("POST", f"/invitations/{quote(token, safe='')}/register", auth=False, ok=(201,),
                             json={"display_name": display_name, "password": password})
        return self._take_tokens(self._json(r))

    # ------------------------------------------------------------ messages

    async def list_messages(self, folder: str = "inbox", *, limit: int = 50, cursor: str | None = None,
                            unread: bool | None = None, q: str | None = None, order: str = "newest") -> Page:
        """A page of a folder, newest first, or with order="oldest" from the other end (its
        cursors are its own: a cursor from one order is refused by the other)."""
        params: dict[str, Any] = {"folder": folder, "limit": limit}
        if order != "newest":
            params["order"] = order
        if cursor:
            params["cursor"] = cursor
        if unread is not None:
            params["unread"] = "true" if unread else "false"
        if q:
            params["q"] = q
        d = self._json(self._listed(await self._call("GET", "/messages", params=params)))
        return Page(tuple(Summary.of(s) for s in d.get("items", [])), d.get("next_cursor"), int(d.get("total", 0)),
                    d.get("total_exact") is not False)

    def _listed(self, response: httpx.Response) -> httpx.Response:
        """Note a list's Pen-Event-Id while the event stream has no id of its own."""
        value = _event_id(response.headers.get("Pen-Event-Id", ""))
        if self._last_event_id is None and value is not None:
            self._listed_at = int(value) if self._listed_at is None else min(self._listed_at, int(value))
        return response

    async def list_threads(self, folder: str = "inbox", *, limit: int = 50, cursor: str | None = None,
                           order: str = "newest") -> Page:
        """A page of a folder's threads: each thread's newest message there, with the thread's
        count and unread count in that folder (GET /threads), newest first or oldest first."""
        params: dict[str, Any] = {"folder": folder, "limit": limit}
        if order != "newest":
            params["order"] = order
        if cursor:
            params["cursor"] = cursor
        d = self._json(self._listed(await self._call("GET", "/threads", params=params)))
        items = []
        for t in d.get("items", []):
            fields = Summary.fields_of(t.get("latest") or {})
            fields.update(thread_count=int(t.get("count", 1)), thread_unread=int(t.get("unread", 0)))
            items.append(Summary(**fields))
        return Page(tuple(items), d.get("next_cursor"), int(d.get("total", 0)))

    async def thread_messages(self, thread_id: str, *, folder: str | None = None, limit: int = 50,
                              cursor: str | None = None, order: str = "oldest") -> Page:
        """The caller's messages of one thread, in every folder or one (GET /threads/{id})."""
        params: dict[str, Any] = {"limit": limit, "order": order}
        if folder:
            params["folder"] = folder
        if cursor:
            params["cursor"] = cursor
        d = self._json(await self._call("GET", f"/threads/{quote(thread_id, safe='')}", params=params))
        return Page(tuple(Summary.of(s) for s in d.get("items", [])), d.get("next_cursor"), int(d.get("total", 0)))

    async def folders(self) -> list[FolderCount]:
        """Each folder's name, total and unread count (GET /folders)."""
        d = self._json(self._listed(await self._call("GET", "/folders")))
        return [FolderCount.of(f) for f in d.get("items", [])]

    async def addresses(self, prefix: str, limit: int = 10) -> list[Address]:
        """The members and the people of the caller's messages whose name or address starts
        with `prefix` (GET /addresses), with their stored names."""
        d = self._json(await self._call("GET", "/addresses", params={"prefix": prefix[:100], "limit": limit}))
        return [Address.of(a) for a in d.get("items", []) if isinstance(a, dict)]

    async def get_message(self, message_id: str) -> Message:
        return Message.of(self._json(await self._call("GET", f"/messages/{quote(message_id, safe='')}")))

    async def update_message(self, message_id: str, *, unread: bool | None = None,
                             folder: str | None = None) -> Summary:
        body = {k: v for k, v in (("unread", unread), ("folder", folder)) if v is not None}
        return Summary.of(self._json(await self._call("PATCH", f"/messages/{quote(message_id, safe='')}",
                                                      json=body)))

    async def delete_message(self, message_id: str) -> None:
        await self._call("DELETE", f"/messages/{quote(message_id, safe='')}", ok=(204,))

    async def send(self, *, to: list[Address], subject: str, body_text: str, idempotency_key: str,
                   cc: Sequence[Address] = (), bcc: Sequence[Address] = (), body_html: str | None = None,
                   in_reply_to: str | None = None, attachments: Sequence[str] = (),
                   expires_at: datetime | str | None = None) -> Message:
        """``expires_at``: the end date after which recipients can no longer read it."""
        payload: dict[str, Any] = {"to": [a.to_json() for a in to], "cc": [a.to_json() for a in cc],
                                   "bcc": [a.to_json() for a in bcc], "subject": subject, "body_text": body_text,
                                   "attachments": list(attachments)}
        if body_html is not None:
            payload["body_html"] = body_html
        if expires_at is not None:
            payload["expires_at"] = rfc3339(expires_at)
        if in_reply_to:
            payload["in_reply_to"] = in_reply_to
        r = await self._call("POST", "/messages", ok=(201,), json=payload,
                             headers={"Idempotency-Key": idempotency_key})
        return Message.of(self._json(r))

    async def notifications(self, message_id: str) -> list[Notification]:
        d = self._json(await self._call("GET", f"/messages/{quote(message_id, safe='')}/notifications"))
        return [Notification.of(n) for n in d.get("items", [])]

    async def resend(self, message_id: str, recipients: list[str] | None = None) -> list[Notification]:
        body = {"recipients": recipients} if recipients is not None else {}
        d = self._json(await self._call("POST", f"/messages/{quote(message_id, safe='')}/notifications/resend",
                                        ok=(202,), json=body))
        return [Notification.of(n) for n in d.get("items", [])]

    async def revoke(self, message_id: str, recipients: Sequence[str] | None = None) -> Message:
        """Withdraw a message the caller sent: from everyone, or from these recipients (by
        e-mail address). They can no longer read it; the sender keeps its copy."""
        body = {"recipients": list(recipients)} if recipients is not None else {}
        return Message.of(self._json(await self._call("POST", f"/messages/{quote(message_id, safe='')}/revoke",
                                                      json=body)))

    async def set_expiry(self, message_id: str, expires_at: datetime | str | None) -> Message:
        """Move the end date of a message the caller sent, or remove it (None)."""
        body = {"expires_at": rfc3339(expires_at) if expires_at is not None else None}
        return Message.of(self._json(await self._call("PUT", f"/messages/{quote(message_id, safe='')}/expiry",
                                                      json=body)))

    async def audit(self, message_id: str) -> list[AuditRow]:
        """The audit trail of a message the caller sent, oldest first (every page of it)."""
        rows: list[AuditRow] = []
        cursor: str | None = None
        while True:
            params = {"cursor": cursor} if cursor else None
            d = self._json(await self._call("GET", f"/messages/{quote(message_id, safe='')}/audit", params=params))
            rows += [AuditRow.of(r) for r in d.get("items", []) if isinstance(r, dict)]
            cursor = d.get("next_cursor")
            if not cursor:
                return rows

    # ------------------------------------------------------------ files

    async def upload(self, path: str | os.PathLike, *, content_type: str = "application/octet-stream",
                     progress: Callable[[int, int], None] | None = None, chunk_size: int = 1 << 20) -> Attachment:
        """Stream a file to the PEN (never held whole in memory)."""
        path = Path(path)
        size = path.stat().st_size

        async def chunks():
            sent = 0
            with path.open("rb") as f:
                while True:
                    chunk = await asyncio.to_thread(f.read, chunk_size)
                    if not chunk:
                        return
                    sent += len(chunk)
                    if progress:
                        progress(sent, size)
                    yield chunk

        url = f"/uploads?filename={quote(path.name, safe='')}"
        headers = {"Content-Type": content_type, "Content-Length": str(size)}
        # Uploads can be long: the per-call deadline does not apply, the read timeout does.
        if not self._access:
            await self._renew()
        response = await self._send("POST", url, content=chunks(), headers=headers)
        if response.status_code == 401 and self._refresh:
            await self._renew(expired=self._access)
            response = await self._send("POST", url, content=chunks(), headers=headers)
        if response.status_code != 201:
            raise self._error_of(response)
        return Attachment.of(self._json(response))

    @asynccontextmanager
    async def download(self, message_id: str, attachment_id: str, *, start: int = 0,
                       if_range: str | None = None) -> AsyncIterator[httpx.Response]:
        """The attachment's response, streaming; `start` asks for the bytes from there on
        (206), `if_range` makes a changed file come back whole (200)."""
        url, headers = download_request(message_id, attachment_id, start=start, if_range=if_range)
        if not self._access:
            await self._renew()
        for attempt in (1, 2):
            try:
                request = self._http.build_request("GET", url, headers={**headers, **self._auth()})
                response = await self._http.send(request, stream=True)
            except httpx.HTTPError as exc:
                raise self.describe_failure(exc) from None
            if response.status_code == 401 and attempt == 1 and self._refresh:
                await response.aclose()
                await self._renew(expired=self._access)
                continue
            try:
                if response.status_code not in (200, 206):
                    await response.aread()
                    raise self._error_of(response)
                yield response
            except httpx.HTTPError as exc:
                raise self.describe_failure(exc) from None
            finally:
                await response.aclose()
            return

    # ------------------------------------------------------------ events

    async def events(self) -> AsyncIterator[Event]:
        """Server-sent events until the connection ends (the caller reconnects). A reconnect
        sends the id of the last event seen (Last-Event-ID), so the PEN replays what came in
        between, from whichever of its processes answers; when it cannot, it sends `resync`."""
        if not self._access:
            await self._renew()
        for attempt in (1, 2):
            headers = self._auth()
            if self._last_event_id is None and self._listed_at is not None:
                self._last_event_id = str(self._listed_at)  # the lists read are what it catches up on
            resuming = self._last_event_id is not None
            if resuming:
                headers["Last-Event-ID"] = str(self._last_event_id)
            try:
                async with self._http.stream("GET", "/events", headers=headers,
                                             timeout=httpx.Timeout(10.0, read=45.0)) as response:
                    if response.status_code == 401 and attempt == 1 and self._refresh:
                        await self._renew(expired=self._access)
                        continue
                    if response.status_code != 200:
                        await response.aread()
                        raise self._error_of(response)
                    # Without a replay, events from before this point were missed: callers
                    # catch up on this one.
                    yield Event("stream.open", caught_up=resuming)
                    kind, data, event_id = "message", list[str](), None
                    async for line in response.aiter_lines():
                        if line == "":
                            if data:
                                try:
                                    payload = json.loads("\n".join(data))
                                except ValueError:
                                    payload = {}
                                if event_id is not None:
                                    self._last_event_id = event_id
                                yield Event(kind, payload if isinstance(payload, dict) else {})
                            kind, data, event_id = "message", [], None
                        elif line.startswith(":"):
                            continue
                        elif line.startswith("event:"):
                            kind = line[6:].strip()
                        elif line.startswith("data:"):
                            data.append(line[5:].lstrip())
                        elif line.startswith("id:"):
                            value = line[3:].strip()
                            event_id = _event_id(value)
                    return
            except httpx.HTTPError as exc:
                raise self.describe_failure(exc) from None
