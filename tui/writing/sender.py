"""One way to send a draft, for the TUI's compose screen and for line mode. No Textual here.

``Sender.send`` uploads every file of the draft that has no upload yet (through
``tui.writing.uploads.Uploader``; a file whose earlier upload record still matches is not uploaded
again), has the upload ids written into the draft on disk (``keep``) before the message
goes out, and sends with the draft's Idempotency-Key:

* no answer (the PEN unreachable, a 5xx): sent again with the same key and the same upload
  ids, a few times -- the PEN answers a repeat with the first message and sends nothing more;
* 422 naming ``attachments[i]``: the PEN no longer knows those uploads (expired); the key was
  not used, so only those files go up again and the same key goes once more;
* anything else ends in ``NotSent``, one kind for every front end: ``AGAIN`` (kept; sending
  the draft again is safe, and ``maybe_sent`` says whether it may already have arrived),
  ``SENT_BEFORE`` (the key went with another body before: never send it again),
  ``REFUSED`` (403, 404, 410 or 422: the PEN will refuse this draft as it is; change it) and
  ``NOT_UPLOADED`` (a file could not be uploaded; the view was told why).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from typing import Any

from tui.drafts import Draft
from tui.pen_client import (
    Address,
    Attachment,
    Conflict,
    Forbidden,
    Gone,
    Message,
    NotFound,
    PenClient,
    PenError,
    RateLimited,
    ServerError,
    TooLarge,
    Unreachable,
    ValidationFailed,
)
from tui.writing.uploads import Entry, Uploader, UploadView

__all__ = ["MAYBE_SENT", "SEND_TRIES", "NotSent", "Sender", "draft_entries", "expired_uploads", "forget_uploads"]

SEND_TRIES = 3
# Failures after which the message may or may not have been sent: the same key may go again.
MAYBE_SENT = (Unreachable, ServerError, RateLimited, Conflict)
_NO_ANSWER = (Unreachable, ServerError)  # sent again at once (after a short pause)
# The same draft would be refused again (Gone: a reply or forward of a message withdrawn or expired).
_REFUSED = (Forbidden, ValidationFailed, TooLarge, NotFound, Gone)


class NotSent(Exception):
    """The draft was not sent (or may have been, see ``maybe_sent``); ``message`` is one sentence."""

    AGAIN, SENT_BEFORE, REFUSED, NOT_UPLOADED = "again", "sent_before", "refused", "not_uploaded"

    def __init__(self, kind: str, message: str, error: PenError | None = None) -> None:
        super().__init__(message)
        self.kind, self.message, self.error = kind, message, error

    @property
    def maybe_sent(self) -> bool:
        return self.kind == self.AGAIN and isinstance(self.error, MAYBE_SENT)

    @classmethod
    def of(cls, exc: PenError) -> NotSent:
        if exc.code == "idempotency_key_reused":
            return cls(cls.SENT_BEFORE, exc.message, exc)
        if isinstance(exc, _REFUSED):
            return cls(cls.REFUSED, exc.message, exc)
        return cls(cls.AGAIN, exc.message, exc)


def draft_entries(draft: Draft, known: dict[str, Attachment] | None = None) -> list[Entry]:
    """The files of a draft as upload entries: a forward's attachments first (by their ids,
    named from ``known`` when given), then the local files with their upload records."""
    known = known or {}
    forwarded = [Entry(known[i].filename if i in known else "forwarded attachment",
                       known[i].size if i in known else None, upload_id=i, forwarded=True)
                 for i in draft.forward_attachment_ids]
    records = draft.uploads
    return forwarded + [Entry(os.path.basename(p), records[p]["size"] if p in records else None, path=p,
                              record=records.get(p)) for p in draft.attachments]


def expired_uploads(exc: PenError, entries: list[Entry]) -> list[Entry]:
    """The local files whose upload ids the PEN does not know (any more), from its 422's fields."""
    if exc.code != "validation_failed":
        return []
    found = []
    for key in exc.fields or {}:
        if isinstance(key, str) and key.startswith("attachments[") and key.endswith("]"):
            index = key[len("attachments["):-1]
            if index.isdigit() and int(index) < len(entries) and entries[int(index)].path:
                found.append(entries[int(index)])
    return found


def forget_uploads(view: UploadView, entries: list[Entry]) -> None:
    """The PEN no longer knows these uploads (expired, say): they go up again."""
    for entry in entries:
        if entry.path and not entry.forwarded:
            entry.upload_id, entry.record = None, None
    view.changed()


class _Heard:
    """The view, passed through, remembering the last sentence the uploader said."""

    def __init__(self, view: UploadView) -> None:
        self._view = view
        self.last: str | None = None

    def say(self, text: str) -> None:
        self.last = text
        self._view.say(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._view, name)


class Sender:
    """Sends one draft whose files are the entries of ``view``; ``keep`` writes the draft
    (with the entries' upload records) to disk."""

    def __init__(self, client: PenClient, uploader: Uploader, keep: Callable[[], Awaitable[None]], *,
                 tries: int = SEND_TRIES, pause: Callable[[float], Awaitable[Any]] = asyncio.sleep) -> None:
        self.client, self.uploader, self.keep = client, uploader, keep
        self.tries, self.pause = tries, pause

    async def _upload_and_keep(self, view: _Heard) -> None:
        if not await self.uploader.upload_all(view):
            raise NotSent(NotSent.NOT_UPLOADED, view.last or "A file could not be uploaded.")
        await self.keep()  # the upload ids are on disk before the message goes out

    async def send(self, draft: Draft, view: UploadView, recipients: dict[str, list[Address]]) -> Message:
        """The message as the PEN has it; raises NotSent."""
        heard = _Heard(view)
        await self._upload_and_keep(heard)
        uploaded_again = False
        no_answer = 0
        while True:
            try:
                return await self.client.send(
                    to=recipients.get("to", []), cc=recipients.get("cc", []), bcc=recipients.get("bcc", []),
                    subject=draft.subject, body_text=draft.body, in_reply_to=draft.in_reply_to,
                    attachments=[e.upload_id for e in view.entries], idempotency_key=draft.idempotency_key,
                    expires_at=draft.expires_at)
            except PenError as exc:
                expired = expired_uploads(exc, view.entries)
                if expired and not uploaded_again:
                    # The PEN kept nothing under the key: those files go up again, and the same key.
                    uploaded_again = True
                    forget_uploads(view, expired)
                    await self._upload_and_keep(heard)
                    continue
                if isinstance(exc, _NO_ANSWER) and no_answer < self.tries - 1:
                    await self.pause(min(exc.retry_after or 0.5 * 2 ** no_answer, 10))
                    no_answer += 1
                    continue
                raise NotSent.of(exc) from None
