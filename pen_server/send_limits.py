"""Limits on sending: recipients per message, and messages and recipients per user per hour.

The hourly count is read from the database (the user's own messages of the last hour and
their notification rows), not kept in memory, so several server processes share it. It is
checked after the new message's row is written: on SQLite that write holds the database's
write lock, and on PostgreSQL the check first locks the sender's row (FOR NO KEY UPDATE, which
the message rows' foreign-key locks do not conflict with), so two sends of one user at the same
moment are counted one after the other and cannot both slip under the limit."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from pen_server.errors import ApiError, validation
from pen_server.models import Message, Notification, User, utcnow
from pen_server.settings import Settings
from pen_server.text import plural

WINDOW = timedelta(hours=1)


def check_recipient_cap(settings: Settings, count: int) -> None:
    cap = settings.max_recipients
    if count > cap:
        raise validation({"to": f"at most {plural(cap, 'recipient')} in to, cc and bcc together"},
                         f"A message can go to at most {plural(cap, 'person', 'people')} (to, cc and bcc together) "
                         f"and this one names {count}; split it into several messages or use fewer recipients.")


def _wait(now: datetime, earlier: list[tuple[datetime, int]], new: int, limit: int) -> float | None:
    """Seconds until `new` more fits under `limit`, given the window's earlier (time, amount)
    oldest first; None when it fits now."""
    total = sum(amount for _, amount in earlier)
    if total + new <= limit:
        return None
    for sent_at, amount in earlier:
        total -= amount
        if total + new <= limit:
            return max(1.0, (sent_at + WINDOW - now).total_seconds())
    return WINDOW.total_seconds()


def check_rate(session: Session, settings: Settings, sender_id: str, message_id: str, recipients: int) -> None:
    """Refuse (429) when this message, already written as `message_id`, takes its sender past
    the hourly limits. Call it inside the sending transaction, after the message's row."""
    # Until this transaction ends, the sender's other sends wait here (SQLite: no-op).
    session.execute(select(User.id).where(User.id == sender_id).with_for_update(key_share=True))
    now = utcnow()
    rows = session.execute(
        select(Message.sent_at, func.count(Notification.id))
        .outerjoin(Notification, Notification.message_id == Message.id)
        .where(Message.sender_id == sender_id, Message.sent_at > now - WINDOW, Message.id != message_id)
        .group_by(Message.id, Message.sent_at).order_by(Message.sent_at)).all()
    waits = [_wait(now, [(t, 1) for t, _ in rows], 1, settings.send_messages_per_hour),
             _wait(now, [(t, n) for t, n in rows], recipients, settings.send_recipients_per_hour)]
    waits = [w for w in waits if w is not None]
    if waits:
        seconds = math.ceil(max(waits))
        minutes = max(1, math.ceil(seconds / 60))
        raise ApiError(429, "rate_limited",
                       f"You have sent as much as this PEN allows in one hour "
                       f"({plural(settings.send_messages_per_hour, 'message')}, "
                       f"{plural(settings.send_recipients_per_hour, 'recipient')}); try again in about "
                       f"{plural(minutes, 'minute')}.",
                       headers={"Retry-After": str(seconds)})
