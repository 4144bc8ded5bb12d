"""In-process event fan-out for `GET /events`: each open stream has a bounded queue.
Publishing is safe from any thread (API handlers run in a thread pool)."""

from __future__ import annotations

import asyncio
import json
import threading


class EventHub:
    def __init__(self, queue_size: int = 1000):
        self._loop: asyncio.AbstractEventLoop | None = None
        self._subs: dict[str, set[asyncio.Queue]] = {}
        self._lock = threading.Lock()
        self.queue_size = queue_size

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def subscribe(self, user_id: str) -> asyncio.Queue:
        q: asyncio.Queue = asyncio.Queue(self.queue_size)
        with self._lock:
            self._subs.setdefault(user_id, set()).add(q)
        return q

    def unsubscribe(self, user_id: str, q: asyncio.Queue) -> None:
        with self._lock:
            subs = self._subs.get(user_id)
            if subs:
                subs.discard(q)
                if not subs:
                    self._subs.pop(user_id, None)

    def publish(self, user_id: str, event: str, data: dict) -> None:
        with self._lock:
            queues = list(self._subs.get(user_id, ()))
        if not queues or self._loop is None:
            return
        frame = f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"

        def put() -> None:
            for q in queues:
                if q.full():  # a stalled reader loses the oldest event, never blocks us
                    q.get_nowait()
                q.put_nowait(frame)

        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            put()
        else:
            self._loop.call_soon_threadsafe(put)
