"""What a download raises, and what it reports while it runs. No Textual here."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tui.pen_client import PenError

__all__ = ["DownloadCancelled", "DownloadError", "Progress"]


class DownloadError(PenError):
    """A download failed; ``message`` says why in one sentence."""


class DownloadCancelled(PenError):
    """The download was stopped on request; the part that arrived is kept to resume."""

    def __init__(self, message: str, *, part: Path | None = None, done: int = 0):
        super().__init__(message, code="cancelled")
        self.part, self.done = part, done


@dataclass(frozen=True)
class Progress:
    """One report of a download's progress (``filename`` is already safe to show)."""

    done: int
    total: int
    bytes_per_second: float
    seconds_left: float | None
    filename: str
    file_number: int = 1
    file_count: int = 1

    @property
    def fraction(self) -> float:
        return min(1.0, self.done / self.total) if self.total > 0 else 1.0
