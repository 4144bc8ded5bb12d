"""Conversations: a folder's messages grouped by thread, each thread listed once under its
newest message in that folder and keyset-paged by that message (the same cursors as the
folder's own pages), and one thread's messages across the caller's folders.

A thread's head is a copy with no newer copy of the same thread in the same folder: the
page walks the folder's page index newest (or oldest) first and keeps the heads, each
checked by one seek in the thread index (user, folder, thread, sent_at, message_id,
migration 0008). Nothing is kept per thread, so moves, reads and deletes need no upkeep."""

from __future__ import annotations

from sqlalchemy import case, exists, func, select, tuple_
from sqlalchemy.orm import Session, aliased

from pen_server.errors import not_found
from pen_server.mailbox import FOLDERS, keyset, summary_out
from pen_server.models import MailboxEntry, User


def _is_head():
    newer = aliased(MailboxEntry)
    return ~exists().where(
        newer.user_id == MailboxEntry.user_id, newer.folder == MailboxEntry.folder,
        newer.thread_id == MailboxEntry.thread_id,
        tuple_(newer.sent_at, newer.message_id) > tuple_(MailboxEntry.sent_at, MailboxEntry.message_id))


def page(session: Session, user: User, folder: str, limit: int, cursor: str | None, order: str = "newest") -> dict:
    """One page of a folder's threads: each with its newest message there (`latest`), how
    many of the folder's messages it holds (`count`) and how many of those are unread."""
    mine = [MailboxEntry.user_id == user.id, MailboxEntry.folder == folder]
    heads, next_cursor = keyset(session, select(MailboxEntry), [*mine, _is_head()], limit, cursor, order)
    counts: dict[str, tuple[int, int]] = {}
    if heads:
        rows = session.execute(
            select(MailboxEntry.thread_id, func.count(),
                   func.sum(case((MailboxEntry.unread, 1), else_=0)))
            .where(*mine, MailboxEntry.thread_id.in_({h.thread_id for h in heads}))
            .group_by(MailboxEntry.thread_id))
        counts = {thread: (count, int(unread or 0)) for thread, count, unread in rows}
    total = session.scalar(select(func.count(func.distinct(MailboxEntry.thread_id))).where(*mine)) or 0
    items = []
    for head in heads:
        count, unread = counts.get(head.thread_id, (1, int(head.unread)))
        items.append({"thread_id": head.thread_id, "count": count, "unread": unread, "latest": summary_out(head)})
    return {"items": items, "next_cursor": next_cursor, "total": total}


def messages(session: Session, user: User, thread_id: str, folder: str | None, limit: int, cursor: str | None,
             order: str = "oldest") -> dict:
    """The caller's copies of one thread, in one folder or all of them; 404 when it has none."""
    filters = [MailboxEntry.user_id == user.id, MailboxEntry.thread_id == thread_id,
               MailboxEntry.folder == folder if folder else MailboxEntry.folder.in_(FOLDERS)]
    total = session.scalar(select(func.count()).select_from(MailboxEntry).where(*filters)) or 0
    if not total:
        raise not_found("That thread")
    rows, next_cursor = keyset(session, select(MailboxEntry), filters, limit, cursor, order)
    return {"items": [summary_out(e) for e in rows], "next_cursor": next_cursor, "total": total}
