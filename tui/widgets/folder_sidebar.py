"""The mailbox's sidebar of folders: data-driven rows, a ">" on the current one beside its
shade, and each folder's count (unread, or for Drafts its count of drafts). Choosing a row
posts :class:`FolderSidebar.Chosen`; the screen decides what that means. No I/O here: the
screen fetches the counts and hands them down."""

from __future__ import annotations

from collections.abc import Mapping

from textual import on
from textual.message import Message
from textual.widgets import OptionList
from textual.widgets.option_list import Option

from tui.bulk import FOLDER_NAMES
from tui.drafts.folder import DRAFTS
from tui.widgets.cursor_list import CursorOptionList
from tui.widgets.message_rows import fit

__all__ = ["FOLDERS", "FolderSidebar", "compact_count", "folder_row"]

# The sidebar, in order: each folder's key is its place (1, 2, ...); a folder added here
# (and its key binding on the mailbox screen) is drawn like the others.
FOLDERS = ("inbox", "sent", "archive", "trash", DRAFTS)


def compact_count(n: int) -> str:
    """A count in at most 4 cells: 12, 9999, 12k, 3M."""
    if n < 10_000:
        return str(n)
    if n < 1_000_000:
        return f"{n // 1000}k"
    return f"{n // 1_000_000}M"


def folder_row(number: int, name: str, current: bool, count: int) -> str:
    """A sidebar row, 14 cells: ">" on the current folder (not shade alone), its key, its
    name cut with an ellipsis, and its count of unread messages (drafts: of drafts) or none."""
    label = FOLDER_NAMES.get(name, name.capitalize())
    return f"{'>' if current else ' '}{number} {fit(label, 7)}{(compact_count(count) if count else '').rjust(4)}"


class FolderSidebar(CursorOptionList):
    """The folders, one a row; the current one marked; counts as they are handed down."""

    class Chosen(Message):
        """A folder was chosen in the sidebar (enter or a click on its row)."""

        def __init__(self, folder: str) -> None:
            super().__init__()
            self.folder = folder

    def __init__(self, current: str = "inbox", *, id: str | None = None) -> None:
        self.current = current
        self.counts: dict[str, int] = {}  # the number each folder shows
        super().__init__(*[Option(self._prompt(f), id=f) for f in FOLDERS], id=id)

    def _prompt(self, folder: str) -> str:
        return folder_row(FOLDERS.index(folder) + 1, folder, folder == self.current, self.counts.get(folder, 0))

    def _draw(self) -> None:
        for i, folder in enumerate(FOLDERS):
            prompt = self._prompt(folder)
            if self.get_option_at_index(i).prompt != prompt:  # unchanged rows are not laid out again
                self.replace_option_prompt(folder, prompt)

    def show_current(self, folder: str) -> None:
        """The marker (and the highlight) on this folder."""
        self.current = folder
        self.highlighted = FOLDERS.index(folder)
        self._draw()

    def show_counts(self, counts: Mapping[str, int]) -> None:
        """New counts for some folders; the others keep theirs."""
        self.counts.update(counts)
        self._draw()

    @on(OptionList.OptionSelected)
    def _selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        if event.option.id in FOLDERS:
            self.post_message(self.Chosen(event.option.id))
