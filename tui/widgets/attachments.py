"""The attachments of the message being written: the list, the path prompt (completed
from the file system), and the upload under way with its bar in bytes.

A file over the PEN's limit (``GET /pen``, fetched once) is refused before any byte is
sent. Files upload when attached, one at a time, streamed; a row says its state in words
("uploading", "ready", "forwarded", "not uploaded yet"), never by colour alone; file
names reach the screen through the safe-text path. The panel tells its screen what
happened with two messages: ``Changed`` (the list) and ``Said`` (a sentence).

Each uploaded file keeps a record (its upload id, size, modification time and sha256) that
the draft stores; a resumed draft's file whose record still matches is not uploaded again,
so a retried send has the same body as the first."""

from __future__ import annotations

import asyncio
import mimetypes
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Input, OptionList, ProgressBar
from textual.widgets.option_list import Option

from tui.drafts import reusable_upload, upload_record
from tui.format import human_size
from tui.pen_client import Attachment, PenClient, PenError
from tui.safe_text import one_line, safe_text
from tui.widgets.path_suggester import PathSuggester
from tui.widgets.safe_static import SafeStatic


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


class AttachmentList(OptionList):
    """Rows of attachments; arrows choose the one that F8 removes."""

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.entries: list[Entry] = []

    @property
    def current(self) -> Entry | None:
        if self.highlighted is None or not 0 <= self.highlighted < len(self.entries):
            return self.entries[-1] if self.entries else None
        return self.entries[self.highlighted]

    def show_rows(self, highlight: int | None = None) -> None:
        keep = self.highlighted if highlight is None else highlight
        self.clear_options()
        self.add_options([Option(safe_text(e.row(n))) for n, e in enumerate(self.entries, 1)])
        if self.entries:
            self.highlighted = min(len(self.entries) - 1 if keep is None else keep, len(self.entries) - 1)
        self.display = bool(self.entries)


class UploadProgress(Horizontal):
    """"Uploading report.pdf: 1.2 MB of 3.4 MB" and a bar; hidden when nothing uploads."""

    def compose(self) -> ComposeResult:
        yield SafeStatic("", id="upload-label")
        yield ProgressBar(total=None, show_eta=False, id="upload-bar")

    def start(self, name: str, total: int) -> None:
        self._name, self._total = one_line(name, 30), total
        self.query_one(ProgressBar).update(total=max(total, 1), progress=0)
        self.advance(0)
        self.display = True

    def advance(self, sent: int) -> None:
        self.query_one(SafeStatic).show(f"Uploading {self._name}: {human_size(sent)} of {human_size(self._total)}")
        self.query_one(ProgressBar).update(progress=sent)


