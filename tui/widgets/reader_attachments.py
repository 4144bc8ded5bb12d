"""A received message's attachments as a list to move through: name, type and size on
each row, and where a copy was saved. Rows are safe Text (never markup); the highlighted
row carries a ">" and the terminal cursor, so braille displays and screen readers follow it."""

from __future__ import annotations

from pathlib import Path

from textual.widgets.option_list import Option

from tui.pen_client import Attachment
from tui.safe_text import one_line, safe_text
from tui.text.format import human_size
from tui.widgets.cursor_list import MarkedOptionList
from tui.widgets.vim_keys import moving_bindings


def attachment_row(number: int, attachment: Attachment, saved: Path | None = None, marked: bool = False) -> str:
    name = one_line(attachment.filename, 120) or "(no name)"
    kind = one_line(attachment.content_type, 60)
    note = f"  saved as {one_line(saved.name, 60)}" if saved is not None else ""
    return f"{'>' if marked else ' '} {number}. {name}  ({kind}, {human_size(attachment.size)}){note}"


class ReaderAttachmentList(MarkedOptionList):
    """The attachments of one message; ``highlighted_attachment`` is the one keys act on."""

    BINDINGS = moving_bindings("attachments.", ("Next attachment", "Previous attachment", "First attachment",
                                                "Last attachment"))

    def __init__(self, **kw) -> None:
        super().__init__(markup=False, **kw)
        self.attachments: tuple[Attachment, ...] = ()
        self.saved: dict[str, Path] = {}  # attachment id -> where it was saved

    def show_attachments(self, attachments: tuple[Attachment, ...]) -> None:
        self.attachments = tuple(attachments)
        self.set_options(Option(safe_text(self._row(i))) for i in range(len(self.attachments)))
        self.highlighted = 0 if self.attachments else None
        self._mark()

    @property
    def highlighted_attachment(self) -> Attachment | None:
        if self.highlighted is None or not 0 <= self.highlighted < len(self.attachments):
            return None
        return self.attachments[self.highlighted]

    def saved_path(self, attachment: Attachment | None) -> Path | None:
        return self.saved.get(attachment.id) if attachment is not None else None

    def mark_saved(self, attachment: Attachment, path: Path) -> None:
        self.saved[attachment.id] = path
        self._mark()

    def _row(self, index: int) -> str:
        a = self.attachments[index]
        return attachment_row(index + 1, a, self.saved.get(a.id), marked=index == self.highlighted)

    def _row_count(self) -> int:
        return len(self.attachments)
