"""Uploads streamed to disk and downloads streamed back with Range, If-Range, ETag and
Repr-Digest. The storage path comes from the content's sha256, never from a file name."""

from __future__ import annotations

import base64
import os
import re
from urllib.parse import quote

import anyio
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from sqlalchemy import select, update

from pen_server import mailbox
from pen_server.api.deps import caller_without_session, services
from pen_server.errors import ApiError, not_found
from pen_server.models import Attachment, Blob, MailboxEntry, new_id, utcnow
from pen_server.schemas import AttachmentOut
from pen_server.storage import Hasher
from pen_server.text import clean_filename, has_control

router = APIRouter(tags=["attachments"])
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
_CONTENT_TYPE = re.compile(r"^[A-Za-z0-9!#$&^_.+-]+/[A-Za-z0-9!#$&^_.+-]+(\s*;\s*[A-Za-z0-9!#$&^_.+-]+=[A-Za-z0-9!#$&^_.+\"-]+)*$")


class AttachmentResponse(FileResponse):
    """A file with the one byte range we decided on (or the whole file). Starlette would
    answer several ranges with a multipart/byteranges 206 and parse forms we do not take;
    the contract promises 200 and the whole file for those, so the Range it sees is ours."""

    # Starlette's 64 KiB chunks leave most of the link idle; 1 MiB nearly fills it.
    chunk_size = 1 << 20

    def __init__(self, *args, byte_range: tuple[int, int] | None, **kwargs):
        super().__init__(*args, **kwargs)
        self.byte_range = byte_range

    async def __call__(self, scope, receive, send):
        headers = [(k, v) for k, v in scope.get("headers", []) if k.lower() not in (b"range", b"if-range")]
        if self.byte_range is not None:
            headers.append((b"range", f"bytes={self.byte_range[0]}-{self.byte_range[1]}".encode("ascii")))
        await super().__call__({**scope, "headers": headers}, receive, send)


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