class AttachmentPanel(Vertical):
    class Changed(Message):
        """The list of attachments changed (the draft keeps it)."""

    class Said(Message):
        def __init__(self, text: str) -> None:
            super().__init__()
            self.text = text

    def __init__(self, client: PenClient, entries: list[Entry], forward_of: str | None = None, **kw) -> None:
        super().__init__(**kw)
        self.client, self._initial, self._forward_of = client, entries, forward_of
        self.max_upload: int | None = None
        self._upload_lock = asyncio.Lock()

    def compose(self) -> ComposeResult:
        yield AttachmentList(id="compose-attachments")
        with Horizontal(classes="compose-row", id="compose-path-row"):
            yield SafeStatic(" Attach:", classes="compose-label")
            yield Input(placeholder="file path; right arrow completes, enter attaches, escape cancels",
                        suggester=PathSuggester(), compact=True, select_on_focus=False, id="compose-path")
        yield UploadProgress(id="compose-upload")

    def on_mount(self) -> None:
        self.query_one("#compose-path-row").display = False
        self.query_one(UploadProgress).display = False
        rows = self.query_one(AttachmentList)
        rows.entries = list(self._initial)
        rows.show_rows()
        if self._forward_of and any(e.forwarded and e.size is None for e in rows.entries):
            self._name_forwarded()  # a resumed forward: its file names come from the original
        if any(e.record and not e.upload_id for e in rows.entries):
            self._check_resumed()  # a resumed draft: files uploaded in an earlier session
        self._fetch_limit()

    @property
    def entries(self) -> list[Entry]:
        return self.query_one(AttachmentList).entries

    @property
    def uploading(self) -> bool:
        return any(e.uploading for e in self.entries)

    def _say(self, text: str) -> None:
        self.post_message(self.Said(text))

    def _changed(self, highlight: int | None = None) -> None:
        self.query_one(AttachmentList).show_rows(highlight)
        self.post_message(self.Changed())

    # ------------------------------------------------------------ the PEN's limit, and names

    @work(group="attach-limit", exit_on_error=False)
    async def _fetch_limit(self) -> None:
        await self.limit()

    async def limit(self) -> int | None:
        if self.max_upload is None:
            try:
                self.max_upload = (await self.client.pen_info()).max_upload_bytes or None
            except PenError:
                return None  # the PEN checks again on upload
        return self.max_upload

    @work(group="attach-names", exit_on_error=False)
    async def _name_forwarded(self) -> None:
        try:
            original = await self.client.get_message(self._forward_of)
        except PenError:
            return  # the rows keep saying "forwarded attachment"
        known = {a.id: a for a in original.attachments}
        for entry in self.entries:
            if entry.forwarded and entry.upload_id in known:
                entry.name, entry.size = known[entry.upload_id].filename, known[entry.upload_id].size
        self.query_one(AttachmentList).show_rows()

    # ------------------------------------------------------------ the path prompt

    def ask_path(self) -> None:
        self.query_one("#compose-path-row").display = True
        self.query_one("#compose-path", Input).focus()

    def hide_prompt(self) -> bool:
        """Close the path prompt; False when it was not open."""
        row = self.query_one("#compose-path-row")
        was_open, row.display = row.display, False
        return was_open

    @on(Input.Submitted, "#compose-path")
    def _path_given(self, event: Input.Submitted) -> None:
        self.hide_prompt()  # the event goes on to the screen, which moves the focus
        value = event.value.strip()
        event.input.value = ""
        if value:
            self.attach(os.path.abspath(os.path.expanduser(value)))

    # ------------------------------------------------------------ attaching and uploading

    @work(group="attach-check", exit_on_error=False)
    async def _check_resumed(self) -> None:
        for entry in list(self.entries):
            async with self._upload_lock:
                if entry in self.entries and not entry.upload_id:
                    await self._reuse(entry)
        self.query_one(AttachmentList).show_rows()

    async def _reuse(self, entry: Entry) -> bool:
        """Take the earlier upload of an unchanged file (with the lock held); False if there is none."""
        if entry.record is None or not entry.path:
            return False
        record = entry.record
        upload_id = await asyncio.to_thread(reusable_upload, entry.path, record)
        if upload_id is None:
            entry.record = None  # changed or gone: it is uploaded afresh
            self.post_message(self.Changed())
            return False
        entry.upload_id, entry.size = upload_id, record["size"]
        return True

    def forget_uploads(self, entries: list[Entry]) -> None:
        """The PEN no longer knows these uploads (expired, say): they go up again on the next send."""
        for entry in entries:
            if entry.path and not entry.forwarded:
                entry.upload_id, entry.record = None, None
        self._changed()

    @work(group="attach", exit_on_error=False)
    async def attach(self, path: str) -> None:
        name = one_line(Path(path).name, 80)
        try:
            info = await asyncio.to_thread(os.stat, path)
        except OSError as exc:
            self._say(f"{one_line(path, 80)} cannot be attached: {exc.strerror or 'it cannot be read'}.")
            return
        if stat.S_ISDIR(info.st_mode):
            self._say(f"{name} is a folder; type the name of a file in it.")
            return
        if not stat.S_ISREG(info.st_mode):
            self._say(f"{name} is not a regular file, so it cannot be attached.")
            return
        limit = await self.limit()
        if limit and info.st_size > limit:
            self._say(f"{name} is {human_size(info.st_size)}, over this PEN's limit of {human_size(limit)} "
                      f"({limit:,} bytes) a file, so it was not attached.")
            return
        if any(e.path == path for e in self.entries):
            self._say(f"{name} is attached already.")
            return
        entry = Entry(Path(path).name, info.st_size, path=path)
        self.entries.append(entry)
        self._changed(highlight=len(self.entries) - 1)  # F8 removes the newest unless another is chosen
        await self.upload(entry)

    async def upload(self, entry: Entry) -> bool:
        """Upload one file (one at a time, with the bar); False with a sentence when it fails."""
        async with self._upload_lock:
            if entry.upload_id:
                return True
            if entry not in self.entries:
                return False  # removed while it waited
            if await self._reuse(entry):
                self.query_one(AttachmentList).show_rows()
                return True
            bar, name = self.query_one(UploadProgress), one_line(entry.name, 80)
            entry.uploading = True
            self.query_one(AttachmentList).show_rows()
            bar.start(entry.name, entry.size or 0)
            content_type = mimetypes.guess_type(entry.name)[0] or "application/octet-stream"
            try:
                before = await asyncio.to_thread(os.stat, entry.path)
                uploaded: Attachment = await self.client.upload(
                    entry.path, content_type=content_type, progress=lambda sent, total: bar.advance(sent))
            except PenError as exc:
                self._say(f"{name} was not uploaded: {exc.message}")
                return False
            except OSError as exc:
                self._say(f"{name} cannot be read ({exc.strerror or exc}); remove it with F8 or attach it again.")
                return False
            finally:
                entry.uploading = False
                bar.display = False
                self.query_one(AttachmentList).show_rows()
            entry.upload_id, entry.size = uploaded.id, uploaded.size
            # The time tells an unchanged file only if the PEN got the size it had then; else the hash does.
            mtime_ns = before.st_mtime_ns if before.st_size == uploaded.size else None
            entry.record = upload_record(uploaded.id, uploaded.size, mtime_ns, uploaded.sha256 or None)
            self._changed()  # the draft keeps the record, so a resumed draft reuses this upload
            self._say(f"{name} is uploaded ({human_size(uploaded.size)}).")
            return True

    async def upload_all(self) -> bool:
        """Every file uploaded (a resumed draft's files go up now); False if one failed."""
        for entry in list(self.entries):
            if not entry.upload_id and not await self.upload(entry):
                return False
        return True

    def remove_current(self) -> None:
        entry = self.query_one(AttachmentList).current
        if entry is None:
            self._say("There is no attachment to remove.")
            return
        self.entries.remove(entry)
        self._changed()
        self._say(f"Removed {one_line(entry.name, 80)} from the attachments.")
