"""The files of a message being written, and their uploads. No Textual here.

The compose screen owns an :class:`Uploader` and runs it in its workers; the attachment
panel (tui/widgets/attachments.py) only shows what happens, through the :class:`UploadView`
it implements. A file over the PEN's limit (``GET /pen``, fetched once) is refused before
any byte is sent. Files upload one at a time, streamed.

Each uploaded file keeps a record (its upload id, size, modification time and sha256) that
the draft stores; a resumed draft's file whose record still matches is not uploaded again,
so a retried send has the same body as the first.
"""

from __future__ import annotations

import asyncio
import mimetypes
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from tui.drafts import reusable_upload, upload_record
from tui.pen_client import Attachment, PenClient, PenError
from tui.safe_text import one_line
from tui.text.format import human_size

__all__ = ["Entry", "UploadView", "Uploader"]


@dataclass(eq=False)
class Entry:
    name: str
    size: int | None
    path: str | None = None  # a local file (uploaded when attached, or before sending)
    upload_id: str | None = None  # the PEN's id once uploaded, or the original's for a forward
    forwarded: bool = False
    uploading: bool = False
    # tui.drafts.upload_record() of this file's upload; for a resumed draft, the earlier
    # session's record until the file is checked (then upload_id is set, or both are cleared).
    record: dict | None = None

    def row(self, n: int) -> str:
        size = f", {human_size(self.size)}" if self.size is not None else ""
        state = ("forwarded" if self.forwarded else "uploading" if self.uploading
                 else "ready" if self.upload_id else "not uploaded yet")
        return f"{n}. {one_line(self.name, 60) or '(no name)'}  ({state}{size})"


class UploadView(Protocol):
    """What shows the files: their list, the bar of the upload under way, and sentences."""

    @property
    def entries(self) -> list[Entry]: ...

    def say(self, text: str) -> None: ...

    def changed(self, highlight: int | None = None) -> None:
        """The list changed in a way the draft keeps (redrawn, and the draft told)."""

    def redraw(self) -> None:
        """The rows changed how they look only."""

    def upload_started(self, entry: Entry) -> None: ...

    def upload_progress(self, sent: int) -> None: ...

    def upload_ended(self) -> None: ...


class Uploader:
    """The PEN side of the files: its size limit, a forward's names, the uploads."""

    def __init__(self, client: PenClient):
        self.client = client
        self.max_upload: int | None = None
        self._lock = asyncio.Lock()

    async def limit(self) -> int | None:
        """The PEN's limit a file (asked once); None when unknown (the PEN checks again on upload)."""
        if self.max_upload is None:
            try:
                self.max_upload = (await self.client.pen_info()).max_upload_bytes or None
            except PenError:
                return None
        return self.max_upload

    async def name_forwarded(self, view: UploadView, message_id: str) -> None:
        """A resumed forward's rows get their names and sizes from the original."""
        try:
            original = await self.client.get_message(message_id)
        except PenError:
            return  # the rows keep saying "forwarded attachment"
        known = {a.id: a for a in original.attachments}
        for entry in view.entries:
            if entry.forwarded and entry.upload_id in known:
                entry.name, entry.size = known[entry.upload_id].filename, known[entry.upload_id].size
        view.redraw()

    async def check_resumed(self, view: UploadView) -> None:
        """A resumed draft's files uploaded in an earlier session: reused while unchanged."""
        for entry in list(view.entries):
            async with self._lock:
                if entry in view.entries and not entry.upload_id:
                    await self._reuse(view, entry)
        view.redraw()

    async def _reuse(self, view: UploadView, entry: Entry) -> bool:
        """Take the earlier upload of an unchanged file (with the lock held); False if there is none."""
        if entry.record is None or not entry.path:
            return False
        record = entry.record
        upload_id = await asyncio.to_thread(reusable_upload, entry.path, record)
        if upload_id is None:
            entry.record = None  # changed or gone: it is uploaded afresh
            view.changed()
            return False
        entry.upload_id, entry.size = upload_id, record["size"]
        return True

    async def attach(self, view: UploadView, path: str) -> None:
        """Check the file (a sentence when it cannot be attached), add it, upload it."""
        name = one_line(Path(path).name, 80)
        try:
            info = await asyncio.to_thread(os.stat, path)
        except OSError as exc:
            view.say(f"{one_line(path, 80)} cannot be attached: {exc.strerror or 'it cannot be read'}.")
            return
        if stat.S_ISDIR(info.st_mode):
            view.say(f"{name} is a folder; type the name of a file in it.")
            return
        if not stat.S_ISREG(info.st_mode):
            view.say(f"{name} is not a regular file, so it cannot be attached.")
            return
        limit = await self.limit()
        if limit and info.st_size > limit:
            view.say(f"{name} is {human_size(info.st_size)}, over this PEN's limit of {human_size(limit)} "
                     f"({limit:,} bytes) a file, so it was not attached.")
            return
        if any(e.path == path for e in view.entries):
            view.say(f"{name} is attached already.")
            return
        entry = Entry(Path(path).name, info.st_size, path=path)
        view.entries.append(entry)
        view.changed(highlight=len(view.entries) - 1)  # F8 removes the newest unless another is chosen
        await self.upload(view, entry)

    async def upload(self, view: UploadView, entry: Entry) -> bool:
        """Upload one file (one at a time, with the bar); False with a sentence when it fails."""
        async with self._lock:
            if entry.upload_id:
                return True
            if entry not in view.entries:
                return False  # removed while it waited
            if await self._reuse(view, entry):
                view.redraw()
                return True
            name = one_line(entry.name, 80)
            entry.uploading = True
            view.upload_started(entry)
            content_type = mimetypes.guess_type(entry.name)[0] or "application/octet-stream"
            try:
                before = await asyncio.to_thread(os.stat, entry.path)
                uploaded: Attachment = await self.client.upload(
                    entry.path, content_type=content_type, progress=lambda sent, total: view.upload_progress(sent))
            except PenError as exc:
                view.say(f"{name} was not uploaded: {exc.message}")
                return False
            except OSError as exc:
                view.say(f"{name} cannot be read ({exc.strerror or exc}); remove it with F8 or attach it again.")
                return False
            finally:
                entry.uploading = False
                view.upload_ended()
            entry.upload_id, entry.size = uploaded.id, uploaded.size
            # The time tells an unchanged file only if the PEN got the size it had then; else the hash does.
            mtime_ns = before.st_mtime_ns if before.st_size == uploaded.size else None
            entry.record = upload_record(uploaded.id, uploaded.size, mtime_ns, uploaded.sha256 or None)
            view.changed()  # the draft keeps the record, so a resumed draft reuses this upload
            view.say(f"{name} is uploaded ({human_size(uploaded.size)}).")
            return True

    async def upload_all(self, view: UploadView) -> bool:
        """Every file uploaded (a resumed draft's files go up now); False if one failed."""
        for entry in list(view.entries):
            if not entry.upload_id and not await self.upload(view, entry):
                return False
        return True
