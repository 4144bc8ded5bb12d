"""The attachments of the message being written: the list, the path prompt (completed
from the file system), and the upload under way with its bar in bytes.

The panel shows and asks; it does no I/O. A path typed in is posted as ``AttachRequested``;
the compose screen's workers run tui.writing.uploads.Uploader, which reports back through the
panel's view methods (``changed``, ``redraw``, ``say``, ``upload_started``...). Rows say a
file's state in words ("uploading", "ready", "forwarded", "not uploaded yet"), never by
colour alone; file names reach the screen through the safe-text path. The panel tells its
screen what happened with ``Changed`` (the list) and ``Said`` (a sentence)."""

from __future__ import annotations

import os

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Input, OptionList, ProgressBar
from textual.widgets.option_list import Option

from tui.safe_text import one_line, safe_text
from tui.text.format import human_size
from tui.widgets.path_suggester import PathSuggester
from tui.widgets.safe_static import SafeStatic
from tui.writing.uploads import Entry


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
    """The files of a draft, shown; the upload view of tui.writing.uploads.Uploader."""

    class Changed(Message):
        """The list of attachments changed (the draft keeps it)."""

    class Said(Message):
        def __init__(self, text: str) -> None:
            super().__init__()
            self.text = text

    class AttachRequested(Message):
        """A path was typed in: the screen checks the file, attaches and uploads it."""

        def __init__(self, path: str) -> None:
            super().__init__()
            self.path = path

    def __init__(self, entries: list[Entry], **kw) -> None:
        super().__init__(**kw)
        self._initial = entries

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

    @property
    def entries(self) -> list[Entry]:
        return self.query_one(AttachmentList).entries

    @property
    def uploading(self) -> bool:
        return any(e.uploading for e in self.entries)

    # ------------------------------------------------------------ the view tui.writing.uploads reports to

    def say(self, text: str) -> None:
        self.post_message(self.Said(text))

    def changed(self, highlight: int | None = None) -> None:
        self.redraw(highlight)
        self.post_message(self.Changed())

    def redraw(self, highlight: int | None = None) -> None:
        self.query_one(AttachmentList).show_rows(highlight)

    def upload_started(self, entry: Entry) -> None:
        self.redraw()
        self.query_one(UploadProgress).start(entry.name, entry.size or 0)

    def upload_progress(self, sent: int) -> None:
        self.query_one(UploadProgress).advance(sent)

    def upload_ended(self) -> None:
        self.query_one(UploadProgress).display = False
        self.redraw()

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
            self.post_message(self.AttachRequested(os.path.abspath(os.path.expanduser(value))))

    # ------------------------------------------------------------ changing the list

    def remove_current(self) -> None:
        entry = self.query_one(AttachmentList).current
        if entry is None:
            self.say("There is no attachment to remove.")
            return
        self.entries.remove(entry)
        self.changed()
        self.say(f"Removed {one_line(entry.name, 80)} from the attachments.")
