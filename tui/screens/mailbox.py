"""The mailbox: the sidebar of folders, the message list, search, the thread view, and the
actions on messages. One screen, read from the top:

* what it is made of: a :class:`FolderSidebar` (it posts ``Chosen``; the screen hands it the
  counts of GET /folders and of the drafts on disk), a :class:`MessageList` (it asks for pages
  through ``_load_page`` and posts ``Highlighted``, ``Opened``, ``LoadFailed``), the search
  field, the title and the status line;
* what it owns: the folder, the search, the thread view (T: each conversation once, under
  its newest message; space opens a thread under it), the tags (t, * for all that match the
  search, ctrl+t to untag all) and the last move, for its undo (z);
* what it does: the actions on the highlighted row, or on every tagged row when any are
  tagged; delete for good (only in Trash and after a one-key question); reply, reply-all and
  forward from the list; and the Drafts folder (the drafts on disk, resumed with enter,
  deleted with d). The logic is in tui/bulk.py and tui/drafts/folder.py; this is the screen's
  side: keys, workers, and one sentence afterwards.

Every call to the PEN runs in a worker; the screen reacts to what comes back. It tells the app
what it wants with typed messages (tui/screens/messages.py); the app hands it the key gate,
for the keys typed while something it opens is loading."""

from __future__ import annotations

import asyncio

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Input

from tui import bulk
from tui.bulk import plural
from tui.drafts.folder import DRAFTS, DraftsFolder
from tui.pen_client import Page, PenClient, PenError, Summary, ValidationFailed
from tui.safe_text import one_line
from tui.screens.messages import ComposeRequested, DraftResumeRequested, EventsWanted, MessageOpenRequested
from tui.terminal.key_gate import KeyGate
from tui.widgets.folder_sidebar import FOLDERS, FolderSidebar
from tui.widgets.footer import KeyFooter
from tui.widgets.message_list import MessageList
from tui.widgets.safe_static import SafeStatic

__all__ = ["FOLDERS", "LEGEND", "THREAD_LEGEND", "MailboxScreen"]

LEGEND = "  UA = unread, attachment; T shows threads"
THREAD_LEGEND = "  Threads (T): U unread in it, A attachment; space opens one"
THREAD_ROWS = 200  # an expanded thread shows at most this many of its messages
# Under the search field while it is open; a search the PEN cannot read puts its sentence here.
SEARCH_HELP = ('words, "a phrase", from: to: cc: subject: body: has:attachment is:unread is:read '
               'after:YYYY-MM-DD before:YYYY-MM-DD')
IN_DRAFTS = "Drafts are kept on this computer: enter resumes the highlighted one, d deletes it."


