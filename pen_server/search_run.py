"""A search's cost ceiling (docs/pen-api.md, "Search"): at most `searches_per_user` searches of
one user at a time, counted in the database (table `search_slots`) so that every server
process shares the count; a time limit on its queries (SQLite: a progress handler on the
connection; PostgreSQL: `SET LOCAL statement_timeout` before each statement); and a search
whose client hangs up is stopped (the handler's flag, or PostgreSQL's cancel request), so
its database connection is free again at once.

PEN_SEARCH_TEST_BURN=1 (tests only) makes every search first run a query that only the time
limit or a hang-up stops: the tests' way to hold a search open."""

from __future__ import annotations

import asyncio
import math
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import anyio
from sqlalchemy import delete, select, text, update
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session

from pen_server.errors import ApiError
from pen_server.models import SearchSlot, new_id
from pen_server.text import plural

SLOT_MARGIN_SECONDS = 30.0  # a slot older than the time limit and this was left by a dead process
POLL_SECONDS = 0.2  # how often a running search looks whether its client is still there


def _burn() -> bool:
    return os.environ.get("PEN_SEARCH_TEST_BURN") == "1"


class Stopped(Exception):
    """The search was stopped: its client went away (`abandoned`) or its time ran out."""

    def __init__(self, abandoned: bool):
        super().__init__("abandoned" if abandoned else "time limit")
        self.abandoned = abandoned


class Stop:
    """The time limit and the hang-up of one search, for the thread that runs its queries."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.deadline = time.monotonic() + seconds
        self.abandoned = False
        self._lock = threading.Lock()
        self._pg: Any = None  # the psycopg connection while a statement may run

    def expired(self) -> bool:
        return time.monotonic() >= self.deadline

    def _sqlite_handler(self) -> int:
        return 1 if self.abandoned or self.expired() else 0  # non-zero: SQLite interrupts the query

    def before(self, session: Session) -> None:
        """Before each statement: PostgreSQL gets the time that is left."""
        if self.abandoned or self.expired():
            raise Stopped(self.abandoned)
        if session.get_bind().dialect.name == "postgresql":
            left = max(1, math.ceil((self.deadline - time.monotonic()) * 1000))
            session.execute(text(f"SET LOCAL statement_timeout = {left}"))

    def abandon(self) -> None:
        """From the event loop: the client hung up."""
        with self._lock:
            self.abandoned = True
            conn = self._pg
        if conn is not None:
            try:
                (getattr(conn, "cancel_safe", None) or conn.cancel)()
            except Exception:  # the statement ended meanwhile: nothing to stop
                pass

    def run(self, session: Session, work: Callable[[Callable[[Session], None]], dict]) -> dict:
        """Run `work(before)` in this thread under the limits; raises Stopped."""
        dbapi = session.connection().connection.dbapi_connection
        sqlite = session.get_bind().dialect.name == "sqlite"
        if sqlite:
            dbapi.set_progress_handler(self._sqlite_handler, 2000)
        else:
            with self._lock:
                self._pg = dbapi
        try:
            if _burn():
                self.before(session)
                session.execute(text("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) "
                                     "SELECT count(*) FROM n" if sqlite else "SELECT pg_sleep(3600)"))
            return work(self.before)
        except DBAPIError as exc:
            # Only this search's own limits interrupt its statements (SQLite's progress handler,
            # PostgreSQL's statement_timeout or cancel). PostgreSQL's timer may fire a moment
            # before this thread's clock reaches the deadline, so the kind of error counts too.
            if self.abandoned or self.expired() or _interrupted(exc):
                raise Stopped(self.abandoned) from None
            raise
        finally:
            if sqlite:
                dbapi.set_progress_handler(None, 0)
            else:
                with self._lock:
                    self._pg = None


def _interrupted(exc: DBAPIError) -> bool:
    """A statement stopped by a time limit or a cancel request: psycopg's QueryCanceled
    (SQLSTATE 57014), or SQLite's "interrupted"."""
    orig = exc.orig
    return getattr(orig, "sqlstate", None) == "57014" or "interrupted" in str(orig)


class SearchSlots:
    """At most `per_user` searches of one user at once, across the server's processes. Taken
    and given back on the request's own session (committed each time), so that a search holds
    one database connection, not two."""

    def __init__(self, per_user: int, seconds: float):
        self.per_user, self.stale_after = per_user, seconds + SLOT_MARGIN_SECONDS

    def take(self, session: Session, user_id: str) -> tuple[int, str]:
        """A slot (number, holder), or ApiError 429."""
        holder, now = new_id(), time.time()
        session.commit()  # what the request did so far (signing in) stays; the slot is its own
        held = set(session.scalars(select(SearchSlot.slot).where(SearchSlot.user_id == user_id,
                                                                SearchSlot.started_at >= now - self.stale_after)))
        for slot in range(self.per_user):
            if slot in held:  # a read first: a full user's refusal writes nothing
                continue
            try:
                taken = session.execute(
                    update(SearchSlot).where(SearchSlot.user_id == user_id, SearchSlot.slot == slot,
                                             SearchSlot.started_at < now - self.stale_after)
                    .values(holder=holder, started_at=now)
                    .execution_options(synchronize_session=False)).rowcount  # type: ignore[attr-defined]
                if not taken:
                    session.add(SearchSlot(user_id=user_id, slot=slot, holder=holder, started_at=now))
                session.commit()
                return slot, holder
            except IntegrityError:  # another search took that slot meanwhile: the next
                session.rollback()
        session.rollback()
        raise ApiError(429, "rate_limited",
                       f"You have {plural(self.per_user, 'search', 'searches')} running already; wait for one "
                       f"to finish and try again.", headers={"Retry-After": "1"})

    def give_back(self, session: Session, user_id: str, slot: tuple[int, str]) -> None:
        session.rollback()  # the search only read; a stopped one left its transaction aborted
        session.execute(delete(SearchSlot).where(SearchSlot.user_id == user_id, SearchSlot.slot == slot[0],
                                                 SearchSlot.holder == slot[1]))
        session.commit()


def timed_out(seconds: float) -> ApiError:
    shown = plural(math.ceil(seconds), "second")
    return ApiError(422, "search_too_long",
                    f"This search took longer than {shown} and was stopped; narrow it down with more words, "
                    f"a key such as from: or subject:, or a date (after:).", fields=None)


async def run(request, slots: SearchSlots, seconds: float, user_id: str, session: Session,
              work: Callable[[Callable[[Session], None]], dict]) -> dict:
    """Run a search (`work(before)`) in one worker thread: its slot taken, its queries under the
    time limit, the slot given back once they ended; the client's hang-up stops it."""
    stop = Stop(seconds)

    def job() -> dict:
        slot = slots.take(session, user_id)
        try:
            stop.deadline = time.monotonic() + seconds
            return stop.run(session, work)
        finally:
            slots.give_back(session, user_id, slot)

    task = asyncio.ensure_future(anyio.to_thread.run_sync(job))
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=POLL_SECONDS)
            if done:
                break
            if not stop.abandoned and await request.is_disconnected():
                stop.abandon()
        try:
            return task.result()
        except Stopped as exc:
            if exc.abandoned:
                raise ApiError(400, "invalid_request", "The search was stopped: its client went away.") from None
            raise timed_out(seconds) from None
    finally:
        if not task.done():  # this request itself was cancelled: stop the queries, then wait for them
            stop.abandon()
            try:
                await asyncio.shield(task)
            except BaseException:
                pass
