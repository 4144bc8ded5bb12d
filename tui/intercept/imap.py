"""Replacing notifications in IMAP folders (imapclient: maintained, IDLE, modified UTF-7
folder names, literals, and the parsing of responses that imaplib leaves to its caller).

For each folder: SEARCH for mail with an ``X-PEN-Message`` header naming the server,
FETCH each one (size, flags, internal date, then its bytes, one message at a time), and
for a notification of the PEN: SEARCH the folder for the real message's Message-ID
(carrying our keyword where the server keeps keywords, so a forged mail with that
Message-ID cannot stand in for it); APPEND the real message with the notification's
flags and internal date when none is there; and only then move the notification to the
Trash (MOVE, or COPY + \\Deleted + UID EXPUNGE) or delete it (never a plain EXPUNGE,
which would take the person's own \\Deleted mail with it).  IMAP calls are blocking and
run in a worker thread; the PEN client stays on the event loop.

The sent half (``tui.intercept.sent``) APPENDs to ``SentFolder``: ``[imap] sent_folder``
when set (it must exist), else the folder marked ``\\Sent`` (RFC 6154), else one named
like a Sent folder, else "Sent", made; each copy flagged ``\\Seen`` and with our keyword,
dated when it was sent, and found again by its Message-ID and that keyword.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

from tui.intercept.build import Replacement, Unreadable, replacement
from tui.intercept.local import Outcome, crash_hook
from tui.intercept.notice import MAX_NOTICE, recognise
from tui.intercept.settings import ImapSettings
from tui.safe_text import one_line

if TYPE_CHECKING:
    from tui.intercept.sent import SentPlan

KEYWORD = b"$PenmailIntercepted"
IDLE_RENEW = 25 * 60  # RFC 2177: servers may drop an IDLE after 30 minutes
IDLE_POLL = 1.0  # how often the IDLE thread looks up: Ctrl-C waits at most this long
MAX_BACKOFF = 300.0
TIMEOUT = 60.0


class ImapFailure(Exception):
    """The IMAP server cannot be used; ``message`` is one sentence."""

    def __init__(self, message: str, code: str = "imap"):
        super().__init__(message)
        self.message, self.code = message, code


def connect(settings: ImapSettings, password: str):
    """A logged-in IMAPClient, or ImapFailure."""
    import imapclient
    from imapclient.exceptions import LoginError

    context = ssl.create_default_context(cafile=str(settings.ca_file) if settings.ca_file else None)
    where = f"{settings.host}:{settings.port}"
    try:
        client = imapclient.IMAPClient(settings.host, port=settings.port, ssl=settings.security == "tls",
                                       ssl_context=context, timeout=TIMEOUT)
        if settings.security == "starttls":
            client.starttls(context)
    except ssl.SSLError as exc:
        raise ImapFailure(f"The IMAP server {where} could not be reached securely "
                          f"({exc.reason or type(exc).__name__}).", "imap_tls") from None
    except (OSError, imapclient.exceptions.IMAPClientError) as exc:
        raise ImapFailure(f"The IMAP server {where} could not be reached ({type(exc).__name__}); check "
                          f"[imap] host and port.", "imap_unreachable") from None
    try:
        client.login(settings.user, password)
    except LoginError:
        client.shutdown()
        raise ImapFailure(f"The IMAP server {where} refused the user name or password for {settings.user}.",
                          "imap_login") from None
    return client


class Folder:
    """One folder on one connection: the blocking steps, each run in a thread."""

    def __init__(self, client, name: str, settings: ImapSettings):
        self.client, self.name, self.settings = client, name, settings
        self.keyword = False
        self.trash: str | None = None

    def select(self) -> None:
        info = self.client.select_folder(self.name)
        self.keyword = b"\\*" in (info.get(b"PERMANENTFLAGS") or ())
        if self.settings.notification == "trash" and self.trash is None:
            self.trash = self.settings.trash or self._find_trash()

    def _find_trash(self) -> str:
        from imapclient.imapclient import TRASH

        found = self.client.find_special_folder(TRASH)
        if found:
            return found
        if not self.client.folder_exists("Trash"):
            self.client.create_folder("Trash")
        return "Trash"

    def candidates(self, server: str) -> list[int]:
        self._exists_seen()  # what arrives from here on is found by this search or reported afresh
        return sorted(self.client.search(["HEADER", "X-PEN-Message", f"{server.rstrip('/')}/m/"]))

    def fetch(self, uid: int):
        """(bytes, flags, internal date), or None when gone or too large for a notification."""
        info = self.client.fetch([uid], ["RFC822.SIZE", "FLAGS", "INTERNALDATE"]).get(uid)
        if not info or int(info.get(b"RFC822.SIZE", 0)) > MAX_NOTICE:
            return None
        body = self.client.fetch([uid], ["BODY.PEEK[]"]).get(uid, {}).get(b"BODY[]")
        if body is None:
            return None
        flags = tuple(f for f in info.get(b"FLAGS", ()) if f.lower() != b"\\recent")
        return body, flags, info.get(b"INTERNALDATE")

    def _exists_seen(self) -> bool:
        """Whether an EXISTS came back with another command's answer since last asked (imaplib
        keeps such untagged answers aside); forgets them."""
        return bool(self.client._imap.untagged_responses.pop("EXISTS", None))

    def news(self) -> bool:
        """Did mail arrive while we were sweeping?  The server told us with the answers to
        our commands (so it will not say it again when IDLE starts), or tells us now."""
        _, responses = self.client.noop()
        told = any(isinstance(r, tuple) and len(r) > 1 and r[1] == b"EXISTS" for r in responses)
        return self._exists_seen() or told

    def has_copy(self, message_id: str) -> bool:
        criteria = ["HEADER", "Message-ID", message_id]
        if self.keyword:
            criteria += ["KEYWORD", KEYWORD.decode()]
        return bool(self.client.search(criteria))

    def append(self, data: bytes, flags, when) -> None:
        flags = tuple(flags) + ((KEYWORD,) if self.keyword else ())
        self.client.append(self.name, data, flags=flags, msg_time=when)

    def remove(self, uid: int) -> None:
        if self.settings.notification == "trash" and self.trash and self.trash != self.name:
            if self.client.has_capability("MOVE"):
                self.client.move([uid], self.trash)
                return
            self.client.copy([uid], self.trash)
        self.client.delete_messages([uid])
        if self.client.has_capability("UIDPLUS"):
            self.client.uid_expunge([uid])
        # Without UIDPLUS an EXPUNGE would also remove the person's own mail marked \Deleted
        # and not yet expunged: the notification stays marked \Deleted (hidden by most
        # programs) until the person's own program expunges.


class SentFolder:
    """The Sent folder on one connection (``tui.intercept.sent.SentBox``)."""

    def __init__(self, client, settings: ImapSettings):
        self.client, self.settings = client, settings
        self.label = ""
        self.keyword = False

    @property
    def destination(self) -> str:
        s = self.settings
        return f"imap:{s.user}@{s.host}:{s.port}/{self.label}"

    def open(self) -> SentFolder:
        self.label = self._find()
        info = self.client.select_folder(self.label)
        self.keyword = b"\\*" in (info.get(b"PERMANENTFLAGS") or ())
        return self

    def _find(self) -> str:
        from imapclient.imapclient import SENT

        named = self.settings.sent_folder
        if named:
            if not self.client.folder_exists(named):
                raise ImapFailure(f"The IMAP server {self.settings.host} has no folder {named!r}, which [imap] "
                                  f"sent_folder names; make it in your mail program or fix the name.",
                                  "imap_sent_folder")
            return named
        found = self.client.find_special_folder(SENT)
        if found:
            return found
        prefix = ""
        if self.client.has_capability("NAMESPACE"):
            personal = self.client.namespace().personal
            prefix = (personal[0][0] or "") if personal else ""
        name = prefix + "Sent"
        if not self.client.folder_exists(name):
            self.client.create_folder(name)
            with contextlib.suppress(Exception):  # noqa: BLE001 - a server without subscriptions still works
                self.client.subscribe_folder(name)
        return name

    def has_copy(self, pen_id: str, message_id: str) -> bool:
        criteria = ["HEADER", "Message-ID", message_id]
        if self.keyword:
            criteria += ["KEYWORD", KEYWORD.decode()]
        return bool(self.client.search(criteria))

    def put(self, made: Replacement) -> str | None:
        from imapclient.exceptions import IMAPClientAbortError, IMAPClientError

        flags = (b"\\Seen",) + ((KEYWORD,) if self.keyword else ())
        try:
            self.client.append(self.label, made.data, flags=flags, msg_time=made.sent_at)
        except IMAPClientAbortError:
            raise  # the connection, not this message
        except IMAPClientError as exc:  # the server's NO for this message (too large, say); the next run tries again
            return f"the IMAP server refused it ({one_line(str(exc), 200)})"
        return None


@contextlib.asynccontextmanager
async def sent_folder(settings: ImapSettings, password: str):
    """A connection of its own to the Sent folder, for one batch of the watch."""
    client = await asyncio.to_thread(connect, settings, password)
    try:
        yield await asyncio.to_thread(SentFolder(client, settings).open)
    finally:
        await asyncio.to_thread(_close, client)


async def sweep(folder: Folder, pen, server: str, *, limit: int) -> AsyncIterator[Outcome]:
    """Replace every notification in the (selected) folder; one Outcome each."""
    from tui.pen_client import PenError

    for uid in await asyncio.to_thread(folder.candidates, server):
        got = await asyncio.to_thread(folder.fetch, uid)
        if got is None:
            continue
        raw, flags, when = got
        notice = recognise(raw, server)
        if notice is None:
            continue
        try:
            made = await replacement(pen, notice, limit=limit)
        except Unreadable:
            yield Outcome("left", folder.name, pen_id=notice.pen_id, reason="not readable with your sign-in")
            continue
        except PenError as exc:
            if exc.status is None or exc.status in (401, 429) or exc.status >= 500:
                raise
            yield Outcome("failed", folder.name, pen_id=notice.pen_id, reason=exc.message)
            continue
        if await asyncio.to_thread(folder.has_copy, made.message_id):
            await asyncio.to_thread(folder.remove, uid)
            yield Outcome("already", folder.name, pen_id=notice.pen_id)
            continue
        await asyncio.to_thread(folder.append, made.data, flags, when)  # imaplib makes the line ends CR LF
        crash_hook()
        await asyncio.to_thread(folder.remove, uid)
        yield Outcome("replaced", folder.name, made)


async def once(settings: ImapSettings, password: str, pen, server: str, *, limit: int,
               sent: SentPlan | None = None) -> AsyncIterator[Outcome]:
    """Each folder's notifications replaced, then (``sent``) the sent messages placed."""
    client = await asyncio.to_thread(connect, settings, password)
    try:
        for name in settings.folders:
            folder = Folder(client, name, settings)
            await asyncio.to_thread(folder.select)
            async for outcome in sweep(folder, pen, server, limit=limit):
                yield outcome
        if sent is not None:
            box = await asyncio.to_thread(SentFolder(client, settings).open)
            async for outcome in sent.place(box, pen):
                yield outcome
    finally:
        await asyncio.to_thread(_close, client)


