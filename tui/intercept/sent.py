"""The sent half of `penmail intercept`: each PEN message the person sent goes, once, into
their own Sent folder (over IMAP, ``tui.intercept.imap.SentFolder``; in a Maildir,
``MaildirSent`` here), in the form the received half writes (``build.replacement``: the
message's own Message-ID and threading, its attachments within the limit, its sent date),
flagged seen.

Exactly once, however often and however interrupted:

* A record in penmail's state folder (never in the mail store) keeps the PEN ids placed
  into each Sent folder, one line appended and fsynced after each copy.  A message in the
  record is never placed again, even when the person deletes or moves the copy.
* A copy written by a run killed before its line was recorded is found in the folder (over
  IMAP by its Message-ID carrying the received half's keyword; in a Maildir by the file
  name the received half uses, ``pen-<sha256 of host and id>``) and recorded instead of
  written again.
* One process at a time places into one folder (a lock beside the record): a ``--once``
  from a mail program's hook and a ``--watch`` never race.

What is looked at: the messages sent since the newest one placed (less an hour, for
messages committed out of order); the first run reaches back ``sent_since`` days, and the
record keeps that starting point so a later run misses nothing sent in between.  The
listing takes the ``sent`` folder and the person's own messages moved to ``archive`` or
``trash``.  ``--watch`` follows the event stream (``message.new`` in ``sent``) and lists
again whenever it may have missed something: at the start, after a failure, on ``resync``.
No Textual here.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import re
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

from tui.files import lock_within, write_atomic
from tui.intercept.build import Replacement, Unreadable, replacement
from tui.intercept.local import Outcome, _key, _write, crash_hook
from tui.intercept.notice import Notice
from tui.safe_text import one_line

RECORD_FORMAT = "penmail-sent-record/1"
LOOKBACK = timedelta(hours=1)  # a message committed a little out of order is still listed
KEEP = timedelta(days=2)  # record lines older than the newest by more than this are never consulted again
LOCK_SECONDS = 30.0
MAX_BACKOFF = 300.0
_OPEN_FLAGS = getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
_PLAIN_ADDRESS = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~@-]{3,320}$")


class SentBusy(Exception):
    """Another penmail intercept is placing into this Sent folder (it holds the lock)."""

    def __init__(self, label: str):
        super().__init__(label)
        self.message = (f"Another penmail intercept is placing sent messages in {one_line(label, 200)}; left to it "
                        f"this time.")


class SentBox(Protocol):
    """A Sent folder that copies go into; its methods block (run in a thread)."""

    label: str  # shown in the lines and the JSON ("Sent", ".Sent")

    @property
    def destination(self) -> str:
        """Names the record: the server, the user and the folder, or the path."""

    def has_copy(self, pen_id: str, message_id: str) -> bool: ...

    def put(self, made: Replacement) -> str | None:
        """None when the copy is in; the server's refusal of this one message otherwise (a
        connection that fails raises instead)."""


# ---------------------------------------------------------------- the record


def _stamp(when: datetime | None) -> float:
    if when is None:
        return time.time()
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


class Record:
    """The PEN ids placed into one Sent folder: a header line, then one line per copy."""

    def __init__(self, folder: Path, server: str, me: str, destination: str):
        tag = hashlib.sha256(f"{server.rstrip('/')}\0{me.lower()}\0{destination}".encode("utf-8", "replace"))
        self.folder = folder
        self.path = folder / f"sent-{tag.hexdigest()[:24]}.jsonl"
        self.lock_path = folder / f"sent-{tag.hexdigest()[:24]}.lock"
        self.header = {"format": RECORD_FORMAT, "server": server.rstrip("/"), "user": me.lower(),
                       "destination": destination}
        self.placed: dict[str, float] = {}  # PEN id -> sent at (POSIX time)
        self.start: float | None = None  # where the first run began looking

    @contextlib.asynccontextmanager
    async def locked(self, seconds: float | None = None):
        """Yields whether the lock was had within ``seconds`` (30; tests shorten it with
        PENMAIL_TEST_LOCK_SECONDS)."""
        if seconds is None:
            seconds = float(os.environ.get("PENMAIL_TEST_LOCK_SECONDS") or LOCK_SECONDS)
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | _OPEN_FLAGS, 0o600)
        try:
            yield await asyncio.to_thread(lock_within, fd, seconds)
        finally:
            os.close(fd)

    def load(self, since_days: float, now: float | None = None) -> None:
        """Read the record (under the lock); a new one starts ``since_days`` before now."""
        now = time.time() if now is None else now
        self.placed, self.start = {}, None
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            raw = b""
        lines = raw.split(b"\n")
        try:
            head = json.loads(lines[0]) if lines[0] else None
        except ValueError:
            head = None
        if isinstance(head, dict) and head.get("format") == RECORD_FORMAT and isinstance(head.get("since"),
                                                                                          (int, float)):
            self.start = float(head["since"])
        for line in lines[1:]:
            try:
                entry = json.loads(line)
            except ValueError:
                continue  # a line cut short by a crash: its copy is found in the folder instead
            if isinstance(entry, dict) and isinstance(entry.get("id"), str) and isinstance(entry.get("at"),
                                                                                           (int, float)):
                self.placed[entry["id"]] = float(entry["at"])
        if self.start is None:
            self.start = now - since_days * 86400
        newest = self.newest
        old = [k for k, at in self.placed.items() if newest is not None and at < newest - KEEP.total_seconds()]
        if not raw or not raw.endswith(b"\n") or head is None or len(old) > 200:
            for k in old:
                del self.placed[k]
            self._rewrite()

    def _rewrite(self) -> None:
        lines = [json.dumps({**self.header, "since": self.start})]
        lines += [json.dumps({"id": k, "at": at}) for k, at in self.placed.items()]
        write_atomic(self.path, ("\n".join(lines) + "\n").encode("utf-8"))

    @property
    def newest(self) -> float | None:
        return max(self.placed.values(), default=None)

    def bound(self) -> datetime:
        """The oldest sent time a listing looks at: an hour before the newest placed, or
        where the first run began (a whole second earlier: lists give times in seconds)."""
        newest = self.newest
        if newest is not None:
            at = newest - LOOKBACK.total_seconds()
        else:
            at = (self.start if self.start is not None else time.time()) // 1 - 1
        return datetime.fromtimestamp(max(at, 0.0), UTC)

    def has(self, pen_id: str) -> bool:
        return pen_id in self.placed

    def add(self, pen_id: str, sent_at: datetime | None) -> None:
        at = _stamp(sent_at)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | _OPEN_FLAGS, 0o600)
        try:
            os.write(fd, (json.dumps({"id": pen_id, "at": at}) + "\n").encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)
        self.placed[pen_id] = at


# ---------------------------------------------------------------- a Maildir's Sent folder


def _base(name: str) -> str:
    """A Maildir file's key: before the flags (``:2,``) and any ``,U=`` that mbsync adds."""
    return name.split(":", 1)[0].split(",", 1)[0]


