"""What a sender can still do once a message is out, and what a recipient's reading records.

- Withdraw (`revoke`): chosen recipients' copies stop being readable (410 `revoked`), and
  their notifications not yet sent are `cancelled`. The copy's row stays, so the list still
  shows it, as withdrawn and without its snippet.
- End date (`set_expiry`, and `default_expiry` at sending): past it, every recipient's copy
  answers 410 `expired`; the sender keeps reading its own.
- `gate` answers those 410s wherever a copy is read: the API's message and attachments,
  the web page, body and downloads, and a reply or forward that names the message.
- `opened`: the first read or download by a recipient sets its copy's `opened_at`, once
  (a conditional UPDATE), and returns the `message.opened` event for the sender.
Each of these writes its audit row (pen_server/audit.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import and_, exists, select, update
from sqlalchemy.orm import Session

from pen_server import audit
from pen_server.accounts import normalize_email
from pen_server.errors import ApiError, validation
from pen_server.models import MailboxEntry, Message, Notification, Package, User, utcnow

UNSENT = ("queued", "deferred")  # not handed to the relay: a withdrawal cancels them
REVOKED = "The sender withdrew this message; it can no longer be read."
EXPIRE_DAYS_MAX = 36500


def when(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%-d %b %Y, %H:%M UTC")


def expired_sentence(expires_at: datetime) -> str:
    return f"This message could be read until {when(expires_at)}; it has expired."


def closed(entry: MailboxEntry, now: datetime | None = None) -> tuple[str, str] | None:
    """("revoked" | "expired", the sentence) when this copy can no longer be read, else None.
    The sender's own copy is never closed."""
    if entry.is_sender:
        return None
    if entry.revoked_at is not None:
        return "revoked", REVOKED
    expires = entry.message.expires_at
    if expires is not None and expires <= (now or utcnow()):
        return "expired", expired_sentence(expires)
    return None


class Closed(ApiError):
    """410 `revoked` or `expired`; a web page shows it under `title`."""

    def __init__(self, code: str, message: str):
        super().__init__(410, code, message)
        self.title = "Message withdrawn" if code == "revoked" else "Message expired"


def gate(entry: MailboxEntry) -> MailboxEntry:
    """The copy, or 410 `revoked` / `expired` with its sentence."""
    shut = closed(entry)
    if shut is not None:
        raise Closed(*shut)
    return entry


def parse_expiry(value: str | None, field: str = "expires_at") -> datetime | None:
    """An RFC 3339 time in the future (with its offset), or None; else 422 naming `field`."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.strip().replace("z", "Z"))
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None or "T" not in value.upper():
        raise validation({field: "an RFC 3339 time with its offset, such as 2026-12-31T17:00:00Z"},
                         f"The end date {value[:40]!r} is not an RFC 3339 time such as 2026-12-31T17:00:00Z.")
    parsed = parsed.astimezone(UTC)
    if parsed <= utcnow():
        raise validation({field: "must be in the future"}, "The end date must be in the future.")
    return parsed


def default_expiry(session: Session, user: User, now: datetime) -> datetime | None:
    """The end date of the sender's membership package (none for a guest)."""
    if user.role == "guest" or not user.package:
        return None
    days = session.scalar(select(Package.expire_days).where(Package.name == user.package))
    return now + timedelta(days=days) if days else None


# -- opened ----------------------------------------------------------------------------------

def opened(session: Session, entry: MailboxEntry) -> tuple[str, str, dict] | None:
    """Mark a recipient's copy opened, the first time only; returns the event for the sender
    (sender id, "message.opened", payload), or None (the sender's own copy, or opened before)."""
    if entry.is_sender or entry.opened_at is not None:
        return None
    now = utcnow()
    done = session.execute(update(MailboxEntry).where(MailboxEntry.id == entry.id, MailboxEntry.opened_at.is_(None))  # type: ignore[attr-defined]
                           .values(opened_at=now).execution_options(synchronize_session=False)).rowcount
    if not done:
        return None
    entry.opened_at = now
    message = entry.message
    user = session.get(User, entry.user_id)
    name = session.scalar(select(Notification.recipient_name).where(
        Notification.message_id == message.id, Notification.recipient_user_id == entry.user_id).limit(1))
    from pen_server.schemas import rfc3339

    return message.sender_id, "message.opened", {
        "message_id": message.id, "recipient": {"email": user.email, "name": name or None},
        "opened_at": rfc3339(now)}


