"""The server's clock: real time, or (PEN_CLOCK, for reproducible demos and snapshot tests)
a time it starts at and runs on from, PEN_CLOCK_RATE times as fast.

Nothing here reads the environment: `pen-server` reads PEN_CLOCK and PEN_CLOCK_RATE when it
starts (pen_server.settings.clock_from_environment, called by pen_server.cli.main) and sets
the clock with ``set_clock``; a process that never does (a test's in-process app) has real time.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta


@dataclass(frozen=True)
class Clock:
    start: datetime | None = None  # None: real time
    rate: float = 1.0
    began: float = field(default_factory=time.monotonic)

    def now(self) -> datetime:
        if self.start is None:
            return datetime.now(UTC)
        return self.start + timedelta(seconds=(time.monotonic() - self.began) * self.rate)


_clock = Clock()


def set_clock(clock: Clock) -> None:
    global _clock
    _clock = clock


def utcnow() -> datetime:
    return _clock.now()
