"""A multipart/form-data body read as it arrives: text fields kept (bounded), each file
written straight to a temporary blob of the blob store while it is hashed, and made an
upload of the signed-in user when it ends. A huge form never sits in memory: a file over
the PEN's size limit stops being written at the limit (the rest is read and thrown away,
so the browser gets our page, not a broken connection), and a body past the hard cap is
refused before a byte of it is read."""

from __future__ import annotations

from collections.abc import Callable

import anyio
from fastapi import Request
from python_multipart.multipart import MultipartParser, parse_options_header

from pen_server.attachments import clean_content_type, store_upload
from pen_server.errors import ApiError
from pen_server.storage import Hasher, TempBlob

MAX_FILES = 20
MAX_PARTS = 100
FIELD_LIMIT = 2 << 20  # one text field (the body)
FIELDS_LIMIT = 4 << 20  # all text fields together
HEADER_LIMIT = 8 << 10  # the headers of one part


class FormTooLarge(ApiError):
    def __init__(self, message: str):
        super().__init__(413, "too_large", message)


class StreamedForm:
    """Feed it the body with write(); `before_files` runs once, when the first file begins
    (the page's CSRF and sign-in checks, so a stranger's upload never reaches the disk)."""

    def __init__(self, pen, owner_id: str, boundary: bytes, before_files: Callable[[StreamedForm], None]):
        self.pen, self.owner_id, self.limit = pen, owner_id, pen.settings.max_upload_bytes
        self.before_files, self.checked = before_files, False
        self.fields: dict[str, list[str]] = {}
        self.uploads: list[dict] = []  # as the API shows an upload
        self.too_large: list[str] = []  # names of files over the limit (not stored)
        self._fields_size = self._parts = 0
        self._reset_part()
        self.parser = MultipartParser(boundary, {
            "on_part_begin": self._reset_part, "on_header_field": self._header_field,
            "on_header_value": self._header_value, "on_header_end": self._header_end,
            "on_headers_finished": self._headers_done, "on_part_data": self._data, "on_part_end": self._part_end,
        })

    def _reset_part(self) -> None:
        self._hname, self._hvalue = b"", b""
        self._headers: dict[bytes, bytes] = {}
        self._head_size = 0
        self._name: str | None = None
        self._filename: str | None = None
        self._value = bytearray()
        self._temp: TempBlob | None = None  # the upload of the part being received
        self._hasher: Hasher | None = None
        self._skip = False

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._hname += data[start:end]
        self._count_head(end - start)

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._hvalue += data[start:end]
        self._count_head(end - start)

    def _count_head(self, n: int) -> None:
        self._head_size += n
        if self._head_size > HEADER_LIMIT:
            raise ApiError(400, "invalid_request", "That form could not be read; reload the page and try again.")

    def _header_end(self) -> None:
        self._headers[self._hname.strip().lower()] = self._hvalue.strip()
        self._hname, self._hvalue = b"", b""

    def _headers_done(self) -> None:
        self._parts += 1
        if self._parts > MAX_PARTS:
            raise FormTooLarge("That form has too many parts; send fewer files at once.")
        _kind, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        self._name = options.get(b"name", b"").decode("utf-8", "replace")
        if b"filename" not in options:
            return
        self._filename = options[b"filename"].decode("utf-8", "replace")
        if not self._filename:
            self._skip = True  # a file input left empty
            return
        if not self.checked:
            self.checked = True
            self.before_files(self)
        if len(self.uploads) + len(self.too_large) >= MAX_FILES:
            raise FormTooLarge(f"A message takes at most {MAX_FILES} files; send the others in another message.")
        self._temp = self.pen.blobs.new_temp()
        self._hasher = Hasher()

    def _data(self, data: bytes, start: int, end: int) -> None:
        if self._skip:
            return
        piece = data[start:end]
        if self._filename is None:
            self._value += piece
            self._fields_size += len(piece)
            if len(self._value) > FIELD_LIMIT or self._fields_size > FIELDS_LIMIT:
                raise FormTooLarge("The text of that form is too long; shorten it and send it again.")
            return
        if self._hasher.size + len(piece) > self.limit:
            self._drop_file()
            self.too_large.append(self._filename)
            self._skip = True
            return
        self._hasher.update(piece)
        self._temp.write(piece)

    def _part_end(self) -> None:
        if self._skip:
            return
        if self._filename is None:
            self.fields.setdefault(self._name, []).append(self._value.decode("utf-8", "replace"))
            return
        self._temp.finish()
        sha, size = self._hasher.sha.hexdigest(), self._hasher.size
        temp, self._temp = self._temp, None
        content_type = clean_content_type(self._headers.get(b"content-type", b"").decode("latin-1"))
        self.uploads.append(store_upload(self.pen, temp, self.owner_id, self._filename, content_type, size, sha))

    def _drop_file(self) -> None:
        if self._temp is not None:
            self._temp.discard()
        self._temp = None

    def first(self, name: str, default: str = "") -> str:
        return (self.fields.get(name) or [default])[0]


async def read_multipart(request: Request, pen, owner_id: str,
                         before_files: Callable[[StreamedForm], None]) -> StreamedForm:
    kind, options = parse_options_header(request.headers.get("content-type", ""))
    boundary = options.get(b"boundary")
    if kind != b"multipart/form-data" or not boundary or len(boundary) > 200:
        raise ApiError(415, "invalid_request", "This form must be sent by a web browser as an ordinary form.")
    cap = MAX_FILES * pen.settings.max_upload_bytes + FIELDS_LIMIT + MAX_PARTS * HEADER_LIMIT
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > cap):
        raise FormTooLarge("That form is larger than this PEN takes; send smaller files.")
    form = StreamedForm(pen, owner_id, boundary, before_files)
    received = 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > cap:
                raise FormTooLarge("That form is larger than this PEN takes; send smaller files.")
            await anyio.to_thread.run_sync(form.parser.write, chunk)
        await anyio.to_thread.run_sync(form.parser.finalize)
    finally:
        with anyio.CancelScope(shield=True):  # a bucket's temporary object is a request away
            await anyio.to_thread.run_sync(form._drop_file)
    return form
