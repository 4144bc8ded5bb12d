"""The mailbox's views: the sidebar of folders (data-driven: a ">" on the current one beside
its shade, and each folder's unread count, or for Drafts its count of drafts, from GET
/folders after anything that may change one) and the thread view (T: each conversation once,
under its newest message, with its counts; space opens a thread under it). A base of
MailboxScreen, as MailboxActions is."""

from __future__ import annotations

from textual import work
from textual.binding import Binding
from textual.widgets import OptionList

from tui.bulk import FOLDER_NAMES, plural
from tui.drafts.folder import DRAFTS
from tui.pen_client import PenError, Summary
from tui.screens.mailbox_actions import MailboxActions
from tui.widgets.message_list import MessageList
from tui.widgets.message_rows import fit

__all__ = ["FOLDERS", "LEGEND", "THREAD_LEGEND", "MailboxView", "compact_count", "folder_row"]

# The sidebar, in order: each folder's key is its place (1, 2, ...); a folder added here
# (and its key binding) is drawn like the others.
FOLDERS = ("inbox", "sent", "archive", "trash", DRAFTS)
LEGEND = "  UA = unread, attachment; T shows threads"
THREAD_LEGEND = "  Threads (T): U unread in it, A attachment; space opens one"
THREAD_ROWS = 200  # an expanded thread shows at most this many of its messages


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


class MailboxView(MailboxActions):
    """The sidebar's rows and counts, and the thread view's keys and actions."""

    BINDINGS = [
        Binding("T", "threads", "Threads", show=False, id="mailbox.threads"),  # the legend says it
        Binding("space", "expand_thread", "Open or close thread", show=False, id="mailbox.expand_thread"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.threads = False  # the thread view (T)
        self.folder_counts: dict[str, int] = {}  # the number each folder shows in the sidebar

    @property
    def showing_threads(self) -> bool:
        """Threads are shown when asked for and no search is on (a search lists messages)."""
        return self.threads and not self.query_text and self.folder != DRAFTS

    def _folder_prompt(self, folder: str) -> str:
        return folder_row(FOLDERS.index(folder) + 1, folder, folder == self.folder, self.folder_counts.get(folder, 0))

    def draw_folders(self) -> None:
        """The sidebar again: the current folder's marker and every folder's count."""
        folders = self.query_one("#folders", OptionList)
        for folder in FOLDERS:
            folders.replace_option_prompt(folder, self._folder_prompt(folder))

    @work(exclusive=True, group="folder-counts", exit_on_error=False)
    async def refresh_folder_counts(self) -> None:
        """Each folder's unread count (GET /folders), after anything that may change one."""
        try:
            counts = await self.client.folders()
        except PenError:
            return  # the counts stay as they were; the list says what went wrong
        self.folder_counts.update({c.name: c.unread for c in counts})
        self.draw_folders()

    def action_threads(self) -> None:
        """The list as conversations (each thread under its newest message), or as messages."""
        self.threads = not self.threads
        self.reload(keep_cursor=False)
        self._update_title()
        if self.threads and self.query_text:
            self.say("Threads come back when the search is cleared (escape); a search lists messages.")
        else:
            self.say("Showing threads; space opens or closes one." if self.threads else "Showing messages.")

    def action_expand_thread(self) -> None:
        messages = self.query_one(MessageList)
        if not messages.threads:
            self.say("Press T for the thread view first.")
            return
        head, summary, expanded = messages.highlighted_thread
        if summary is None:
            self.say("No thread is highlighted.")
        elif expanded:
            messages.collapse_thread(head)
        elif summary.thread_count <= 1:
            self.say("This thread has one message here.")
        else:  # the keys typed after space move in the opened thread
            self.app.key_gate.wait_for(self._expand(head, summary).wait(), 15, "the thread")

    @work(group="thread-expand", exit_on_error=False)
    async def _expand(self, head: int, summary: Summary) -> bool:
        try:
            page = await self.client.thread_messages(summary.thread_id, folder=self.folder, limit=THREAD_ROWS,
                                                     order="newest")
        except PenError as exc:
            self.say(exc.message)
            return False
        older = tuple(s for s in page.items if s.id != summary.id)
        if self.query_one(MessageList).expand_thread(head, summary.thread_id, older):
            more = f" (the newest {len(older) + 1} of {page.total})" if page.total > len(page.items) else ""
            self.say(f"The thread's {plural(len(older) + 1, 'message')} here{more}; space closes it.")
        return True