def _close(client) -> None:
    try:
        client.logout()
    except Exception:  # noqa: BLE001 - closing a connection that may already be gone
        try:
            client.shutdown()
        except Exception:  # noqa: BLE001
            pass


def _wait_for_news(client, until: float) -> bool:
    """IDLE until the server reports something, or until ``until`` (monotonic); True when
    there is news.  IDLE is ended either way."""
    client.idle()
    try:
        while time.monotonic() < until:
            responses = client.idle_check(timeout=min(IDLE_POLL, max(0.1, until - time.monotonic())))
            if any(isinstance(r, tuple) and len(r) > 1 and r[1] in (b"EXISTS", b"RECENT") for r in responses):
                return True
        return False
    finally:
        client.idle_done()


async def watch_folder(settings: ImapSettings, password: str, pen, server: str, name: str, *, limit: int,
                       report: Callable[[Outcome], None], note: Callable[[str], None]) -> None:
    """Stay connected to one folder: sweep it, IDLE (renewed every 25 minutes), sweep on
    news; after a drop, reconnect with growing delays (1 s doubling to 5 minutes).  The
    PEN being unreachable for a while is waited out the same way; a lost sign-in ends it."""
    from tui.pen_client import InvalidCredentials, NotSignedIn, PenError

    delay = 1.0
    while True:
        client = None
        try:
            client = await asyncio.to_thread(connect, settings, password)
            folder = Folder(client, name, settings)
            await asyncio.to_thread(folder.select)
            delay = 1.0
            while True:
                async for outcome in sweep(folder, pen, server, limit=limit):
                    report(outcome)
                if await asyncio.to_thread(folder.news):
                    continue  # sweep again before IDLE: news told during a sweep is not told twice
                await asyncio.to_thread(_wait_for_news, client, time.monotonic() + IDLE_RENEW)
        except ImapFailure as exc:
            if exc.code == "imap_login":
                raise
            note(f"{exc.message.rstrip('.')}; trying again in {delay:g} s.")
        except PenError as exc:
            if isinstance(exc, (NotSignedIn, InvalidCredentials)):
                raise
            note(f"{exc.message.rstrip('.')}; trying again in {delay:g} s.")
        except (TimeoutError, OSError, EOFError) as exc:
            note(f"The connection to {settings.host} for {name} was lost ({type(exc).__name__}); trying again in "
                 f"{delay:g} s.")
        except Exception as exc:  # noqa: BLE001 - imapclient's protocol errors: reconnect the same way
            from imapclient.exceptions import IMAPClientError

            if not isinstance(exc, IMAPClientError):
                raise
            note(f"The IMAP server {settings.host} answered {type(exc).__name__} for {name}; trying again in "
                 f"{delay:g} s.")
        finally:
            if client is not None:
                await asyncio.to_thread(_close, client)
        await asyncio.sleep(delay)
        delay = min(delay * 2, MAX_BACKOFF)