class MaildirSent:
    """A Maildir for the sent copies (made when missing): each copy in ``cur/``, flagged S,
    named ``pen-<sha256 of host and id>`` as the received half names its messages."""

    def __init__(self, path: str | os.PathLike, host: str, label: str | None = None):
        self.path = Path(path).expanduser().absolute()
        self.host = host
        self.label = label or str(self.path)
        for sub in ("", "tmp", "new", "cur"):
            (self.path / sub).mkdir(parents=not sub, exist_ok=True, mode=0o700)
        self.destination = f"maildir:{self.path.resolve()}"
        self._names = {_base(n) for sub in ("new", "cur") for n in os.listdir(self.path / sub)
                       if not n.startswith(".")}

    def has_copy(self, pen_id: str, message_id: str) -> bool:
        return _key(self.host, pen_id) in self._names

    def put(self, made: Replacement) -> str | None:
        key = _key(self.host, made.pen_id)
        _write(self.path, "cur", f"{key}:2,S", made.data, _stamp(made.sent_at))
        self._names.add(key)
        return None


# ---------------------------------------------------------------- placing


@dataclass
class SentPlan:
    """What the sent half needs besides a folder: where the records live, whose messages,
    how far back a first run reaches, the attachment limit, and where notes go."""
    state: Path
    server: str
    me: str
    since_days: float
    limit: int
    note: Callable[[str], None]
    scratch: Path | None = None

    def record(self, box: SentBox) -> Record:
        return Record(self.state, self.server, self.me, box.destination)

    async def place(self, box: SentBox, pen, *, only: str | None = None) -> AsyncIterator[Outcome]:
        """Place what is missing: every message sent since the record's bound, or (``only``)
        the one message an event named.  SentBusy when another process holds the folder."""
        record = self.record(box)
        async with record.locked() as had:
            if not had:
                raise SentBusy(box.label)
            await asyncio.to_thread(record.load, self.since_days)
            if only is not None:
                if record.has(only):
                    return
                async for outcome in self._place_one(box, record, pen, only, None):
                    yield outcome
                return
            for summary in await sent_messages(pen, self.me, record.bound()):
                if record.has(summary.id):
                    continue
                async for outcome in self._place_one(box, record, pen, summary.id, summary.sent_at):
                    yield outcome

    async def _place_one(self, box: SentBox, record: Record, pen, pen_id: str,
                         sent_at: datetime | None) -> AsyncIterator[Outcome]:
        from tui.export import _host, message_id_for
        from tui.pen_client import NotFound, PenError

        message = None
        try:
            if sent_at is None:  # from an event: the message says when it was sent, and whose it is
                message = await pen.get_message(pen_id)
                if message.sender.email.lower() != self.me.lower():
                    return
                sent_at = message.sent_at
            if await asyncio.to_thread(box.has_copy, pen_id, message_id_for(pen_id, _host(self.server))):
                await asyncio.to_thread(record.add, pen_id, sent_at)
                yield Outcome("sent_already", box.label, pen_id=pen_id)
                return
            notice = Notice(pen_id, f"{self.server.rstrip('/')}/m/{pen_id}", None)
            made = await replacement(pen, notice, limit=self.limit, scratch=self.scratch, message=message)
        except (Unreadable, NotFound):
            return  # deleted for good since it was listed: nothing to place
        except PenError as exc:
            if exc.status is None or exc.status in (401, 429) or exc.status >= 500:
                raise  # the PEN or the sign-in, not this message: stop
            yield Outcome("sent_failed", box.label, pen_id=pen_id, reason=exc.message)
            return
        failure = await asyncio.to_thread(box.put, made)
        if failure:
            yield Outcome("sent_failed", box.label, pen_id=pen_id, reason=failure)
            return
        crash_hook()
        await asyncio.to_thread(record.add, pen_id, made.sent_at or sent_at)
        yield Outcome("sent_placed", box.label, made)


