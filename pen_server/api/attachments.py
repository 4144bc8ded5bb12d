"""Uploads streamed to the blob store and downloads streamed back with Range, If-Range, ETag and
Repr-Digest (the work itself is pen_server/attachments.py, shared with the web pages). The
storage path comes from the content's sha256, never from a file name."""

from __future__ import annotations

import anyio
from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response

from pen_server.api.deps import CallerWithoutSessionDep, ServicesDep
from pen_server.attachments import attachment_response, clean_content_type, store_upload
from pen_server.errors import ApiError
from pen_server.schemas import AttachmentOut
from pen_server.storage import Hasher

router = APIRouter(tags=["attachments"])


@router.post(
    "/uploads",
    response_model=AttachmentOut,
    status_code=201,
    openapi_extra={
        "requestBody": {
            "required": False,
            "description": "The file's bytes (none: an empty file); its Content-Type is stored with "
            "it (else application/octet-stream).",
            "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
        }
    },
)
async def upload(
    request: Request,
    pen: ServicesDep,
    who: CallerWithoutSessionDep,
    filename: str = Query(..., min_length=1, max_length=1024),
):
    length = request.headers.get("content-length")
    if length is None or not length.isdigit():
        raise ApiError(411, "length_required", "An upload needs a Content-Length header.")
    size = int(length)
    limit = pen.settings.max_upload_bytes
    if size > limit:  # before a byte of the body is read
        raise ApiError(413, "too_large", f"The file is {size} bytes; this PEN takes files of at most {limit} bytes.")
    content_type = clean_content_type(request.headers.get("content-type"))
    temp = await anyio.to_thread.run_sync(pen.blobs.new_temp)
    hasher = Hasher()
    try:
        async for chunk in request.stream():
            if hasher.size + len(chunk) > size:
                raise ApiError(400, "invalid_request", "The body is longer than its Content-Length.")
            hasher.update(chunk)
            await anyio.to_thread.run_sync(temp.write, chunk)
        if hasher.size != size:
            raise ApiError(400, "invalid_request", "The body ended before its Content-Length; upload it again.")
        await anyio.to_thread.run_sync(temp.finish)
    except BaseException:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(temp.discard)
        raise
    sha = hasher.sha.hexdigest()
    stored = await anyio.to_thread.run_sync(store_upload, pen, temp, who.user.id, filename, content_type, size, sha)
    return JSONResponse(stored, status_code=201)


_FILE = {"*/*": {"schema": {"type": "string", "format": "binary"}}}  # the Content-Type it was uploaded with
_FILE_HEADERS = {
    name: {"required": True, "schema": {"type": "string"}}
    for name in ("ETag", "Repr-Digest", "Accept-Ranges", "Content-Disposition", "Content-Length")
}


# Read from the request itself (the handler decides on them), stated here for the document.
_RANGE_PARAMETERS = [
    {
        "name": "Range",
        "in": "header",
        "required": False,
        "schema": {"type": "string"},
        "description": "bytes=N-, bytes=N-M or bytes=-N: 206 with that range; past the end 416; any other form, "
        "or several ranges, 200 and the whole file.",
    },
    {
        "name": "If-Range",
        "in": "header",
        "required": False,
        "schema": {"type": "string"},
        "description": "The ETag: Range counts only while it matches.",
    },
]


@router.get(
    "/messages/{message_id}/attachments/{attachment_id}",
    response_class=Response,
    openapi_extra={"parameters": _RANGE_PARAMETERS},
    responses={
        410: {"description": "`revoked` or `expired`, as for the message."},
        200: {"description": "The whole file.", "content": _FILE, "headers": _FILE_HEADERS},
        206: {
            "description": "The one byte range asked for (Range: bytes=N-M).",
            "content": _FILE,
            "headers": {
                **_FILE_HEADERS,
                "Content-Range": {
                    "required": True,
                    "schema": {"type": "string", "pattern": "^bytes [0-9]+-[0-9]+/[0-9]+$"},
                },
            },
        },
    },
)
async def download(message_id: str, attachment_id: str, request: Request, pen: ServicesDep,
                   who: CallerWithoutSessionDep):
    return await attachment_response(pen, who.user, message_id, attachment_id, request)
