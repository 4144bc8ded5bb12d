"""The mailbox's actions on messages: on the highlighted row, or on every tagged row when
any are tagged (tag with t, tag all that match the search with *, untag all with ctrl+t);
the undo of the last move (z); delete for good, only in Trash and after a one-key question;
reply, reply-all and forward from the list; and the Drafts folder (the drafts on disk,
resumed with enter, deleted with d). The logic is in tui/bulk.py and tui/drafts/folder.py;
this is the screen's side: keys, workers, and one sentence afterwards."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from textual import work
from textual.binding import Binding
from textual.screen import Screen

from tui import bulk
from tui.drafts import DraftStore, account_key
from tui.drafts.folder import DRAFTS, draft_page
from tui.pen_client import Address, Page, PenClient, PenError, Summary
from tui.safe_text import one_line
from tui.screens.messages import ComposeRequested, DraftResumeRequested
from tui.widgets.message_list import MessageList

if TYPE_CHECKING:
    from tui.app import PenmailApp

__all__ = ["MailboxActions"]

IN_DRAFTS = "Drafts are kept on this computer: enter resumes the highlighted one, d deletes it."


class MailboxActions(Screen):
    """A base of MailboxScreen: its keys and actions on messages."""

    if TYPE_CHECKING:
        app: PenmailApp
        client: PenClient
        folder: str
        query_text: str

        def say(self, text: str) -> None: ...
        def reload(self, keep_cursor: bool = True) -> None: ...
        def _update_title(self) -> None: ...
        def refresh_folder_counts(self) -> object: ...

    BINDINGS = [
        Binding("t", "tag", "Tag or untag", show=False, id="mailbox.tag"),
        Binding("asterisk", "tag_matching", "Tag all that match", show=False, id="mailbox.tag_matching"),
        Binding("ctrl+t", "untag_all", "Untag all", show=False, id="mailbox.untag_all"),
        Binding("z", "undo", "Undo move", show=False, id="mailbox.undo"),
        Binding("r", "reply('reply')", "Reply", show=False, id="mailbox.reply"),
        Binding("R", "reply('reply_all')", "Reply all", show=False, id="mailbox.reply_all"),
        Binding("f", "reply('forward')", "Forward", show=False, id="mailbox.forward"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.tags = bulk.Tags()
        self.last_move: bulk.LastMove | None = None
        self._store: DraftStore | None = None  # made in a thread when first needed

    # ------------------------------------------------------------ helpers

    @property
    def _list(self) -> MessageList:
        return self.query_one(MessageList)

    def _show_tags(self) -> None:
        self._list.show_tags(self.tags.ids)
        self._update_title()

    def tag_note(self) -> str:
        """For the title: how many rows are tagged, if any."""
        return f", {len(self.tags)} tagged" if self.tags else ""

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

    # ------------------------------------------------------------ tags

    def action_tag(self) -> None:
        summary = self._list.highlighted
        if summary is None:
            self.say("No message is highlighted.")
            return
        tagged = self.tags.toggle(summary)
        self._show_tags()
        subject = one_line(summary.subject, 60) or "(no subject)"
        self.say(f"{'Tagged' if tagged else 'Untagged'} \u201c{subject}\u201d; {bulk.plural(len(self.tags), 'row')} "
                 f"tagged.")
        self._list.action_cursor_down()  # as in mutt: on to the next row

    def action_untag_all(self) -> None:
        n = self.tags.clear()
        self._show_tags()
        self.say(f"Untagged {bulk.plural(n, 'row')}." if n else "No row is tagged.")

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
        self.say(f"Tagged {bulk.plural(added, 'more row')} {where}{capped}; "
                 f"{bulk.plural(len(self.tags), 'row')} tagged.")

    # ------------------------------------------------------------ moves, read state, undo

    def action_toggle_unread(self) -> None:
        if self.folder == DRAFTS:
            self.say(IN_DRAFTS)
            return
        targets = self._targets()
        if targets:
            # Any unread among them: all read; else all unread (one row: its opposite).
            self._change(targets, unread=not any(s.unread for s in targets))

    def action_move(self, folder: str) -> None:
        if self.folder == DRAFTS:
            if folder == "trash":
                self.action_delete()
            else:
                self.say(IN_DRAFTS)
            return
        targets = [s for s in self._targets() if s.folder != folder]
        if targets:
            self._change(targets, folder=folder)
        elif self.tags:
            self.say(f"The tagged messages are in {bulk.folder_name(folder)} already.")

    @work(group="mailbox-action", exit_on_error=False)
    async def _change(self, targets: list[Summary], **change) -> None:
        if len(targets) > 1:  # one request a message: say what is under way
            self.say(f"Changing {bulk.plural(len(targets), 'message')} ...")
        outcome = await bulk.apply(targets, lambda s: self.client.update_message(s.id, **change))
        if "folder" in change:
            to = change["folder"]
            before = {s.id: s.folder for s in targets}
            if outcome.done:
                self.last_move = bulk.LastMove(to, tuple((s, before[s.id]) for s in outcome.done))
            self.tags.discard(s.id for s in outcome.done)  # they left this folder
            self._show_tags()
            self.say(bulk.sentence(outcome, f"Moved {{n}} to {bulk.folder_name(to)}",
                                   then="press z to undo" if any(before[s.id] in bulk.MOVABLE
                                                                  for s in outcome.done) else ""))
            self.reload()
            return
        for updated in outcome.done:
            self._list.replace(updated)
        self.tags.refresh(outcome.done)  # their read state, for the next u
        self.refresh_folder_counts()
        state = "unread" if change.get("unread") else "read"
        self.say(bulk.sentence(outcome, f"Marked {{n}} {state}"))

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

    def action_delete(self) -> None:
        if self.folder not in ("trash", DRAFTS):
            self.say("Delete for good works in Trash; press d to move to Trash first.")
            return
        targets = self._targets()
        if not targets:
            return
        from tui.screens.confirm import ConfirmScreen

        what = "draft" if self.folder == DRAFTS else "message"
        if len(targets) == 1:
            name = f"the {what} \u201c{one_line(targets[0].subject, 60) or '(no subject)'}\u201d"
        else:
            name = f"the {bulk.plural(len(targets), 'tagged ' + what)}"
        question = f"Delete {name} for good? This cannot be undone."

        def answered(yes: bool | None) -> None:
            if not yes:
                self.say("Nothing was deleted.")
            elif self.folder == DRAFTS:
                self._delete_drafts(targets)
            else:
                self._delete(targets)

        self.app.push_screen(ConfirmScreen(question, yes="Yes, delete for good"), answered)

    @work(group="mailbox-action", exit_on_error=False)
    async def _delete(self, targets: list[Summary]) -> None:
        if len(targets) > 1:
            self.say(f"Deleting {bulk.plural(len(targets), 'message')} ...")
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
        self.app.key_gate.wait_for(self._reply(kind, summary).wait(), 30, "the reply")

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

    def _account(self) -> str | None:
        user = self.client.user
        return account_key(self.client.server, user.email) if user is not None else None

    def _drafts(self) -> DraftStore:
        """The store (blocking: it makes its folder; call in a thread)."""
        if self._store is None:
            self._store = DraftStore()
        return self._store

    async def _drafts_page(self, cursor: str | None, limit: int, order: str) -> Page:
        user = self.client.user
        me = Address(user.email, user.display_name or None) if user is not None else Address("")
        return await asyncio.to_thread(lambda: draft_page(self._drafts(), self._account(), me, cursor, limit, order))

    def count_drafts(self) -> None:
        """The sidebar's count of drafts, read in a thread."""
        if self.client.user is not None:
            self._count_drafts()

    @work(thread=True, exclusive=True, group="drafts-count", exit_on_error=False)
    def _count_drafts(self) -> None:
        n = len(self._drafts().list(account=self._account()))
        self.app.call_from_thread(self.show_drafts_count, n)

    def show_drafts_count(self, n: int) -> None:
        """Overridden by the screen: where the count is shown."""

    def open_draft(self, summary: Summary) -> None:
        # The keys typed after enter wait for the draft to open (or are not used if it cannot).
        self.app.key_gate.wait_for(self._open_draft(summary.id).wait(), 10, "the draft")

    @work(thread=True, group="drafts-open", exit_on_error=False)
    def _open_draft(self, draft_id: str) -> bool:
        draft = self._drafts().load(draft_id)
        if draft is None or not draft.belongs_to(self._account() or ""):
            self.app.call_from_thread(self.say, "That draft is gone (sent or deleted elsewhere); the list is "
                                                "read again.")
            self.app.call_from_thread(self.reload)
            return False
        self.app.call_from_thread(self.app.post_message, DraftResumeRequested(draft))
        return True

    @work(thread=True, group="mailbox-action", exit_on_error=False)
    def _delete_drafts(self, targets: list[Summary]) -> None:
        store = self._drafts()
        gone = [s for s in targets if store.delete(s.id)]
        outcome = bulk.Outcome(done=gone, failed=[(s, "It was gone already.") for s in targets if s not in gone])
        self.app.call_from_thread(self._drafts_deleted, outcome)

    def _drafts_deleted(self, outcome: bulk.Outcome) -> None:
        self.tags.discard(s.id for s in outcome.done)
        self._show_tags()
        self.say(bulk.sentence(outcome, "Deleted {n}", what="draft"))
        self.reload()
        self.count_drafts()
