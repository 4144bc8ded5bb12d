"""Each user's own copies of messages: listing with keyset paging, reading, moving, deleting."""

from __future__ import annotations

import base64
import binascii
from datetime import datetime

from sqlalchemy import and_, bindparam, func, select, tuple_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, joinedload

from pen_server import search
from pen_server.errors import ApiError, not_found
from pen_server.models import FolderCount, MailboxEntry, Message, Notification, User, utcnow
from pen_server.schemas import rfc3339

FOLDERS = ("inbox", "sent", "archive", "trash")


def address(email: str, name: str | None) -> dict:
    return {"email": email, "name": name or None}


def attachment_out(att) -> dict:
    return {"id": att.id, "filename": att.filename, "content_type": att.content_type,
            "size": att.size, "sha256": att.sha256}


def _time(value: datetime | None) -> str | None:
    return rfc3339(value) if value is not None else None


def notification_out(n: Notification, opened_at: datetime | None = None,
                     revoked_at: datetime | None = None) -> dict:
    """A notification, with its recipient's copy's opened and withdrawn times."""
    return {"recipient": address(n.recipient_email, n.recipient_name), "kind": n.kind, "status": n.status,
            "attempts": n.attempts, "last_error": n.last_error, "updated_at": n.updated_at,
            "opened_at": _time(opened_at), "revoked_at": _time(revoked_at)}


def summary_out(entry: MailboxEntry, now: datetime | None = None) -> dict:
    m = entry.message
    # A copy that can no longer be read (withdrawn, past its end date) shows no snippet.
    shut = not entry.is_sender and (entry.revoked_at is not None or (
        m.expires_at is not None and m.expires_at <= (now or utcnow())))
    return {"id": m.id, "thread_id": m.thread_id, "folder": entry.folder,
            "from": address(m.from_email, m.from_name), "to": m.to_list, "cc": m.cc_list,
            "subject": m.subject, "sent_at": m.sent_at, "unread": entry.unread,
            "attachment_count": m.attachment_count, "size": m.size, "snippet": "" if shut else m.snippet,
            "expires_at": _time(m.expires_at), "revoked_at": _time(entry.revoked_at)}


# A page shows summaries: the bodies (up to megabytes each) stay in the database.
SUMMARY_ONLY = joinedload(MailboxEntry.message).defer(Message.body_text).defer(Message.body_html)


def count_change(session: Session, user_id: str, folder: str, delta: int) -> None:
    """Add delta to a folder's count, in the caller's transaction."""
    done = session.execute(update(FolderCount).where(FolderCount.user_id == user_id, FolderCount.folder == folder)
                           .values(total=FolderCount.total + delta)).rowcount  # type: ignore[attr-defined]
    if done:
        return
    total = session.scalar(select(func.count()).select_from(MailboxEntry).where(
        MailboxEntry.user_id == user_id, MailboxEntry.folder == folder))
    try:
        with session.begin_nested():  # another request may create the row at the same time
            session.add(FolderCount(user_id=user_id, folder=folder, total=total))
    except IntegrityError:
        count_change(session, user_id, folder, delta)


def folder_total(session: Session, user_id: str, folder: str) -> int:
    row = session.get(FolderCount, (user_id, folder))
    if row is not None:
        return row.total
    return session.scalar(select(func.count()).select_from(MailboxEntry).where(
        MailboxEntry.user_id == user_id, MailboxEntry.folder == folder)) or 0


def folders(session: Session, user_id: str) -> list[dict]:
    """Each folder's name, total (the kept count) and unread (counted in ix_entry_unread).
    Each folder and unread = true are named as equalities, so that the count seeks to the
    unread rows of each folder instead of reading every row of the user's (2-3x faster at
    100,000 messages with a third unread; never slower)."""
    unread = dict(session.execute(
        select(MailboxEntry.folder, func.count())
        .where(MailboxEntry.user_id == user_id, MailboxEntry.folder.in_(FOLDERS),
               MailboxEntry.unread == True)  # noqa: E712 (an equality, which the index seeks on)
        .group_by(MailboxEntry.folder)).all())
    return [{"name": f, "total": folder_total(session, user_id, f), "unread": unread.get(f, 0)} for f in FOLDERS]


def notifications_for(session: Session, message_id: str) -> list[Notification]:
    return list(session.scalars(select(Notification).where(Notification.message_id == message_id)
                                .order_by(Notification.position)))


def notification_items(session: Session, message_id: str) -> list[dict]:
    """The message's notifications as the API shows them, each with its recipient's copy's
    opened and withdrawn times (one query)."""
    copy = and_(MailboxEntry.message_id == Notification.message_id,
                MailboxEntry.user_id == Notification.recipient_user_id, MailboxEntry.is_sender.is_(False))
    rows = session.execute(select(Notification, MailboxEntry.opened_at, MailboxEntry.revoked_at)
                           .outerjoin(MailboxEntry, copy).where(Notification.message_id == message_id)
                           .order_by(Notification.position, Notification.updated_at))
    return [notification_out(n, opened_at, revoked_at) for n, opened_at, revoked_at in rows]


