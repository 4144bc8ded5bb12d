"""Events for `GET /events`: written to the `events` table with an id that only grows, and
fanned out by each process to the streams open in it.

Publishing writes the rows in a short transaction of their own, right after the change they
announce is committed (`publish`, `publish_many`). On PostgreSQL that transaction first
takes one advisory lock, so ids are committed in the order they are handed out (a reader
that has seen id N never later finds a new row below N), and sends `NOTIFY pen_events`,
which PostgreSQL delivers at commit. On SQLite the database's single write lock gives the
same order.

Each API process runs one dispatcher (`run`): it reads the rows past the last id it saw and
puts each on the queues of that user's streams here. It is woken at once by a publish in this
process, by its one `LISTEN pen_events` connection on PostgreSQL (psycopg 3, async), and
otherwise looks every POLL_SECONDS while any stream is open (so on SQLite a separate
`pen-server worker` process's events arrive within a second too).

A stream belongs to one sign-in (the token family it was opened with). Each user may have
`max_streams` open; one more ends that user's oldest stream. Signing out ends the sign-in's
streams here; the stream itself also re-checks its sign-in in the database, for changes
made by another process. A stream whose reader stalls until its queue is full is ended (the
client reconnects with `Last-Event-ID` and gets what it missed from the table), instead of
silently losing events.

Events are kept `keep_hours` (24); `prune` runs every ten minutes. A reconnect replays at most
REPLAY_MAX of the user's events after its `Last-Event-ID`; when more were missed, or some
were already pruned, it gets one `resync` event instead (the client fetches its lists)."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import delete, func, select, text
from sqlalchemy.engine import make_url

from pen_server import metrics
from pen_server.models import Event, utcnow

log = logging.getLogger("pen_server.events")
END = None  # put in a stream's queue: the stream closes
CHANNEL = "pen_events"
LOCK_KEY = 0x70656E6576  # "penev": the advisory lock that orders event ids on PostgreSQL
POLL_SECONDS = 1.0  # looking for events of other processes, while streams are open
LISTENING_POLL_SECONDS = 10.0  # the same on PostgreSQL while LISTEN works (a safety net only)
READ_BATCH = 1000
REPLAY_MAX = 1000
MAX_EVENT_ID_CHARS = 18  # a Last-Event-ID longer than this is not one of ours


def frame(event_id: int, kind: str, payload: dict) -> str:
    return f"id: {event_id}\nevent: {kind}\ndata: {json.dumps(payload, separators=(',', ':'))}\n\n"


@dataclass(eq=False)
class Subscription:
    user_id: str
    family_id: str
    queue: asyncio.Queue = field(repr=False)
    ended: bool = False

    def put(self, item: tuple[int, str] | None) -> None:
        """On the event loop: never blocks. A reader so slow that its queue fills is ended
        (it reconnects with Last-Event-ID and misses nothing)."""
        if self.ended:
            return
        if item is END or self.queue.full():
            while not self.queue.empty():
                self.queue.get_nowait()
            self.ended, item = True, END
        self.queue.put_nowait(item)


class EventHub:
    def __init__(self, db=None, queue_size: int = 1000, max_streams: int = 8, keep_hours: float = 24.0):
        self.db = db
        self._loop: asyncio.AbstractEventLoop | None = None
        self._subs: dict[str, list[Subscription]] = {}  # per user, oldest first
        self._lock = threading.Lock()
        self._wake: asyncio.Event | None = None
        self.queue_size = queue_size
        self.max_streams = max_streams
        self.keep = timedelta(hours=keep_hours)
        self.last_id = 0  # the last event id this process's dispatcher has handed out
        self.listening = False

    @property
    def postgres(self) -> bool:
        return self.db is not None and self.db.engine.dialect.name == "postgresql"

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._wake = asyncio.Event()

    # -- streams ---------------------------------------------------------------------------------

    def subscribe(self, user_id: str, family_id: str) -> Subscription:
        sub = Subscription(user_id, family_id, asyncio.Queue(self.queue_size + 1))
        with self._lock:
            subs = self._subs.setdefault(user_id, [])
            pushed_out = subs[:max(0, len(subs) + 1 - self.max_streams)]
            del subs[:len(pushed_out)]
            subs.append(sub)
            metrics.streams_open(sum(len(s) for s in self._subs.values()))
        for old in pushed_out:
            old.put(END)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            subs = self._subs.get(sub.user_id)
            if subs and sub in subs:
                subs.remove(sub)
                if not subs:
                    self._subs.pop(sub.user_id, None)
            metrics.streams_open(sum(len(s) for s in self._subs.values()))

    def streams(self, user_id: str) -> int:
        with self._lock:
            return len(self._subs.get(user_id, ()))

    def end_sign_in(self, user_id: str, family_id: str) -> None:
        """Close the streams opened with this sign-in (after sign-out)."""
        self._on_loop(self._matching(user_id, lambda sub: sub.family_id == family_id), END)

    def end_all(self) -> None:
        """Close every stream (the server is stopping: clients reconnect to another process)."""
        with self._lock:
            subs = [s for user in self._subs.values() for s in user]
        self._on_loop(subs, END)

    def _matching(self, user_id: str, wanted) -> list[Subscription]:
        with self._lock:
            return [s for s in self._subs.get(user_id, ()) if wanted(s)]

    def _on_loop(self, subs: list[Subscription], item) -> None:
        if not subs or self._loop is None:
            return

        def put() -> None:
            for sub in subs:
                sub.put(item)

        self._call(put)

    def _call(self, fn) -> None:
        """Run fn on the hub's loop, from the loop or any thread."""
        loop = self._loop
        if loop is None:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            fn()
        else:
            try:
                loop.call_soon_threadsafe(fn)
            except RuntimeError:  # the loop is closed: the server is going down
                pass

    # -- publishing (from a worker thread: these write to the database) ----------------------------

    def publish(self, user_id: str, kind: str, payload: dict) -> None:
        self.publish_many([(user_id, kind, payload)])

    def publish_many(self, items: list[tuple[str, str, dict]]) -> None:
        """Write the events (one transaction, after the change they announce) and wake the
        dispatchers: this process's at once, the others' through NOTIFY on PostgreSQL."""
        if not items or self.db is None:
            return
        with self.db.session() as session:
            if self.postgres:
                session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": LOCK_KEY})
            session.add_all([Event(user_id=u, kind=k, payload=p, created_at=utcnow()) for u, k, p in items])
            session.flush()
            if self.postgres:
                session.execute(text("SELECT pg_notify(:c, '')"), {"c": CHANNEL})
        self.wake()

    def wake(self) -> None:
        if self._wake is not None:
            self._call(self._wake.set)

    # -- the dispatcher ---------------------------------------------------------------------------

    def _newest(self) -> int:
        with self.db.session() as session:
            return newest_id(session)

    def _read_new(self, after: int) -> list[Event]:
        with self.db.session() as session:
            return list(session.scalars(select(Event).where(Event.id > after).order_by(Event.id).limit(READ_BATCH)))

    async def run(self) -> None:
        """Hand new rows to this process's streams until cancelled."""
        assert self._wake is not None, "bind() first"
        started = False
        while True:
            try:
                if not started:  # streams get what comes from now on (and replay the rest)
                    self.last_id, started = await asyncio.to_thread(self._newest), True
                await self._dispatch()
            except Exception:  # a database hiccup: the next round reads from the same id
                log.exception("reading new events failed")
            wait = LISTENING_POLL_SECONDS if self.listening else POLL_SECONDS
            try:
                await asyncio.wait_for(self._wake.wait(), wait)
            except TimeoutError:
                pass
            self._wake.clear()

    async def _dispatch(self) -> None:
        while True:
            with self._lock:
                anyone = bool(self._subs)
            if not anyone:  # nobody here to tell: only move the mark on
                self.last_id = max(self.last_id, await asyncio.to_thread(self._newest))
                return
            rows = await asyncio.to_thread(self._read_new, self.last_id)
            for row in rows:
                item = (row.id, frame(row.id, row.kind, row.payload))
                for sub in self._matching(row.user_id, lambda sub: True):
                    sub.put(item)
                self.last_id = row.id
            if len(rows) < READ_BATCH:
                return

    async def listen(self, also=None) -> None:
        """PostgreSQL: hold one LISTEN connection and wake the dispatcher (and call `also`)
        on each NOTIFY; reconnect with growing pauses when it drops (the dispatcher polls
        meanwhile)."""
        import psycopg

        url = make_url(self.db.url).set(drivername="postgresql").render_as_string(hide_password=False)
        pause = 1.0
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    self.listening, pause = True, 1.0
                    self.wake()  # what was published while we were not listening
                    async for _ in conn.notifies():
                        self.wake()
                        if also is not None:
                            also()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("the LISTEN connection for events failed (%s); polling every %.0f s until it is back",
                            exc, POLL_SECONDS)
            finally:
                self.listening = False
            await asyncio.sleep(pause)
            pause = min(30.0, pause * 2)

    # -- replay and retention ------------------------------------------------------------------------

    def replay(self, user_id: str, after: int | None) -> tuple[list[tuple[int, str]], int | None]:
        """For a stream opened with Last-Event-ID `after` (None: unreadable): the user's
        events after it, or, when they cannot all be given (pruned, more than REPLAY_MAX, or
        an id that is not ours), none and the id a `resync` event carries."""
        with self.db.session() as session:
            newest = newest_id(session)
            if after is None:
                return [], newest
            oldest = session.scalar(select(func.min(Event.id)))
            rows = list(session.execute(
                select(Event.id, Event.kind, Event.payload)
                .where(Event.user_id == user_id, Event.id > after, Event.id <= newest)
                .order_by(Event.id).limit(REPLAY_MAX + 1)))
        pruned = oldest is not None and oldest > after + 1 and after < newest
        if pruned or len(rows) > REPLAY_MAX or after > newest:
            return [], newest
        return [(r.id, frame(r.id, r.kind, r.payload)) for r in rows], None

    def prune(self) -> int:
        """Deletes events older than `keep`, a batch at a time; how many went."""
        cutoff, gone = utcnow() - self.keep, 0
        while True:
            with self.db.session() as session:
                batch = select(Event.id).where(Event.created_at < cutoff).order_by(Event.id).limit(10_000)
                done = session.execute(delete(Event).where(Event.id.in_(batch.scalar_subquery()))
                                       .execution_options(synchronize_session=False)).rowcount
            gone += done
            if done < 10_000:
                return gone


# The response header of the list calls (GET /messages, /threads, /folders) that names the
# PEN's newest event as the list was read: a stream opened with it as Last-Event-ID replays
# what came after, so a client's first lists and its stream miss nothing between them (the
# way Kubernetes' list-then-watch hands out a resourceVersion).
EVENT_ID_HEADER = "Pen-Event-Id"
EVENT_ID_HEADER_DOC = {EVENT_ID_HEADER: {
    "description": "The id of the PEN's newest event when this answer was read: open GET /events with it as "
                   "Last-Event-ID and the stream replays every event after it, so nothing falls between the two.",
    "schema": {"type": "string", "pattern": "^[0-9]{1,18}$"}}}


def newest_id(session) -> int:
    """The newest event's id, read before the list it goes with: an event is written after
    the change it tells of is committed, so a change the list does not show has a later id."""
    return session.scalar(select(func.max(Event.id))) or 0


def parse_event_id(header: str) -> int | None:
    """A Last-Event-ID header's id, or None when it is not one of ours."""
    value = header.strip()
    if not value.isascii() or not value.isdigit() or len(value) > MAX_EVENT_ID_CHARS:
        return None
    return int(value)
