"""A small sliding-window counter for the pages' own limits (fresh links), bounded in
memory: the oldest keys go first when it is full."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict


class WindowLimit:
    def __init__(self, allowed: int, window: float, max_keys: int = 50_000):
        self.allowed, self.window, self.max_keys = allowed, window, max_keys
        self._hits: OrderedDict[str, list[float]] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, key: str) -> bool:
        """Count one use of `key`; False (and not counted) when its window is full."""
        now = time.monotonic()
        with self._lock:
            stamps = [t for t in self._hits.pop(key, []) if now - t < self.window]
            ok = len(stamps) < self.allowed
            if ok:
                stamps.append(now)
            self._hits[key] = stamps
            while len(self._hits) > self.max_keys:
                self._hits.popitem(last=False)
            return ok