def message_out(session: Session, entry: MailboxEntry) -> dict:
    m = entry.message
    out = summary_out(entry)
    own = entry.is_sender
    out.update({
        "bcc": m.bcc_list if own else [],
        "body_text": m.body_text,
        "body_html": m.body_html,
        "attachments": [attachment_out(a) for a in m.attachments],
        "in_reply_to": m.in_reply_to,
        "notifications": notification_items(session, m.id) if own else [],
    })
    return out


def entry_for(session: Session, user: User, message_id: str) -> MailboxEntry:
    entry = session.scalar(select(MailboxEntry).where(MailboxEntry.user_id == user.id,
                                                      MailboxEntry.message_id == message_id))
    if entry is None:
        raise not_found()
    return entry


def readable_entry(session: Session, user: User, message_id: str) -> MailboxEntry:
    """The caller's copy while it can be read: 404 without one, 410 `revoked` or `expired`."""
    from pen_server.after_send import gate

    return gate(entry_for(session, user, message_id))


# A cursor names the last row of a page. Cursors of the oldest-first order carry a prefix, so
# that one given out for one order is refused (422) by the other instead of paging wrongly.
_ORDER_PREFIX = {"newest": "", "oldest": "oldest|"}


def encode_cursor(sent_at: datetime, message_id: str, order: str = "newest") -> str:
    raw = f"{_ORDER_PREFIX[order]}{sent_at.isoformat()}|{message_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, order: str = "newest") -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        prefix = _ORDER_PREFIX[order]
        if not raw.startswith(prefix):
            raise ValueError
        stamp, message_id = raw[len(prefix):].split("|", 1)
        when = datetime.fromisoformat(stamp)
        if when.tzinfo is None or not message_id:
            raise ValueError
        return when, message_id
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise ApiError(422, "validation_failed", "The cursor is not one that this server gave out for this order.",
                       fields={"cursor": "not a cursor from this server for this order"}) from None


def page(session: Session, user: User, folder: str, limit: int, cursor: str | None,
         unread: bool | None, q: str | None, order: str = "newest", before: search.Before | None = None) -> dict:
    """One page of a folder, newest first or (order "oldest") oldest first; the same filters,
    the same index (read forwards or backwards), and cursors of each order's own. With `q`, a
    search (search.py): `total` then counts up to search.COUNT_LIMIT matches."""
    terms = search.parse(q) if q else []
    if terms:
        return search.page(session, user, folder, limit, cursor, unread, terms, order, before or search.no_limit)
    filters = [MailboxEntry.user_id == user.id, MailboxEntry.folder == folder]
    if unread is not None:
        filters.append(MailboxEntry.unread == unread)
        total = session.scalar(select(func.count()).select_from(MailboxEntry).where(*filters)) or 0
    else:
        total = folder_total(session, user.id, folder)
    rows, next_cursor = keyset(session, select(MailboxEntry), filters, limit, cursor, order)
    return {"items": [summary_out(e) for e in rows], "next_cursor": next_cursor, "total": total, "total_exact": True}


def keyset(session: Session, query, filters: list, limit: int, cursor: str | None,
           order: str) -> tuple[list[MailboxEntry], str | None]:
    """`limit` entries of `query` after `cursor`, by (sent_at, message_id) newest or oldest
    first, and the cursor of the next page (None at the end)."""
    filters = list(filters)
    oldest = order == "oldest"
    if cursor:
        c_sent, c_id = decode_cursor(cursor, order)
        # A row-value comparison: one range seek in the page index (SQLite and PostgreSQL).
        row = tuple_(MailboxEntry.sent_at, MailboxEntry.message_id)
        after = tuple_(bindparam("c_sent", c_sent, type_=MailboxEntry.sent_at.type),
                       bindparam("c_id", c_id, type_=MailboxEntry.message_id.type))
        filters.append(row > after if oldest else row < after)
    keys = ((MailboxEntry.sent_at.asc(), MailboxEntry.message_id.asc()) if oldest
            else (MailboxEntry.sent_at.desc(), MailboxEntry.message_id.desc()))
    rows = list(session.scalars(query.where(*filters).order_by(*keys).limit(limit + 1).options(SUMMARY_ONLY)))
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = encode_cursor(rows[-1].sent_at, rows[-1].message_id, order) if more and rows else None
    return rows, next_cursor


def patch(session: Session, user: User, message_id: str, unread: bool | None, folder: str | None) -> MailboxEntry:
    entry = entry_for(session, user, message_id)
    if unread is not None:
        entry.unread = unread
    if folder is not None and folder != entry.folder:
        count_change(session, user.id, entry.folder, -1)
        entry.folder = folder
        session.flush()
        count_change(session, user.id, folder, +1)
    return entry


def delete(session: Session, user: User, message_id: str) -> None:
    entry = entry_for(session, user, message_id)
    session.delete(entry)
    session.flush()
    count_change(session, user.id, entry.folder, -1)