class MailboxScreen(Screen):

    AUTO_FOCUS = "#messages"
    # In this order (the help screen lists them so): tags, undo and reply; the thread view;
    # then the search, the folders and the actions the footer shows.
    BINDINGS = [
        Binding("t", "tag", "Tag or untag", show=False, id="mailbox.tag"),
        Binding("asterisk", "tag_matching", "Tag all that match", show=False, id="mailbox.tag_matching"),
        Binding("ctrl+t", "untag_all", "Untag all", show=False, id="mailbox.untag_all"),
        Binding("z", "undo", "Undo move", show=False, id="mailbox.undo"),
        Binding("r", "reply('reply')", "Reply", show=False, id="mailbox.reply"),
        Binding("R", "reply('reply_all')", "Reply all", show=False, id="mailbox.reply_all"),
        Binding("f", "reply('forward')", "Forward", show=False, id="mailbox.forward"),
        Binding("T", "threads", "Threads", show=False, id="mailbox.threads"),  # the legend says it
        Binding("space", "expand_thread", "Open or close thread", show=False, id="mailbox.expand_thread"),
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

    # Keys that mean nothing for drafts (kept on this computer): not in Drafts' footer nor its
    # help; pressed anyway, they say what does (IN_DRAFTS).
    NOT_FOR_DRAFTS = frozenset({"search", "toggle_unread", "move('archive')", "move('inbox')", "threads",
                                "expand_thread", "undo", "reply('reply')", "reply('reply_all')",
                                "reply('forward')"})

    def __init__(self, client: PenClient, *, keys: KeyGate, signing_in_as: str | None = None) -> None:
        """With `signing_in_as`, the screen is the first frame while a quiet sign-in runs
        behind it: it fetches nothing until `start()` says the client is signed in. `keys`
        is the app's key gate: the keys typed after one that opens something wait for it."""
        super().__init__()
        self.client = client
        self.keys = keys
        self.folder = "inbox"
        self.query_text = ""
        self.threads = False  # the thread view (T)
        self.tags = bulk.Tags()
        self.last_move: bulk.LastMove | None = None
        self.drafts = DraftsFolder(client)
        self.signing_in_as = signing_in_as
        self._query_before = ""  # the search in effect before the one submitted last
        # (folder, search, how many match, the folder's total or None) of the last first page
        self._search_count: tuple[str, str, int, int | None, bool] | None = None

    def compose(self) -> ComposeResult:
        yield SafeStatic("", id="mailbox-title")
        with Horizontal():
            yield FolderSidebar(self.folder, id="folders")
            with Vertical(id="list-pane"):
                yield Input(placeholder="Search (keys below); enter to search, escape to clear", id="search")
                yield SafeStatic(SEARCH_HELP, id="search-note")
                yield SafeStatic(LEGEND, id="list-legend")
                yield MessageList(self._load_page, id="messages")
        yield SafeStatic("", id="status")
        yield KeyFooter()

    def on_mount(self) -> None:
        self._sidebar.highlighted = 0
        messages = self._list
        if self.signing_in_as is None:
            messages.me = self.client.user.email if self.client.user else None
            messages.reset()
            self.refresh_folder_counts()
            self.count_drafts()
        else:
            self.say("Signing in ...")
        self._update_title()

    def start(self) -> None:
        """The quiet sign-in behind this screen succeeded: fetch the first page."""
        if self.signing_in_as is not None:
            self.signing_in_as = None
            self.say("")
            self._list.me = self.client.user.email if self.client.user else None
            self.reload(keep_cursor=False)
            self.refresh_folder_counts()
            self._update_title()
            self.count_drafts()

    @property
    def _list(self) -> MessageList:
        return self.query_one(MessageList)

    @property
    def _sidebar(self) -> FolderSidebar:
        return self.query_one(FolderSidebar)

    @property
    def folder_counts(self) -> dict[str, int]:
        """The number each folder shows in the sidebar."""
        return self._sidebar.counts

    @property
    def showing_threads(self) -> bool:
        """Threads are shown when asked for and no search is on (a search lists messages)."""
        return self.threads and not self.query_text and self.folder != DRAFTS

    # ------------------------------------------------------------ the list's pages

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

    async def _drafts_page(self, cursor: str | None, limit: int, order: str) -> Page:
        return await asyncio.to_thread(self.drafts.page, cursor, limit, order)

    def reload(self, keep_cursor: bool = True) -> None:
        if self.signing_in_as is None:  # else start() loads, with the folder and search chosen by then
            messages = self._list
            messages.threads = self.showing_threads
            self.query_one("#list-legend", SafeStatic).show(THREAD_LEGEND if messages.threads else LEGEND)
            messages.reset(keep_cursor=keep_cursor)
            if messages.first_page_fetch is not None:  # keys typed after 2 or a search act on the new rows
                self.keys.wait_for(messages.first_page_fetch.wait(), 15, "the list")
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

    def action_reload(self) -> None:
        self.reload()

    # ------------------------------------------------------------ the title and the status line

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
        title = self.query_one("#mailbox-title", SafeStatic)
        tagged = f", {len(self.tags)} tagged" if self.tags else ""
        if self.query_text and self.signing_in_as is None and self.folder != DRAFTS:
            title.show(f"penmail  {who}  {self._search_title()}{tagged}")
            return
        messages = self._list
        if self.signing_in_as is not None:
            count = "signing in"
        elif not messages.loaded_once:
            count = "loading"
        else:
            noun = "draft" if self.folder == DRAFTS else "thread" if messages.threads else "message"
            count = plural(messages.total, noun)
        search = f", search: {self.query_text}" if self.query_text else ""
        title.show(f"penmail  {who}  {self.folder.capitalize()} ({count}{search}{tagged})")

    def say(self, text: str) -> None:
        self.query_one("#status", SafeStatic).show(text)

    # ------------------------------------------------------------ what the widgets post

    @on(MessageList.Highlighted)
    def _highlighted(self, event: MessageList.Highlighted) -> None:
        self._update_title()
        if self._list.loaded_once:
            self.post_message(EventsWanted())

    @on(MessageList.LoadFailed)
    def _load_failed(self, event: MessageList.LoadFailed) -> None:
        if self._search_refused(event.error):
            return
        self.say(event.error.message)
        self.post_message(EventsWanted())  # the stream reloads the list when it opens

    @on(MessageList.Opened)
    def _opened(self, event: MessageList.Opened) -> None:
        if event.summary.folder == DRAFTS:
            self.open_draft(event.summary)
            return
        self.post_message(MessageOpenRequested(event.summary))

    @on(FolderSidebar.Chosen)
    def _folder_chosen(self, event: FolderSidebar.Chosen) -> None:
        self.action_folder(event.folder)
        self._list.focus()

    # ------------------------------------------------------------ which keys work where

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # d is "Trash" in the folders of the PEN and "Delete draft" in Drafts: one binding each.
        if action == "move" and parameters == ("trash",):
            return self.folder != DRAFTS
        if action == "delete_draft":
            return self.folder == DRAFTS
        return True

    def key_hidden(self, action: str) -> bool:
        """Left out of the footer and the help (tui/widgets/footer.py, tui/screens/help.py)."""
        if self.folder == "trash":  # already there: D (delete for good) is Trash's own key
            return action == "move('trash')"
        return self.folder == DRAFTS and action in self.NOT_FOR_DRAFTS

    # ------------------------------------------------------------ folders and their counts

    def action_folder(self, folder: str) -> None:
        if folder not in FOLDERS:
            return
        if folder != self.folder:
            self.forget_tags()
        self.folder = folder
        self.refresh_bindings()  # Drafts has keys of its own
        self._sidebar.show_current(folder)
        self.say("")
        self.reload(keep_cursor=False)
        self._update_title()

    @work(exclusive=True, group="folder-counts", exit_on_error=False)
    async def refresh_folder_counts(self) -> None:
        """Each folder's unread count (GET /folders), after anything that may change one."""
        try:
            counts = await self.client.folders()
        except PenError:
            return  # the counts stay as they were; the list says what went wrong
        self._sidebar.show_counts({c.name: c.unread for c in counts})

    def show_drafts_count(self, n: int) -> None:
        self._sidebar.show_counts({DRAFTS: n})

    # ------------------------------------------------------------ search

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
        self._list.empty_text = "(no messages match)" if self.query_text else None
        self.reload(keep_cursor=False)
        self._update_title()
        self._list.focus()

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
        self._list.empty_text = "(no messages match)" if self.query_text else None
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
        self._list.empty_text = None
        self.query_text = ""
        self._list.focus()
        if had:
            self.reload(keep_cursor=False)
            self._update_title()

    # ------------------------------------------------------------ the thread view

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
        messages = self._list
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
            self.keys.wait_for(self._expand(head, summary).wait(), 15, "the thread")

    @work(group="thread-expand", exit_on_error=False)
    async def _expand(self, head: int, summary: Summary) -> bool:
        try:
            page = await self.client.thread_messages(summary.thread_id, folder=self.folder, limit=THREAD_ROWS,
                                                     order="newest")
        except PenError as exc:
            self.say(exc.message)
            return False
        older = tuple(s for s in page.items if s.id != summary.id)
        if self._list.expand_thread(head, summary.thread_id, older):
            more = f" (the newest {len(older) + 1} of {page.total})" if page.total > len(page.items) else ""
            self.say(f"The thread's {plural(len(older) + 1, 'message')} here{more}; space closes it.")
        return True

    # ------------------------------------------------------------ tags

    def _show_tags(self) -> None:
        self._list.show_tags(self.tags.ids)
        self._update_title()

    def forget_tags(self) -> None:
        """Another folder: the tags were of this one."""
        self.tags.clear()
        self._show_tags()

    def _targets(self) -> list[Summary]:
        """The tagged rows, else the highlighted one (else none, said)."""
        if self.tags:
            return self.tags.items
        summary = self._list.highlighted
        if summary is None:
            self.say("No message is highlighted.")
        return [summary] if summary is not None else []

    def action_tag(self) -> None:
        summary = self._list.highlighted
        if summary is None:
            self.say("No message is highlighted.")
            return
        tagged = self.tags.toggle(summary)
        self._show_tags()
        subject = one_line(summary.subject, 60) or "(no subject)"
        self.say(f"{'Tagged' if tagged else 'Untagged'} \u201c{subject}\u201d; {plural(len(self.tags), 'row')} "
                 f"tagged.")
        self._list.action_cursor_down()  # as in mutt: on to the next row

    def action_untag_all(self) -> None:
        n = self.tags.clear()
        self._show_tags()
        self.say(f"Untagged {plural(n, 'row')}." if n else "No row is tagged.")

    def action_tag_matching(self) -> None:
        self._tag_matching(self.folder, self.query_text)

    @work(exclusive=True, group="mailbox-tag", exit_on_error=False)
    async def _tag_matching(self, folder: str, q: str) -> None:
        try:
            if folder == DRAFTS:
                page = await self._drafts_page(None, bulk.MAX_TAGGED, "newest")
                found, total = list(page.items), page.total
            else:
                found, total = await bulk.matching(self.client, folder, q)
        except PenError as exc:
            self.say(exc.message)
            return
        if folder != self.folder or q != self.query_text:
            return  # the list changed meanwhile: these rows are not the ones shown
        added = self.tags.add(found)
        self._show_tags()
        where = f"that match \u201c{one_line(q, 60)}\u201d" if q else f"in {bulk.folder_name(folder)}"
        capped = f" (only the first {len(found)} of {total})" if total > len(found) else ""
        self.say(f"Tagged {plural(added, 'more row')} {where}{capped}; {plural(len(self.tags), 'row')} tagged.")

    # ------------------------------------------------------------ moves, read state, undo

    def action_toggle_unread(self) -> None:
        if self.folder == DRAFTS:
            self.say(IN_DRAFTS)
            return
        targets = self._targets()
        if targets:
            # Any unread among them: all read; else all unread (one row: its opposite).
            self._mark(targets, unread=not any(s.unread for s in targets))

    def action_move(self, folder: str) -> None:
        if self.folder == DRAFTS:
            if folder == "trash":
                self.action_delete()
            else:
                self.say(IN_DRAFTS)
            return
        targets = [s for s in self._targets() if s.folder != folder]
        if targets:
            self._move(targets, folder)
        elif self.tags:
            self.say(f"The tagged messages are in {bulk.folder_name(folder)} already.")

    def _say_under_way(self, doing: str, targets: list[Summary]) -> None:
        if len(targets) > 1:  # one request a message: say what is under way
            self.say(f"{doing} {plural(len(targets), 'message')} ...")

    @work(group="mailbox-action", exit_on_error=False)
    async def _move(self, targets: list[Summary], to: str) -> None:
        self._say_under_way("Changing", targets)
        outcome = await bulk.apply(targets, lambda s: self.client.update_message(s.id, folder=to))
        before = {s.id: s.folder for s in targets}
        if outcome.done:
            self.last_move = bulk.LastMove(to, tuple((s, before[s.id]) for s in outcome.done))
        self.tags.discard(s.id for s in outcome.done)  # they left this folder
        self._show_tags()
        undoable = any(before[s.id] in bulk.MOVABLE for s in outcome.done)
        self.say(bulk.sentence(outcome, f"Moved {{n}} to {bulk.folder_name(to)}",
                               then="press z to undo" if undoable else ""))
        self.reload()

    @work(group="mailbox-action", exit_on_error=False)
    async def _mark(self, targets: list[Summary], unread: bool) -> None:
        self._say_under_way("Changing", targets)
        outcome = await bulk.apply(targets, lambda s: self.client.update_message(s.id, unread=unread))
        for updated in outcome.done:
            self._list.replace(updated)
        self.tags.refresh(outcome.done)  # their read state, for the next u
        self.refresh_folder_counts()
        self.say(bulk.sentence(outcome, f"Marked {{n}} {'unread' if unread else 'read'}"))

    def remember_move(self, summary: Summary, before: str) -> None:
        """The reader moved a message: z here puts it back."""
        if summary.folder != before:
            self.last_move = bulk.LastMove(summary.folder, ((summary, before),))

    def action_undo(self) -> None:
        last = self.last_move
        if last is None:
            self.say("There is no move to undo.")
            return
        self.last_move = None
        self._undo(last)

    @work(group="mailbox-action", exit_on_error=False)
    async def _undo(self, last: bulk.LastMove) -> None:
        outcome = await bulk.undo(self.client, last)
        places = {folder for _, folder in last.moved}
        where = bulk.folder_name(places.pop()) if len(places) == 1 else "where they were"
        self.say(bulk.sentence(outcome, f"Moved {{n}} back to {where}", then=f"the move to "
                               f"{bulk.folder_name(last.to)} is undone"))
        self.reload()

    # ------------------------------------------------------------ delete for good

    def action_delete_draft(self) -> None:
        self.action_delete()

    def action_delete(self) -> None:
        if self.folder not in ("trash", DRAFTS):
            self.say("Delete for good works in Trash; press d to move to Trash first.")
            return
        targets = self._targets()
        if targets:
            self._ask_to_delete(targets)

    def _ask_to_delete(self, targets: list[Summary]) -> None:
        from tui.screens.confirm import ConfirmScreen

        what = "draft" if self.folder == DRAFTS else "message"
        if len(targets) == 1:
            name = f"the {what} \u201c{one_line(targets[0].subject, 60) or '(no subject)'}\u201d"
        else:
            name = f"the {plural(len(targets), 'tagged ' + what)}"

        def answered(yes: bool | None) -> None:
            if not yes:
                self.say("Nothing was deleted.")
            elif self.folder == DRAFTS:
                self._delete_drafts(targets)
            else:
                self._delete(targets)

        self.app.push_screen(ConfirmScreen(f"Delete {name} for good? This cannot be undone.",
                                           yes="Yes, delete for good"), answered)

    @work(group="mailbox-action", exit_on_error=False)
    async def _delete(self, targets: list[Summary]) -> None:
        self._say_under_way("Deleting", targets)
        outcome = await bulk.apply(targets, self._delete_one)
        self.tags.discard(s.id for s in outcome.done)
        self._show_tags()
        self.say(bulk.sentence(outcome, "Deleted {n} for good"))
        self.reload()

    async def _delete_one(self, summary: Summary) -> None:
        await self.client.delete_message(summary.id)

    # ------------------------------------------------------------ reply from the list

    def action_reply(self, kind: str) -> None:
        if self.folder == DRAFTS:
            self.say(IN_DRAFTS)
            return
        summary = self._list.highlighted
        if summary is None:
            self.say("No message is highlighted.")
            return
        self.say("Fetching the message ...")
        # The keys typed after r wait for the reply to open (or are not used if it cannot).
        self.keys.wait_for(self._reply(kind, summary).wait(), 30, "the reply")

    @work(exclusive=True, group="mailbox-reply", exit_on_error=False)
    async def _reply(self, kind: str, summary: Summary) -> bool:
        try:
            message = await self.client.get_message(summary.id)
        except PenError as exc:
            self.say(exc.message)
            return False
        self.say("")
        self.post_message(ComposeRequested(kind, message))
        return True

    # ------------------------------------------------------------ the Drafts folder

    def on_screen_resume(self) -> None:
        """Back from compose (a draft saved, sent or discarded): the count, and the folder."""
        self.count_drafts()
        if self.folder == DRAFTS:
            self.reload()

    def count_drafts(self) -> None:
        """The sidebar's count of drafts, read in a thread."""
        if self.client.user is not None:
            self._count_drafts()

    @work(thread=True, exclusive=True, group="drafts-count", exit_on_error=False)
    def _count_drafts(self) -> None:
        n = self.drafts.count()
        self.app.call_from_thread(self.show_drafts_count, n)

    def open_draft(self, summary: Summary) -> None:
        # The keys typed after enter wait for the draft to open (or are not used if it cannot).
        self.keys.wait_for(self._open_draft(summary.id).wait(), 10, "the draft")

    @work(thread=True, group="drafts-open", exit_on_error=False)
    def _open_draft(self, draft_id: str) -> bool:
        draft = self.drafts.load(draft_id)
        if draft is None:
            self.app.call_from_thread(self.say, "That draft is gone (sent or deleted elsewhere); the list is "
                                                "read again.")
            self.app.call_from_thread(self.reload)
            return False
        self.app.call_from_thread(self.app.post_message, DraftResumeRequested(draft))
        return True

    @work(thread=True, group="mailbox-action", exit_on_error=False)
    def _delete_drafts(self, targets: list[Summary]) -> None:
        gone = self.drafts.delete(targets)
        outcome = bulk.Outcome(done=gone, failed=[(s, "It was gone already.") for s in targets if s not in gone])
        self.app.call_from_thread(self._drafts_deleted, outcome)

    def _drafts_deleted(self, outcome: bulk.Outcome) -> None:
        self.tags.discard(s.id for s in outcome.done)
        self._show_tags()
        self.say(bulk.sentence(outcome, "Deleted {n}", what="draft"))
        self.reload()
        self.count_drafts()
