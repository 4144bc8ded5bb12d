"""How penmail shows things, in the full-screen UI and in line mode alike: sizes, dates,
addresses, a message's header block and its body as text. No Textual here.

Everything from a server passes through ``tui.safe_text`` here (``one_line`` for fields,
``clean`` for bodies) before it is returned.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

from tui.safe_text import clean, one_line

__all__ = [
    "NOTIFICATION_PENDING",
    "address_text",
    "body_text",
    "duration_left",
    "gone_mark",
    "gone_state",
    "header_rows",
    "header_text",
    "notification_summary",
    "human_size",
    "iso",
    "list_date",
    "long_date",
    "short_date",
    "withdrawn_sentence",
]

_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


# ---------------------------------------------------------------- sizes and durations


def human_size(n: int | float) -> str:
    """ "512 bytes", "1.5 KB", "6.0 MB", "2.1 GB" (units of 1024)."""
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{int(n)} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} bytes"  # pragma: no cover


def duration_left(seconds: float | None) -> str:
    """ "3 seconds left", "2 min 05 s left", "1 h 02 min left", or "time left unknown"."""
    if seconds is None:
        return "time left unknown"
    s = max(0, math.ceil(seconds))
    if s < 60:
        return f"{s} second{'s' if s != 1 else ''} left"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s left"
    return f"{s // 3600} h {s % 3600 // 60:02d} min left"


# ---------------------------------------------------------------- dates (the same in every locale)


def iso(when: datetime | None) -> str | None:
    """RFC 3339 in UTC, as the API writes it."""
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def list_date(when: datetime | None) -> str:
    """ "2026-11-27 09:30" in local time: sortable."""
    if when is None:
        return "-"
    return when.astimezone().strftime("%Y-%m-%d %H:%M")


def long_date(when: datetime | None) -> str:
    """ "Fri 27 Nov 2026 09:30" in local time."""
    if when is None:
        return "-"
    local = when.astimezone()
    return f"{_DAYS[local.weekday()]} {local.day:02d} {_MONTHS[local.month - 1]} {local.year} {local:%H:%M}"


def short_date(when: datetime | None, now: datetime | None = None) -> str:
    """A list row's date in local time: "09:30" today, "27 Nov" this year, else "2025-11-27"."""
    if when is None:
        return ""
    local = when.astimezone()
    today = (now or datetime.now(UTC)).astimezone().date()
    if local.date() == today:
        return local.strftime("%H:%M")
    if local.year == today.year:
        return f"{local.day:02d} {_MONTHS[local.month - 1]}"
    return local.strftime("%Y-%m-%d")


# ---------------------------------------------------------------- a message


def address_text(a) -> str:
    """ "Ann Smith <ann@a.example>", or the address alone when there is no other name."""
    email = one_line(a.email)
    name = one_line(a.name or "")
    return f"{name} <{email}>" if name and name.lower() != email.lower() else email


def header_rows(m, *, with_id: bool = False) -> list[tuple[str, str]]:
    """A message's header block as (label, value) pairs, every value on one line."""
    def addrs(items) -> str:
        return ", ".join(address_text(a) for a in items) or "-"

    rows = [("From", address_text(m.sender)), ("To", addrs(m.to))]
    if m.cc:
        rows.append(("Cc", addrs(m.cc)))
    if m.bcc:
        rows.append(("Bcc", addrs(m.bcc)))
    rows.append(("Date", long_date(m.sent_at)))
    if getattr(m, "expires_at", None) is not None:
        rows.append(("Expires", long_date(m.expires_at)))
    rows.append(("Subject", one_line(m.subject) or "(no subject)"))
    if with_id:
        rows.append(("Id", one_line(m.id)))
    return rows


def header_text(m, *, with_id: bool = False) -> str:
    """The header block as aligned lines: "From:    Ann <ann@a.example>"..."""
    return "\n".join(f"{label + ':':<8} {value}" for label, value in header_rows(m, with_id=with_id))


GONE_WORDS = {"revoked": "withdrawn", "expired": "expired"}


def gone_state(s, me: str | None = None, now: datetime | None = None) -> str | None:
    """"revoked" or "expired" when the person can no longer read this message (a recipient's
    copy that its sender withdrew, or whose end date has passed), else None. The sender's own
    copy is never gone: ``me`` is the person's address."""
    if s.gone:
        return s.gone
    own = s.folder in ("sent", "drafts") or (me is not None and s.sender.email.lower() == me.lower())
    if s.expires_at is not None and not own and s.expires_at <= (now or datetime.now(UTC)):
        return "expired"
    return None


def gone_mark(s, me: str | None = None, now: datetime | None = None) -> str:
    """"(withdrawn) " or "(expired) " before the subject of a message the person can no
    longer read, as a list shows it; "" otherwise."""
    word = GONE_WORDS.get(gone_state(s, me, now) or "")
    return f"({word}) " if word else ""


def body_text(m) -> tuple[str, list[str], str | None]:
    """(text, links, note): the HTML part through tui.text.htmlbody, the text part when that fails
    or there is no HTML; everything cleaned. ``note`` says why the text part is shown. The
    conversion can take a while (it has a deadline): call it from a thread in the UI."""
    from tui.text.htmlbody import HtmlConversionError, html_to_text  # html2text loads only when needed

    if m.body_html:
        try:
            text, links = html_to_text(m.body_html)
            return clean(text), list(links), None
        except HtmlConversionError as exc:
            return clean(m.body_text), [], str(exc)
    return clean(m.body_text), [], None


NOTIFICATION_PENDING = ("queued", "sending", "deferred")  # a notification that has not gone yet
_STATUS_ORDER = ("sent", "failed", "bounced", "suppressed", "cancelled", "deferred", "sending", "queued")


def notification_summary(statuses: list[str]) -> str:
    """"3 recipients: 2 sent, 1 failed" for the statuses of one message's notifications."""
    counts: dict[str, int] = {}
    for status in statuses:
        counts[status] = counts.get(status, 0) + 1
    order = list(_STATUS_ORDER) + sorted(set(counts) - set(_STATUS_ORDER))
    parts = [f"{counts[s]} {one_line(s)}" for s in order if counts.get(s)]
    return f"{len(statuses)} recipient{'s' if len(statuses) != 1 else ''}: {', '.join(parts) or 'none'}"


def withdrawn_sentence(message, recipients) -> str:
    """What a withdrawal did, in one sentence: "Withdrew “Lab results” from everyone; you keep
    your copy; the notification to x@y.example, not sent yet, was cancelled." ``recipients``:
    the addresses it was withdrawn from (None: everyone); ``message``: the sender's copy as
    the PEN answered."""
    wanted = {r.lower() for r in recipients} if recipients else None
    whom = "everyone" if wanted is None else ", ".join(one_line(r, 80) for r in recipients)
    cancelled = [address_text(n.recipient) for n in message.notifications
                 if n.status == "cancelled" and (wanted is None or n.recipient.email.lower() in wanted)]
    text = f"Withdrew \u201c{one_line(message.subject, 80) or '(no subject)'}\u201d from {whom}; you keep your copy"
    if cancelled:
        text += (f"; the notification{'s' if len(cancelled) != 1 else ''} to {', '.join(cancelled)}, not sent yet, "
                 f"{'were' if len(cancelled) != 1 else 'was'} cancelled")
    return text + "."
