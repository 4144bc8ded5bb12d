"""The Drafts folder of the mailbox: the drafts on disk (tui.drafts) of the signed-in
account, shown as rows of the message list (recipients, subject, when saved). No Textual;
the store is read in a thread by the caller."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parseaddr

from tui.drafts import Draft, DraftStore, account_key
from tui.pen_client import Address, Page, PenClient, Summary

__all__ = ["DRAFTS", "DraftsFolder", "draft_page", "draft_summary"]

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


class DraftsFolder:
    """The Drafts folder of the signed-in account, for the mailbox screen. Every method but
    ``account`` is blocking (the store makes its folder, reads and deletes files): call it in
    a thread."""

    def __init__(self, client: PenClient) -> None:
        self.client = client
        self._store: DraftStore | None = None  # made when first needed

    def account(self) -> str | None:
        user = self.client.user
        return account_key(self.client.server, user.email) if user is not None else None

    def store(self) -> DraftStore:
        if self._store is None:
            self._store = DraftStore()
        return self._store

    def page(self, cursor: str | None, limit: int, order: str) -> Page:
        user = self.client.user
        me = Address(user.email, user.display_name or None) if user is not None else Address("")
        return draft_page(self.store(), self.account(), me, cursor, limit, order)

    def count(self) -> int:
        return len(self.store().list(account=self.account()))

    def load(self, draft_id: str) -> Draft | None:
        """The draft, or None when it is gone or belongs to another account."""
        draft = self.store().load(draft_id)
        return draft if draft is not None and draft.belongs_to(self.account() or "") else None

    def delete(self, targets: list[Summary]) -> list[Summary]:
        """Deletes the drafts of these rows; those that were there."""
        store = self.store()
        return [s for s in targets if store.delete(s.id)]
