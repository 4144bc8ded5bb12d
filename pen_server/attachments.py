"""Attachments as files: an upload stored in the blob store by its content's sha256 (never
a file name), and a download streamed back with Range, If-Range, ETag and Repr-Digest. The
API's routes (api/attachments.py) and the web pages (web/uploads.py, web/reading.py) both
use these."""

from __future__ import annotations

import base64
import re
from urllib.parse import quote

import anyio
from fastapi import Request
from fastapi.responses import Response
from sqlalchemy import select, update

from pen_server import after_send, audit, errors, mailbox
from pen_server.errors import ApiError, not_found
from pen_server.models import Attachment, Blob, MailboxEntry, new_id, utcnow
from pen_server.storage import BlobStore, StoreUnavailable, TempBlob
from pen_server.text import clean_filename, has_control

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
_CONTENT_TYPE = re.compile(
    r"^[A-Za-z0-9!#$&^_.+-]+/[A-Za-z0-9!#$&^_.+-]+(\s*;\s*[A-Za-z0-9!#$&^_.+-]+=[A-Za-z0-9!#$&^_.+\"-]+)*$"
)


class AttachmentResponse(Response):
    """A blob streamed from the store: the whole of it (200) or the one byte range we decided
    on (206). The first piece is read before the status line goes out, so a store that does
    not answer is a 503 in the API's form; a failure later can only cut the body short."""

    def __init__(self, store: BlobStore, sha256: str, size: int, *, byte_range: tuple[int, int] | None,
                 media_type: str, headers: dict):
        super().__init__(media_type=media_type, headers=headers)
        self.store, self.sha256, self.whole = store, sha256, byte_range is None
        self.start, self.end = byte_range if byte_range is not None else (0, size - 1)
        self.headers["content-length"] = str(self.end - self.start + 1)
        if byte_range is not None:
            self.status_code = 206
            self.headers["content-range"] = f"bytes {self.start}-{self.end}/{size}"

    async def __call__(self, scope, receive, send):
        pieces = None
        first: bytes | memoryview = b""
        if scope["method"] != "HEAD" and self.end >= self.start:
            pieces = self.store.read(self.sha256, self.start, None if self.whole else self.end)
            try:
                first = await anext(pieces)
            except StoreUnavailable as exc:
                await pieces.aclose()
                await errors.error_response(exc)(scope, receive, send)
                return
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        if pieces is None:
            await send({"type": "http.response.body", "body": b""})
            return
        try:
            await send({"type": "http.response.body", "body": first, "more_body": True})
            async for piece in pieces:
                await send({"type": "http.response.body", "body": piece, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        finally:
            await pieces.aclose()


def content_disposition(filename: str) -> str:
    """RFC 6266: an ASCII fallback, and the exact name percent-encoded as UTF-8."""
    fallback = "".join(c if 0x20 <= ord(c) < 0x7F and c not in '"\\%' else "_" for c in filename) or "attachment"
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


def clean_content_type(value: str | None) -> str:
    """A file's declared type when it is a plain, well-formed one; else application/octet-stream."""
    value = (value or "application/octet-stream").strip()
    if len(value) > 255 or has_control(value) or not _CONTENT_TYPE.match(value):
        return "application/octet-stream"
    return value


def store_upload(pen, temp: TempBlob, owner_id: str, filename: str, content_type: str, size: int, sha: str) -> dict:
    """A finished temporary blob (`temp`, of that size and sha256) made an upload owned by
    `owner_id` that a message can name: the API's uploads and the web pages' forms both
    store files with this. Returns the upload as the API shows it."""
    try:
        # The rows first, the file after: once this commits, the clean-up (which removes a
        # blob's file only under the write lock, and only with no attachment row) cannot
        # take the file away, and a file it took before is put back by commit_temp below.
        # (The same holds for a bucket: the blob's object is looked for after the commit.)
        with pen.db.session() as session:
            if not session.execute(update(Blob).where(Blob.sha256 == sha).values(size=size)).rowcount:
                session.add(Blob(sha256=sha, size=size))
                session.flush()  # the attachment's foreign key needs the blob's row first
            att = Attachment(
                id=new_id(),
                owner_id=owner_id,
                filename=clean_filename(filename),
                content_type=content_type,
                size=size,
                sha256=sha,
                created_at=utcnow(),
            )
            session.add(att)
            session.flush()
            out = mailbox.attachment_out(att)
        pen.blobs.commit_temp(temp, sha)
    finally:
        temp.discard()
    return out


def _single_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The one byte range asked for, None for the whole file; 416 when unsatisfiable."""
    if header is None:
        return None
    match = _RANGE.match(header.strip())
    if not match or (not match.group(1) and not match.group(2)):
        return None  # several ranges or an odd form: RFC 9110 lets us send the whole file
    first, last = match.group(1), match.group(2)
    if first:
        start = int(first)
        end = min(int(last), size - 1) if last else size - 1
    else:
        start, end = max(0, size - int(last)), size - 1
    if start >= size or end < start:
        raise ApiError(
            416,
            "range_not_satisfiable",
            f"That range is past the end of the file of {size} bytes.",
            headers={"Content-Range": f"bytes */{size}"},
        )
    return start, end


async def attachment_response(pen, user, message_id: str, attachment_id: str, request: Request,
                              web: bool = False) -> AttachmentResponse:
    """An attachment of a message that `user` (its id and e-mail) has a readable copy of,
    streamed with Range support; the API and the web pages both answer with this. Each GET
    is an audit row (`download`), and a recipient's first one opens the message."""

    def lookup():
        with pen.db.session() as session:
            entry = session.scalar(select(MailboxEntry).where(MailboxEntry.user_id == user.id,
                                                              MailboxEntry.message_id == message_id))
            if entry is None:
                raise not_found("That attachment")
            att = session.get(Attachment, attachment_id)
            if att is None or att.message_id != message_id:
                raise not_found("That attachment")
            after_send.gate(entry)
            event = None
            if request.method != "HEAD":
                ranged = request.headers.get("range")
                event = after_send.record_read(session, entry, audit.who_of(request, pen.settings, user, web=web),
                                               "download", att.id, {"range": ranged[:60]} if ranged else None)
        if event is not None:
            pen.hub.publish(*event)
        return att

    att = await anyio.to_thread.run_sync(lookup)
    if await anyio.to_thread.run_sync(pen.blobs.size, att.sha256) is None:
        raise ApiError(
            503,
            "unavailable",
            "That file is missing from the server's storage; tell its administrator.",
            headers={"Retry-After": "60"},
        )
    etag = f'"{att.sha256}"'
    digest = base64.b64encode(bytes.fromhex(att.sha256)).decode()
    if_range = request.headers.get("if-range")
    byte_range = None
    if if_range is None or if_range.strip() == etag:
        byte_range = _single_range(request.headers.get("range"), att.size)  # our own 416, in the API's form
    headers = {
        "ETag": etag,
        "Repr-Digest": f"sha-256=:{digest}:",
        "Accept-Ranges": "bytes",
        "X-Content-Type-Options": "nosniff",
        "Content-Disposition": content_disposition(att.filename),
        "Cache-Control": "private, no-store",
    }
    return AttachmentResponse(pen.blobs, att.sha256, att.size, media_type=att.content_type, headers=headers,
                              byte_range=byte_range)
