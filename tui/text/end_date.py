"""A message's end date as people type it and read it, for compose, the reader and line
mode alike. No Textual here.

Typed: a length of time from now (``7d``, ``12h``, ``2w``, ``3 days``), a day
(``2026-12-01``: readable through that day, so it ends at the local midnight after it), or a
day and time (``2026-12-01 17:00``, local unless it names its zone, ``...Z`` or
``+01:00``). ``none`` (or nothing) removes the end date where that is allowed. The result is
a fixed time: a draft keeps it as it is, so sending it again sends the same thing."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from tui.safe_text import one_line
from tui.text.format import long_date

__all__ = ["EXAMPLES", "EndDateError", "field_text", "now_sentence", "parse_end_date"]

EXAMPLES = "7d, 12h, 2w, 2026-12-01 or 2026-12-01 17:00"
NONE_WORDS = ("", "none", "never", "no", "off", "-")
_LENGTH = re.compile(r"^(\d{1,4})\s*(h|hours?|d|days?|w|weeks?)$", re.I)
_UNITS = {"h": timedelta(hours=1), "d": timedelta(days=1), "w": timedelta(weeks=1)}
_LONGEST = timedelta(days=3660)  # ten years: a typo such as 7000d is caught, not sent


class EndDateError(ValueError):
    """What was typed is not an end date; ``str()`` is one sentence saying what would be."""


def parse_end_date(text: str, now: datetime | None = None, *, allow_none: bool = True) -> datetime | None:
    """The end date ``text`` means (an aware datetime in the future), or None for "no end
    date" (only with ``allow_none``). Raises EndDateError with a sentence."""
    now = (now or datetime.now().astimezone()).astimezone()
    value = (text or "").strip()
    if value.lower() in NONE_WORDS:
        if allow_none:
            return None
        raise EndDateError(f"Give the end date as {EXAMPLES}.")
    match = _LENGTH.match(value)
    if match:
        count = int(match.group(1))
        when = now + count * _UNITS[match.group(2)[0].lower()]
    else:
        when = _absolute(value)
    if when <= now:
        raise EndDateError(f"The end date {long_date(when)} has passed; give one in the future.")
    if when - now > _LONGEST:
        raise EndDateError(f"The end date {long_date(when)} is more than ten years away; give a nearer one.")
    return when


def _absolute(value: str) -> datetime:
    shown = one_line(value, 40)
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise EndDateError(f"{shown!r} is not an end date; give one as {EXAMPLES}.") from None
    if len(value) == 10:  # a day alone: readable through that day, until the midnight after it
        when = when + timedelta(days=1)
    return when.astimezone() if when.tzinfo is None else when


def field_text(when: datetime | None) -> str:
    """An end date as a field shows it to be changed: local time, to the minute ("2026-12-04
    09:30"), which parse_end_date reads back as the same time; "" for none."""
    return when.astimezone().strftime("%Y-%m-%d %H:%M") if when is not None else ""


def now_sentence(when: datetime | None) -> str:
    """What a sender is told once the end date of a message is set or removed."""
    if when is None:
        return "It has no end date now: the recipients can read it until you withdraw it."
    return f"The recipients can read it until {long_date(when)}."
