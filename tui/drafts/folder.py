"""The Drafts folder of the mailbox: the drafts on disk (tui.drafts) of the signed-in
account, shown as rows of the message list (recipients, subject, when saved). No Textual;
the store is read in a thread by the caller."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parseaddr

from tui.drafts import Draft, DraftStore
from tui.pen_client import Address, Page, Summary

__all__ = ["DRAFTS", "draft_page", "draft_summary"]

DRAFTS = "drafts"


def _when(stamp: str) -> datetime:
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except (ValueError, AttributeError):
        return datetime.fromtimestamp(0, UTC)


def _address(typed: str) -> Address:
    name, email = parseaddr(typed)
    return Address(email or typed.strip(), name or None)


def draft_summary(draft: Draft, me: Address) -> Summary:
    """A draft as a row of the list: from me, to the people typed, saved at updated_at."""
    return Summary(id=draft.id, thread_id="", folder=DRAFTS, sender=me,
                   to=tuple(_address(a) for a in draft.to + draft.bcc), cc=tuple(_address(a) for a in draft.cc),
                   subject=draft.subject, sent_at=_when(draft.updated_at), unread=False,
                   attachment_count=len(draft.attachments) + len(draft.forward_attachment_ids),
                   size=len(draft.body.encode("utf-8")), snippet=draft.body[:200])


def draft_page(store: DraftStore, account: str | None, me: Address, cursor: str | None, limit: int,
               order: str = "newest") -> Page:
    """One page of the account's drafts, most recently saved first (``order`` "oldest" from
    the other end); the cursor is the offset of the next page. Blocking: reads the folder."""
    drafts = store.list(account=account) if account is not None else []
    if order == "oldest":
        drafts.reverse()
    start = int(cursor) if cursor and cursor.isdigit() else 0
    items = tuple(draft_summary(d, me) for d in drafts[start:start + limit])
    following = start + limit
    return Page(items=items, next_cursor=str(following) if following < len(drafts) else None, total=len(drafts))