@router.post("/uploads", response_model=AttachmentOut, status_code=201, openapi_extra={"requestBody": {
    "required": False, "description": "The file's bytes (none: an empty file); its Content-Type is stored with "
                                      "it (else application/octet-stream).",
    "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}})
async def upload(request: Request, filename: str = Query(..., min_length=1, max_length=1024),
                 pen=Depends(services), who=Depends(caller_without_session)):
    length = request.headers.get("content-length")
    if length is None or not length.isdigit():
        raise ApiError(411, "length_required", "An upload needs a Content-Length header.")
    size = int(length)
    limit = pen.settings.max_upload_bytes
    if size > limit:  # before a byte of the body is read
        raise ApiError(413, "too_large", f"The file is {size} bytes; this PEN takes files of at most {limit} bytes.")
    content_type = clean_content_type(request.headers.get("content-type"))
    temp, fd = pen.blobs.new_temp()
    hasher = Hasher()
    try:
        with os.fdopen(fd, "wb", buffering=0) as out:
            async for chunk in request.stream():
                if hasher.size + len(chunk) > size:
                    raise ApiError(400, "invalid_request", "The body is longer than its Content-Length.")
                hasher.update(chunk)
                await anyio.to_thread.run_sync(out.write, chunk)
            if hasher.size != size:
                raise ApiError(400, "invalid_request", "The body ended before its Content-Length; upload it again.")
            await anyio.to_thread.run_sync(os.fsync, out.fileno())
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    sha = hasher.sha.hexdigest()
    out = await anyio.to_thread.run_sync(store_upload, pen, temp, who.user.id, filename, content_type, size, sha)
    return JSONResponse(out, status_code=201)


def store_upload(pen, temp, owner_id: str, filename: str, content_type: str, size: int, sha: str) -> dict:
    """A finished temporary file (`temp`, of that size and sha256) made an upload owned by
    `owner_id` that a message can name: the API's uploads and the web pages' forms both
    store files with this. Returns the upload as the API shows it."""
    try:
        # The rows first, the file after: once this commits, the clean-up (which removes a
        # blob's file only under the write lock, and only with no attachment row) cannot
        # take the file away, and a file it took before is put back by commit_temp below.
        with pen.db.session() as session:
            if not session.execute(update(Blob).where(Blob.sha256 == sha).values(size=size)).rowcount:
                session.add(Blob(sha256=sha, size=size))
                session.flush()  # the attachment's foreign key needs the blob's row first
            att = Attachment(id=new_id(), owner_id=owner_id, filename=clean_filename(filename),
                             content_type=content_type, size=size, sha256=sha, created_at=utcnow())
            session.add(att)
            session.flush()
            out = mailbox.attachment_out(att)
        pen.blobs.commit_temp(temp, sha)
    finally:
        temp.unlink(missing_ok=True)
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
        raise ApiError(416, "range_not_satisfiable", f"That range is past the end of the file of {size} bytes.",
                       headers={"Content-Range": f"bytes */{size}"})
    return start, end


_FILE = {"*/*": {"schema": {"type": "string", "format": "binary"}}}  # the Content-Type it was uploaded with
_FILE_HEADERS = {name: {"required": True, "schema": {"type": "string"}} for name in (
    "ETag", "Repr-Digest", "Accept-Ranges", "Content-Disposition", "Content-Length")}


# Read from the request itself (the handler decides on them), stated here for the document.
_RANGE_PARAMETERS = [
    {"name": "Range", "in": "header", "required": False, "schema": {"type": "string"},
     "description": "bytes=N-, bytes=N-M or bytes=-N: 206 with that range; past the end 416; any other form, "
                    "or several ranges, 200 and the whole file."},
    {"name": "If-Range", "in": "header", "required": False, "schema": {"type": "string"},
     "description": "The ETag: Range counts only while it matches."}]


@router.get("/messages/{message_id}/attachments/{attachment_id}", response_class=Response,
            openapi_extra={"parameters": _RANGE_PARAMETERS}, responses={
    200: {"description": "The whole file.", "content": _FILE, "headers": _FILE_HEADERS},
    206: {"description": "The one byte range asked for (Range: bytes=N-M).", "content": _FILE, "headers": {
        **_FILE_HEADERS, "Content-Range": {"required": True, "schema": {"type": "string", "pattern": "^bytes [0-9]+-[0-9]+/[0-9]+$"}}}}})
async def download(message_id: str, attachment_id: str, request: Request, pen=Depends(services),
                   who=Depends(caller_without_session)):
    return await attachment_response(pen, who.user.id, message_id, attachment_id, request)


async def attachment_response(pen, user_id: str, message_id: str, attachment_id: str,
                              request: Request) -> FileResponse:
    """An attachment of a message that `user_id` has a copy of, streamed with Range support;
    the API and the web pages both answer with this."""
    def lookup():
        with pen.db.session() as session:
            if session.scalar(select(MailboxEntry.id).where(MailboxEntry.user_id == user_id,
                                                            MailboxEntry.message_id == message_id)) is None:
                raise not_found("That attachment")
            att = session.get(Attachment, attachment_id)
            if att is None or att.message_id != message_id:
                raise not_found("That attachment")
            return att

    att = await anyio.to_thread.run_sync(lookup)
    path = pen.blobs.path(att.sha256)
    if not path.is_file():
        raise ApiError(503, "unavailable", "That file is missing from the server's storage; tell its administrator.",
                       headers={"Retry-After": "60"})
    etag = f'"{att.sha256}"'
    digest = base64.b64encode(bytes.fromhex(att.sha256)).decode()
    if_range = request.headers.get("if-range")
    byte_range = None
    if if_range is None or if_range.strip() == etag:
        byte_range = _single_range(request.headers.get("range"), att.size)  # our own 416, in the API's form
    headers = {"ETag": etag, "Repr-Digest": f"sha-256=:{digest}:", "Accept-Ranges": "bytes",
               "X-Content-Type-Options": "nosniff", "Content-Disposition": content_disposition(att.filename),
               "Cache-Control": "private, no-store"}
    return AttachmentResponse(path, media_type=att.content_type, headers=headers,
                              content_disposition_type="attachment", byte_range=byte_range)