def _describe(settings: ImapSettings):
    def describe(exc: BaseException) -> str:
        if isinstance(exc, ImapFailure):
            return exc.message
        if isinstance(exc, (TimeoutError, OSError, EOFError)):
            return f"The connection to {settings.host} was lost ({type(exc).__name__})"
        return f"The IMAP server {settings.host} answered {type(exc).__name__}"
    return describe


async def watch(settings: ImapSettings, password: str, pen, server: str, *, limit: int,
                report: Callable[[Outcome], None], note: Callable[[str], None],
                sent: SentPlan | None = None) -> None:
    """One connection per folder, each IDLE on its own folder, and (``sent``) the PEN's
    event stream for the messages sent; runs until stopped."""
    from imapclient.exceptions import IMAPClientError

    from tui.intercept import sent as sent_half

    jobs = [watch_folder(settings, password, pen, server, name, limit=limit, report=report, note=note)
            for name in settings.folders]
    if sent is not None:
        jobs.append(sent_half.watch(
            sent, pen, lambda: sent_folder(settings, password), report=report,
            retryable=(ImapFailure, TimeoutError, OSError, EOFError, IMAPClientError),
            fatal=lambda exc: isinstance(exc, ImapFailure) and exc.code in ("imap_login", "imap_sent_folder"),
            describe=_describe(settings)))
    await asyncio.gather(*jobs)