async def sent_messages(pen, me: str, since: datetime) -> list:
    """The person's own messages sent at or after ``since``, oldest first, each once: the
    ``sent`` folder, and the ones moved from it to ``archive`` or ``trash``."""
    found: dict[str, object] = {}
    searches: list[tuple[str, str | None]] = [("sent", None)]
    if _PLAIN_ADDRESS.match(me or ""):
        searches += [("archive", f"from:{me}"), ("trash", f"from:{me}")]
    for folder, q in searches:
        cursor = None
        while True:
            page = await pen.list_messages(folder, limit=200, cursor=cursor, q=q)
            done = False
            for s in page.items:
                if s.sent_at is not None and s.sent_at < since:
                    done = True  # newest first: the rest is older
                    break
                if folder == "sent" or s.sender.email.lower() == me.lower():
                    found.setdefault(s.id, s)
            cursor = page.next_cursor
            if done or not cursor or not page.items:
                break
    return sorted(found.values(), key=lambda s: (_stamp(s.sent_at), s.id))  # type: ignore[attr-defined]


# ---------------------------------------------------------------- following the event stream


async def watch(plan: SentPlan, pen, open_box: Callable[[], AbstractAsyncContextManager[SentBox]], *,
                report: Callable[[Outcome], None], retryable: tuple[type[BaseException], ...] = (),
                fatal: Callable[[BaseException], bool] = lambda exc: False,
                describe: Callable[[BaseException], str] = str) -> None:
    """Place each message as the PEN announces it (``message.new`` in ``sent``); list what
    was sent since the newest placed at the start, after any failure, and on ``resync``
    (a reconnect sends Last-Event-ID, so a short drop replays instead).  ``open_box`` gives
    the folder for one batch; ``retryable`` failures of it are waited out (1 s doubling to
    5 minutes) like the PEN being away, unless ``fatal``.  A lost sign-in ends it."""
    from tui.pen_client import InvalidCredentials, NotSignedIn, PenError

    delay = 1.0
    behind = True  # a listing is due: what was sent while nobody looked

    async def run(only: str | None = None) -> None:
        async with open_box() as box:
            async for outcome in plan.place(box, pen, only=only):
                report(outcome)

    while True:
        stream = pen.events()
        try:
            async for event in stream:
                if event.kind == "stream.open":
                    if behind or not event.caught_up:
                        await run()
                        behind = False
                    delay = 1.0
                elif event.kind == "resync":
                    behind = True
                    await run()
                    behind = False
                elif event.kind == "message.new" and event.data.get("folder") == "sent":
                    pen_id = event.data.get("id")
                    if isinstance(pen_id, str) and re.fullmatch(r"[A-Za-z0-9_-]{1,200}", pen_id):
                        behind = True  # until it is in: a failure here lists again after
                        await run(pen_id)
                        behind = False
            await asyncio.sleep(1.0)  # the stream ended (the PEN restarting): connect again
            continue
        except (NotSignedIn, InvalidCredentials):
            raise
        except (PenError, SentBusy) as exc:
            plan.note(f"{exc.message.rstrip('.')}; sent messages: trying again in {delay:g} s.")
        except retryable as exc:
            if fatal(exc):
                raise
            plan.note(f"{describe(exc).rstrip('.')}; sent messages: trying again in {delay:g} s.")
        finally:
            await stream.aclose()  # the connection goes now, not when the generator is collected
        behind = True
        await asyncio.sleep(delay)
        delay = min(delay * 2, MAX_BACKOFF)
