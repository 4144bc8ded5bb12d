"""The mailbox: folders, the message list, search, and the actions on the highlighted
message. Every call to the PEN runs in a worker; the screen reacts to what comes back."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Input, OptionList
from textual.widgets.option_list import Option

from tui.bulk import plural
from tui.drafts_folder import DRAFTS
from tui.pen_client import PenClient, PenError, ValidationFailed
from tui.screens.mailbox_view import FOLDERS, LEGEND, THREAD_LEGEND, MailboxView
from tui.screens.messages import EventsWanted, MessageOpenRequested
from tui.widgets.cursor_list import CursorOptionList
from tui.widgets.footer import KeyFooter
from tui.widgets.message_list import MessageList
from tui.widgets.safe_static import SafeStatic

if TYPE_CHECKING:
    from tui.app import PenmailApp

# Under the search field while it is open; a search the PEN cannot read puts its sentence here.
SEARCH_HELP = ('words, "a phrase", from: to: cc: subject: body: has:attachment is:unread is:read '
               'after:YYYY-MM-DD before:YYYY-MM-DD')


class MailboxScreen(MailboxView):

    if TYPE_CHECKING:  # the app this screen runs in, so that the names used on it are checked
        app: PenmailApp

    AUTO_FOCUS = "#messages"
    BINDINGS = [
        Binding("slash", "search", "Search", id="mailbox.search"),
        Binding("escape", "clear_search", "Clear search", show=False, id="mailbox.clear_search"),
        Binding("1", "folder('inbox')", "Inbox", show=False, id="mailbox.inbox"),
        Binding("2", "folder('sent')", "Sent", show=False, id="mailbox.sent"),
        Binding("3", "folder('archive')", "Archive folder", show=False, id="mailbox.archive_folder"),
        Binding("4", "folder('trash')", "Trash folder", show=False, id="mailbox.trash_folder"),
        Binding("5", "folder('drafts')", "Drafts folder", show=False, id="mailbox.drafts_folder"),
        Binding("c", "app.compose('new')", "Compose", id="mailbox.compose"),
        Binding("u", "toggle_unread", "Read or unread", show=False, id="mailbox.toggle_unread"),
        Binding("a", "move('archive')", "Archive", id="mailbox.archive"),
        Binding("d", "move('trash')", "Trash", id="mailbox.trash"),
        Binding("d", "delete_draft", "Delete draft", id="mailbox.delete_draft"),  # d in Drafts (check_action)
        Binding("D", "delete", "Delete for good", show=False, id="mailbox.delete"),
        Binding("i", "move('inbox')", "Back to inbox", show=False, id="mailbox.to_inbox"),
        Binding("f5,ctrl+r", "reload", "Reload", show=False, id="mailbox.reload"),
        Binding("f1,question_mark", "app.help", "Help", id="mailbox.help"),
        Binding("L", "app.sign_out", "Sign out", show=False, id="mailbox.sign_out"),
        Binding("q", "app.quit", "Quit", id="mailbox.quit"),
    ]

    def __init__(self, client: PenClient, *, signing_in_as: str | None = None) -> None:
        """With `signing_in_as`, the screen is the first frame while a quiet sign-in runs
        behind it: it fetches nothing until `start()` says the client is signed in."""
        super().__init__()  # the thread view off, no counts yet (MailboxView)
        self.client = client
        self.folder = "inbox"
        self.query_text = ""
        self.signing_in_as = signing_in_as
        self._query_before = ""  # the search in effect before the one submitted last
        # (folder, search, how many match, the folder's total or None) of the last first page
        self._search_count: tuple[str, str, int, int | None, bool] | None = None
        # The sidebar's counts (GET /folders, and the drafts on disk) are asked for once the
        # first page is drawn (or failed), not beside it: at 100,000 messages the unread
        # counts are the PEN's slowest answer, and they slowed the first page on both ends.
        self._counts_after_first_page = False

    def compose(self) -> ComposeResult:
        yield SafeStatic("", id="mailbox-title")
        with Horizontal():
            yield CursorOptionList(*[Option(self._folder_prompt(f), id=f) for f in FOLDERS], id="folders")
            with Vertical(id="list-pane"):
                yield Input(placeholder="Search (keys below); enter to search, escape to clear", id="search")
                yield SafeStatic(SEARCH_HELP, id="search-note")
                yield SafeStatic(LEGEND, id="list-legend")
                yield MessageList(self._load_page, id="messages")
        yield SafeStatic("", id="status")
        yield KeyFooter()

    def on_mount(self) -> None:
        self.query_one("#folders", OptionList).highlighted = 0
        messages = self.query_one(MessageList)
        if self.signing_in_as is None:
            messages.me = self.client.user.email if self.client.user else None
            messages.reset()
            self._counts_after_first_page = True
        else:
            self.say("Signing in ...")
        self._update_title()

    def start(self) -> None:
        """The quiet sign-in behind this screen succeeded: fetch the first page."""
        if self.signing_in_as is not None:
            self.signing_in_as = None
            self.say("")
            self.query_one(MessageList).me = self.client.user.email if self.client.user else None
            self._counts_after_first_page = True
            self.reload(keep_cursor=False)
            self._update_title()

    # ------------------------------------------------------------ data

    async def _load_page(self, cursor: str | None, limit: int, order: str = "newest"):
        if self.folder == DRAFTS:
            page = await self._drafts_page(cursor, limit, order)
            if cursor is None:
                self.show_drafts_count(page.total)
            return page
        if self.showing_threads:
            return await self.client.list_threads(self.folder, limit=limit, cursor=cursor, order=order)
        folder, q = self.folder, self.query_text
        listing = self.client.list_messages(folder, limit=limit, cursor=cursor, q=q or None, order=order)
        if not (q and cursor is None and order == "newest"):
            return await listing
        # A search's first page: the folder's total is asked for at the same time, for the title.
        page, total = await asyncio.gather(listing, self._folder_total(folder))
        self._search_count = (folder, q, page.total, total, page.exact)
        self._update_title()
        return page

    async def _folder_total(self, folder: str) -> int | None:
        """How many messages the folder holds (GET /folders); None when the PEN cannot say,
        and the title says how many match without "of N"."""
        try:
            return next((f.total for f in await self.client.folders() if f.name == folder), None)
        except PenError:
            return None

    def _search_title(self) -> str:
        """ "Inbox: 3 of 72 messages match from:okafor", counting what the list shows."""
        folder, q = self.folder.capitalize(), self.query_text
        count = self._search_count
        if count is None or count[:2] != (self.folder, q):
            return f"{folder}: searching for {q}"
        matched, total, exact = count[2], count[3], count[4]
        if not matched:
            return f"{folder}: no messages match {q}"
        verb = "matches" if matched == 1 else "match"
        if not exact:  # the PEN counts the first 1,000: the list holds those, the newest
            of = f" of {plural(total, 'message')}" if total is not None else " messages"
            return f"{folder}: more than {matched}{of} match {q} (the newest {matched} shown)"
        if total is None:
            return f"{folder}: {plural(matched, 'message')} {verb} {q}"
        return f"{folder}: {matched} of {plural(total, 'message')} {verb} {q}"

    def _update_title(self) -> None:
        who = self.client.user.email if self.client.user else (self.signing_in_as or "")
        messages = self.query_one(MessageList)
        if self.query_text and self.signing_in_as is None and self.folder != DRAFTS:
            self.query_one("#mailbox-title", SafeStatic).show(
                f"penmail  {who}  {self._search_title()}{self.tag_note()}")
            return
        if self.signing_in_as is not None:
            count = "signing in"
        elif not messages.loaded_once:
            count = "loading"
        else:
            noun = "draft" if self.folder == DRAFTS else "thread" if messages.threads else "message"
            count = plural(messages.total, noun)
        search = f", search: {self.query_text}" if self.query_text else ""
        self.query_one("#mailbox-title", SafeStatic).show(
            f"penmail  {who}  {self.folder.capitalize()} ({count}{search}{self.tag_note()})")

    def say(self, text: str) -> None:
        self.query_one("#status", SafeStatic).show(text)

    def reload(self, keep_cursor: bool = True) -> None:
        if self.signing_in_as is None:  # else start() loads, with the folder and search chosen by then
            messages = self.query_one(MessageList)
            messages.threads = self.showing_threads
            self.query_one("#list-legend", SafeStatic).show(THREAD_LEGEND if messages.threads else LEGEND)
            messages.reset(keep_cursor=keep_cursor)
            if messages.first_page_fetch is not None:  # keys typed after 2 or a search act on the new rows
                self.app.key_gate.wait_for(messages.first_page_fetch.wait(), 15, "the list")
            if keep_cursor:  # something changed (a move, new mail, F5), not the view: counts too
                self.refresh_folder_counts()

    def message_arrived(self, folder: str) -> None:
        """The event stream said a message came: show it without a manual refresh."""
        if folder == self.folder:
            self.reload(keep_cursor=True)
            if folder == "inbox":
                self.say("A new message arrived.")
        else:
            self.refresh_folder_counts()

    @on(MessageList.Highlighted)
    def _highlighted(self, event: MessageList.Highlighted) -> None:
        self._update_title()
        if self.query_one(MessageList).loaded_once:
            self._first_page_done()

    def _first_page_done(self) -> None:
        """The first page is drawn (or failed): now the sidebar's counts, and the event stream."""
        if self._counts_after_first_page:
            self._counts_after_first_page = False
            self.refresh_folder_counts()
            self.count_drafts()
        self.post_message(EventsWanted())

    @on(MessageList.LoadFailed)
    def _load_failed(self, event: MessageList.LoadFailed) -> None:
        if self._search_refused(event.error):
            return
        self.say(event.error.message)
        self._first_page_done()  # the stream reloads the list when it opens

    @on(MessageList.Opened)
    def _opened(self, event: MessageList.Opened) -> None:
        if event.summary.folder == DRAFTS:
            self.open_draft(event.summary)
            return
        self.post_message(MessageOpenRequested(event.summary))

    @on(OptionList.OptionSelected, "#folders")
    def _folder_chosen(self, event: OptionList.OptionSelected) -> None:
        self.action_folder(event.option.id)
        self.query_one(MessageList).focus()

    # ------------------------------------------------------------ actions

    # Keys that mean nothing for drafts (kept on this computer): not in Drafts' footer nor its
    # help; pressed anyway, they say what does (IN_DRAFTS).
    NOT_FOR_DRAFTS = frozenset({"search", "toggle_unread", "move('archive')", "move('inbox')", "threads",
                                "expand_thread", "undo", "reply('reply')", "reply('reply_all')",
                                "reply('forward')"})

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # d is "Trash" in the folders of the PEN and "Delete draft" in Drafts: one binding each.
        if action == "move" and parameters == ("trash",):
            return self.folder != DRAFTS
        if action == "delete_draft":
            return self.folder == DRAFTS
        return True

    def key_hidden(self, action: str) -> bool:
        """Left out of the footer and the help (tui/widgets/footer.py, tui/screens/help.py)."""
        return self.folder == DRAFTS and action in self.NOT_FOR_DRAFTS

    def action_delete_draft(self) -> None:
        self.action_delete()

    def action_folder(self, folder: str) -> None:
        if folder not in FOLDERS:
            return
        if folder != self.folder:
            self.forget_tags()
        self.folder = folder
        self.refresh_bindings()  # Drafts has keys of its own
        self.query_one("#folders", OptionList).highlighted = FOLDERS.index(folder)
        self.draw_folders()
        self.say("")
        self.reload(keep_cursor=False)
        self._update_title()

    def action_search(self) -> None:
        search = self.query_one("#search", Input)
        search.display = True  # hidden by app.tcss until asked for
        self.query_one("#search-note").display = True
        search.focus()

    @on(Input.Submitted, "#search")
    def _search(self, event: Input.Submitted) -> None:
        self._query_before, self.query_text = self.query_text, event.value.strip()
        self._search_note(SEARCH_HELP)
        self.say("")
        self.query_one(MessageList).empty_text = "(no messages match)" if self.query_text else None
        self.reload(keep_cursor=False)
        self._update_title()
        self.query_one(MessageList).focus()

    def _search_note(self, text: str, refused: bool = False) -> None:
        note = self.query_one("#search-note", SafeStatic)
        note.show(text)
        note.set_class(refused, "-refused")

    def _search_refused(self, error: PenError) -> bool:
        """A search the PEN cannot read (422 naming the word): its sentence under the field,
        the typed text kept there to correct, and the list back on the search before it."""
        if not (isinstance(error, ValidationFailed) and "q" in error.fields and self.query_text):
            return False
        self.query_text = self._query_before
        self.query_one(MessageList).empty_text = "(no messages match)" if self.query_text else None
        self._search_note(error.message, refused=True)
        self.say(error.message)
        self.reload(keep_cursor=False)
        self._update_title()
        search = self.query_one("#search", Input)
        search.display = self.query_one("#search-note").display = True
        search.focus()
        search.cursor_position = len(search.value)
        return True

    def action_clear_search(self) -> None:
        search = self.query_one("#search", Input)
        had = bool(self.query_text)
        if self.query_one("#search-note").has_class("-refused"):
            self.say("")  # the refused search's sentence goes with it
        search.value = ""
        search.display = self.query_one("#search-note").display = False
        self._search_note(SEARCH_HELP)
        self.query_one(MessageList).empty_text = None
        self.query_text = ""
        self.query_one(MessageList).focus()
        if had:
            self.reload(keep_cursor=False)
            self._update_title()

    def action_reload(self) -> None:
        self.reload()

    # ------------------------------------------------------------ the Drafts folder

    def on_screen_resume(self) -> None:
        """Back from compose (a draft saved, sent or discarded): the count, and the folder."""
        self.count_drafts()
        if self.folder == DRAFTS:
            self.reload()

    def show_drafts_count(self, n: int) -> None:
        self.folder_counts[DRAFTS] = n
        self.draw_folders()
