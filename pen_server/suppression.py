"""The suppression list: addresses whose notification bounced permanently (bounces.record puts
them here, in the bounce's own transaction). A notification to one of them is never sent: it
is `suppressed` when the message is written (sending.send) or, for one queued before the
bounce came, when the delivery worker claims it, with the date and the bounce's diagnostic
in `last_error`. An administrator takes an address off the list (`DELETE
/admin/suppressions/{email}`, `pen-server suppression remove`); the sender can then send the
notification again. Only a permanent bounce adds an address: a delay, a deferral or a
relay's refusal at sending time never does."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from pen_server import paging
from pen_server.models import Suppression, utcnow

_CHUNK = 400  # addresses per IN list, well under SQLite's parameter limit


def add(session: Session, email: str, reason: str, notification_id: str | None = None) -> bool:
    """Put an address on the list (in the caller's transaction); False when it was there."""
    email = email.lower()
    if session.get(Suppression, email) is not None:
        return False
    try:
        with session.begin_nested():  # another bounce for the same address at the same moment
            session.add(Suppression(email=email, reason=reason, created_at=utcnow(), notification_id=notification_id))
    except IntegrityError:
        return False
    return True


def why(row: Suppression) -> str:
    """The `last_error` of a notification not sent to this address."""
    return f"on the suppression list since {row.created_at:%Y-%m-%d %H:%M} UTC, after a permanent bounce: {row.reason}"


def reasons(session: Session, emails: Iterable[str]) -> dict[str, str]:
    """For each of these addresses that is on the list, the `last_error` of a notification to it."""
    wanted = sorted({e.lower() for e in emails})
    found: dict[str, str] = {}
    for i in range(0, len(wanted), _CHUNK):
        for row in session.scalars(select(Suppression).where(Suppression.email.in_(wanted[i:i + _CHUNK]))):
            found[row.email] = why(row)
    return found


def out(row: Suppression) -> dict:
    return {"email": row.email, "reason": row.reason, "created_at": row.created_at}


def page(session: Session, q: str | None, cursor: str | None, limit: int) -> dict:
    query = select(Suppression)
    if q:
        query = query.where(Suppression.email.icontains(q, autoescape=True))
    rows, next_cursor = paging.by_key(session, query, Suppression.email, cursor, limit)
    return {"items": [out(r) for r in rows], "next_cursor": next_cursor}


def remove(session: Session, email: str) -> bool:
    """Take an address off the list; False when it was not on it."""
    return bool(session.execute(delete(Suppression).where(Suppression.email == email.strip().lower()))
                .rowcount)  # type: ignore[attr-defined]
