"""What the app has said in notices (toasts), kept to be read again: a toast fades after
some seconds, away from the cursor, and a reader who was elsewhere (a braille display, a
screen reader reading another line) would lose it. Bounded: the newest MAX_NOTICES."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

MAX_NOTICES = 200

# The severity as a word on each row: never colour alone.
SEVERITY_WORDS = {"information": "note", "warning": "warning", "error": "error"}


@dataclass(frozen=True)
class Notice:
    at: datetime
    severity: str  # Textual's: "information", "warning" or "error"
    title: str
    text: str

    @property
    def severity_word(self) -> str:
        return SEVERITY_WORDS.get(self.severity, self.severity)


class NoticeLog:
    def __init__(self, limit: int = MAX_NOTICES) -> None:
        self._notices: deque[Notice] = deque(maxlen=limit)

    def add(self, text: str, *, title: str = "", severity: str = "information", at: datetime | None = None) -> Notice:
        notice = Notice(at or datetime.now(), severity, title, text)
        self._notices.append(notice)
        return notice

    def newest_first(self) -> list[Notice]:
        return list(reversed(self._notices))

    def __len__(self) -> int:
        return len(self._notices)

    def __iter__(self) -> Iterator[Notice]:
        return iter(self._notices)