def record_read(session: Session, entry: MailboxEntry, who: audit.Who, action: str = "read",
                attachment_id: str | None = None, detail: dict | None = None) -> tuple[str, str, dict] | None:
    """The audit row of a read or download, and the first opening's event (or None). Call it
    last in the transaction: the audit append holds the chain's lock until the commit."""
    event = opened(session, entry)
    audit.append(session, [audit.Entry(action, who, entry.message_id, attachment_id=attachment_id,
                                       detail=detail or {})])
    return event


# -- withdraw and end date -------------------------------------------------------------------

def revoke(session: Session, message: Message, recipients: list[str] | None,
           who: audit.Who) -> list[Notification]:
    """Withdraw the message from `recipients` (e-mail addresses; None: every recipient).
    Returns the notifications cancelled by it. A recipient withdrawn before stays as it was."""
    rows = list(session.scalars(select(Notification).where(Notification.message_id == message.id)))
    by_email = {n.recipient_email.lower(): n.recipient_user_id for n in rows}
    if recipients is None:
        wanted = set(by_email)
    else:
        wanted, fields = set(), {}
        for i, raw in enumerate(recipients):
            try:
                email = normalize_email(raw)
            except ValueError:
                email = raw.strip().lower()
            if email not in by_email:
                fields[f"recipients[{i}]"] = "not a recipient of this message"
            wanted.add(email)
        if fields:
            raise validation(fields, f"{_first_bad(recipients, by_email)} is not a recipient of this message.")
    user_ids = {by_email[e] for e in wanted if by_email.get(e) and by_email[e] != message.sender_id}
    now = utcnow()
    entries = list(session.scalars(select(MailboxEntry).where(
        MailboxEntry.message_id == message.id, MailboxEntry.user_id.in_(user_ids),
        MailboxEntry.is_sender.is_(False), MailboxEntry.revoked_at.is_(None))))
    for entry in entries:
        entry.revoked_at = now
    cancelled = list(session.scalars(select(Notification).where(
        Notification.message_id == message.id, Notification.recipient_user_id.in_(user_ids),
        Notification.status.in_(UNSENT))))
    if cancelled:
        session.execute(update(Notification).where(Notification.id.in_([n.id for n in cancelled]),
                                                   Notification.status.in_(UNSENT))
                        .values(status="cancelled", updated_at=now, lease_owner=None, lease_until=None)
                        .execution_options(synchronize_session=False))
        for n in cancelled:
            n.status = "cancelled"
    session.flush()
    emails = {u.id: u.email for u in session.scalars(select(User).where(
        User.id.in_([e.user_id for e in entries])))}
    audit.append(session, [audit.Entry("revoke", who, message.id, recipient=emails.get(e.user_id))
                           for e in sorted(entries, key=lambda e: emails.get(e.user_id, ""))])
    return cancelled


def _first_bad(recipients: list[str], known: dict) -> str:
    return next((r.strip()[:100] for r in recipients if r.strip().lower() not in known), "That address")


def set_expiry(session: Session, message: Message, expires_at: datetime | None, who: audit.Who) -> None:
    """Move or remove the end date; the audit row says the new one."""
    from pen_server.schemas import rfc3339

    message.expires_at = expires_at
    session.flush()
    audit.append(session, [audit.Entry("expiry", who, message.id,
                                       detail={"expires_at": rfc3339(expires_at) if expires_at else None})])


def revoked_recipient(user_id_column, message_id_column):
    """SQL: the recipient's copy of that message was withdrawn (for the outbox's checks)."""
    return exists().where(and_(MailboxEntry.message_id == message_id_column, MailboxEntry.user_id == user_id_column,
                               MailboxEntry.revoked_at.is_not(None)))
