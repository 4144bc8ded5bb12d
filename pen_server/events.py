"""In-process event fan-out for `GET /events`: each open stream has a bounded queue.
Publishing is safe from any thread (API handlers run in a thread pool).

A stream belongs to one sign-in (the token family it was opened with). Each user may have
`max_streams` open; one more ends that user's oldest stream (a client whose old connection
died unnoticed gets in at once, instead of being refused until the dead one times out).
Signing out ends the sign-in's streams here; the stream itself also re-checks its sign-in
in the database, for changes made by another process (`pen-server user passwd`)."""

from __future__ import annotations

import asyncio
import json
import threading
from dataclasses import dataclass, field

END = None  # put in a stream's queue: the stream closes


@dataclass(eq=False)
class Subscription:
    user_id: str
    family_id: str
    queue: asyncio.Queue = field(repr=False)

    def put(self, frame: str | None) -> None:
        """On the event loop: never blocks; a stalled reader loses its oldest event."""
        if self.queue.full():
            self.queue.get_nowait()
        self.queue.put_nowait(frame)


class EventHub:
    def __init__(self, queue_size: int = 1000, max_streams: int = 8):
        self._loop: asyncio.AbstractEventLoop | None = None
        self._subs: dict[str, list[Subscription]] = {}  # per user, oldest first
        self._lock = threading.Lock()
        self.queue_size = queue_size
        self.max_streams = max_streams

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def subscribe(self, user_id: str, family_id: str) -> Subscription:
        sub = Subscription(user_id, family_id, asyncio.Queue(self.queue_size))
        with self._lock:
            subs = self._subs.setdefault(user_id, [])
            pushed_out = subs[:max(0, len(subs) + 1 - self.max_streams)]
            del subs[:len(pushed_out)]
            subs.append(sub)
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

    def streams(self, user_id: str) -> int:
        with self._lock:
            return len(self._subs.get(user_id, ()))

    def publish(self, user_id: str, event: str, data: dict) -> None:
        frame = f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"
        self._deliver(user_id, frame, lambda sub: True)

    def end_sign_in(self, user_id: str, family_id: str) -> None:
        """Close the streams opened with this sign-in (after sign-out)."""
        self._deliver(user_id, END, lambda sub: sub.family_id == family_id)

    def end_all(self) -> None:
        """Close every stream (the server is stopping: it need not wait for them)."""
        with self._lock:
            users = list(self._subs)
        for user_id in users:
            self._deliver(user_id, END, lambda sub: True)

    def _deliver(self, user_id: str, frame: str | None, wanted) -> None:
        with self._lock:
            subs = [s for s in self._subs.get(user_id, ()) if wanted(s)]
        if not subs or self._loop is None:
            return

        def put() -> None:
            for sub in subs:
                sub.put(frame)

        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            put()
        else:
            self._loop.call_soon_threadsafe(put)
