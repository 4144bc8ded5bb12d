"""The reader: headers, attachments, then the body (HTML through html2text in a worker,
with limits; the text part when that fails). Links are listed and numbered and opened
only on request, and only http and https. Opening marks the message read.

Attachments are a list to move through; the highlighted one, or all, are saved to the
download folder or a folder typed in (tui.downloads does the streaming, resuming and
checking off the event loop), with a progress bar that can be stopped; a saved copy opens
with the system's opener only on request. The sender's copy leads to its notifications."""

from __future__ import annotations

import asyncio
import webbrowser
from dataclasses import replace
from datetime import datetime
from pathlib import Path

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Input, OptionList, TextArea

from tui.compose import remember_seen
from tui.downloads import DownloadCancelled, download_all, save_attachment
from tui.downloads.opener import open_file
from tui.files import safe_filename
from tui.pen_client import Attachment, Gone, Message, PenClient, PenError, Summary
from tui.safe_text import clean, one_line
from tui.screens.messages import ComposeRequested, MessageOpenRequested, NotificationsRequested, SummaryChanged
from tui.terminal.key_gate import KeyGate
from tui.text.end_date import EXAMPLES, EndDateError, field_text, now_sentence, parse_end_date
from tui.text.format import body_text, header_text, withdrawn_sentence
from tui.text.htmlbody import allowed_link
from tui.widgets.download_panel import DownloadPanel
from tui.widgets.footer import KeyFooter
from tui.widgets.reader_attachments import ReaderAttachmentList
from tui.widgets.reading_text import ReadingText
from tui.widgets.recipient_choices import Choice
from tui.widgets.safe_static import SafeStatic
from tui.widgets.thread_list import ThreadList

LOAD_WAIT_SECONDS = 30.0  # keys typed after a reply asked for while loading wait at most this


__all__ = ["ReaderScreen"]


THREAD_ROWS = 50  # of the conversation, the newest shown in the reader
SHORT_SCREEN = 30  # rows; below this the head's blank lines go, for the body's sake


def head_list_rows(height: int) -> tuple[int, int]:
    """How many rows the attachment list and the conversation show at most, for a terminal
    `height` rows high: they grow with the terminal, at 80x24 3 and 4 (at least 2 and 3), so
    that with headers, both lists and the footer the body keeps about a third of the screen."""
    return max(2, min(5, height // 8)), max(3, min(8, height // 6))


def _count(n: int, what: str) -> str:
    return f"{n} {what}{'s' if n != 1 else ''}"


class ReaderScreen(Screen):


    AUTO_FOCUS = "#body"
    BINDINGS = [
        Binding("escape,q", "back", "Back", id="reader.back"),
        Binding("c", "stop_download", "Stop download", id="reader.stop_download"),
        Binding("r", "reply('reply')", "Reply", id="reader.reply"),
        Binding("R", "reply('reply_all')", "Reply all", id="reader.reply_all"),
        Binding("f", "reply('forward')", "Forward", show=False, id="reader.forward"),
        Binding("u", "mark_unread", "Mark unread", show=False, id="reader.mark_unread"),
        Binding("a", "move('archive')", "Archive", id="reader.archive"),
        Binding("d", "move('trash')", "Trash", id="reader.trash"),
        Binding("o", "open_link", "Open link", id="reader.open_link"),
        Binding("t", "show_text_part", "Text part", show=False, id="reader.text_part"),
        Binding("s", "save('one')", "Save", show=False, id="reader.save"),  # keys listed over the list
        Binding("S", "save('all')", "Save all", show=False, id="reader.save_all"),
        Binding("w", "save_to('one')", "Save to folder", show=False, id="reader.save_to"),
        Binding("W", "save_to('all')", "Save all to folder", show=False, id="reader.save_all_to"),
        Binding("x", "open_saved", "Open saved file", show=False, id="reader.open_saved"),
        Binding("n", "notifications", "Notifications", id="reader.notifications"),
        Binding("V", "withdraw", "Withdraw", show=False, id="reader.withdraw"),
        Binding("e", "end_date", "End date", show=False, id="reader.end_date"),
        Binding("T", "thread", "Thread", show=False, id="reader.thread"),
        Binding("f1,question_mark", "app.help", "Help", id="reader.help"),
    ]

    def __init__(self, client: PenClient, summary: Summary, *, keys: KeyGate, download_dir: Path) -> None:
        """`keys` is the app's key gate: the keys typed after a reply asked for while the
        message loads wait for it. `download_dir` is where attachments go (the settings')."""
        super().__init__()
        self.client, self.summary, self.keys = client, summary, keys
        self.download_dir = download_dir
        self.message: Message | None = None
        self.links: list[str] = []
        self.body_shown = False
        self.last_saved: Path | None = None
        self._cancel: asyncio.Event | None = None
        self._save_which = "one"  # what the folder prompt saves: "one" or "all"
        self._focus_before: Widget | None = None
        self._shown = asyncio.Event()  # the message is shown, or could not be fetched
        self._when_shown: str | None = None  # the reply asked for while it was loading
        self._hint = ""  # what the status line says of the message once it is shown

    def compose(self) -> ComposeResult:
        with Vertical(id="reader-head"):
            yield SafeStatic(f"Subject: {one_line(self.summary.subject)}\nLoading the message ...", id="headers")
            yield SafeStatic("Attachments (s save, S save all, w or W save elsewhere, x open):",
                             id="reader-attachments-title")
            yield ReaderAttachmentList(id="reader-attachments")
            yield SafeStatic("", id="reader-thread-title")
            yield ThreadList(id="reader-thread")
        yield DownloadPanel(id="download-panel")
        yield ReadingText("", id="body")
        yield Input(placeholder="Link number to open in your browser; escape cancels", id="link-number")
        yield Input(placeholder="Folder to save in; enter saves, escape cancels", id="save-folder")
        yield Input(placeholder=f"End date ({EXAMPLES}), or none to remove it; enter sets it, escape cancels",
                    id="end-date")
        yield SafeStatic("", id="reader-status")
        yield KeyFooter()

    def on_mount(self) -> None:
        self.query_one("#link-number", Input).display = False
        self.query_one("#save-folder", Input).display = False
        self.query_one("#end-date", Input).display = False
        self.query_one("#reader-attachments-title").display = False
        self.query_one(ReaderAttachmentList).display = False
        self.query_one("#reader-thread-title").display = False
        self.query_one(ThreadList).display = False
        self.query_one("#body", TextArea).focus()
        self._load()

    def on_resize(self) -> None:
        height = self.size.height
        attachments, thread = head_list_rows(height)
        self.query_one(ReaderAttachmentList).styles.max_height = attachments
        self.query_one(ThreadList).styles.max_height = thread
        self.set_class(height < SHORT_SCREEN, "-short")

    def say(self, text: str) -> None:
        self.query_one("#reader-status", SafeStatic).show(text)

    @property
    def downloading(self) -> bool:
        return self._cancel is not None

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # Keys that only mean something now are hidden (and inactive) otherwise.
        if action == "stop_download":
            return self.downloading
        if action in ("notifications", "withdraw", "end_date"):
            return self.own
        if action in ("reply", "open_link", "show_text_part") and self.unreadable:
            return False  # nothing to reply to or open: withdrawn, expired, or not found
        if action == "thread":
            return bool(self.query_one(ThreadList).summaries)
        return True

    @property
    def unreadable(self) -> bool:
        """The PEN did not give the message (withdrawn, expired, gone): only leaving it, moving
        it, and the keys of every screen remain."""
        return self._shown.is_set() and self.message is None

    @property
    def own(self) -> bool:
        """The person sent this message: only the sender's copy has notifications."""
        return bool(self.message and self.message.notifications)

    @work(exclusive=True, group="reader", exit_on_error=False)
    async def _load(self) -> None:
        try:
            message = await self.client.get_message(self.summary.id)
        except PenError as exc:
            if isinstance(exc, Gone):  # withdrawn or past its end date: the list says so too
                self.query_one("#headers", SafeStatic).show(
                    f"Subject: {one_line(self.summary.subject) or '(no subject)'}\n{exc.message}")
                if self.summary.gone != exc.code:
                    self.post_message(SummaryChanged(replace(self.summary, gone=exc.code, snippet="")))
            else:
                self.query_one("#headers", SafeStatic).show(exc.message)
            self._when_shown = None
            self._shown.set()
            self.refresh_bindings()
            return
        self.message = message
        self.query_one("#headers", SafeStatic).show(header_text(message))
        attachments = self.query_one(ReaderAttachmentList)
        attachments.show_attachments(message.attachments)
        attachments.display = bool(message.attachments)
        self.query_one("#reader-attachments-title").display = bool(message.attachments)
        if message.attachments and self.focused is self.query_one("#body"):
            attachments.focus()  # its "> 1." row is the highlighted thing: the cursor goes there
        self.refresh_bindings()
        self._load_thread(message)
        if message.body_html:  # the conversion has a deadline, off the event loop
            body, self.links, note = await asyncio.to_thread(body_text, message)
        else:
            body, self.links, note = body_text(message)
        self.query_one("#body", TextArea).load_text(body or "(This message has no text.)")
        self.body_shown = True
        if self._when_shown is not None:  # r pressed while loading: the reply opens now
            self.post_message(ComposeRequested(self._when_shown, message))
            self._when_shown = None
        self._shown.set()
        hints = [note or (f"{_count(len(self.links), 'link')}; press o to open one." if self.links else "")]
        if message.notifications:
            hints.append("You sent this message; press n to see who was notified and who opened it, V to "
                         "withdraw it, e to set its end date.")
        self._hint = " ".join(h for h in hints if h)
        self.say(self._hint)
        if message.unread:
            try:
                updated = await self.client.update_message(message.id, unread=False)
                self.post_message(SummaryChanged(updated))
            except PenError as exc:
                self.say(exc.message)
        # The people on it complete addresses when composing (in a thread; never the user).
        await asyncio.to_thread(remember_seen, [message.sender, *message.to, *message.cc],
                                self.client.user.email if self.client.user else None)

    @work(exclusive=True, group="reader-thread", exit_on_error=False)
    async def _load_thread(self, message: Message) -> None:
        """The rest of the conversation: its newest THREAD_ROWS messages, oldest first."""
        try:
            page = await self.client.thread_messages(message.thread_id, limit=THREAD_ROWS, order="newest")
        except PenError as exc:
            self.say(exc.message)
            return
        if page.total <= 1:
            return
        shown = "" if page.total <= len(page.items) else f", the newest {len(page.items)} shown"
        self.query_one("#reader-thread-title", SafeStatic).show(
            f"This conversation: {_count(page.total, 'message')}{shown} (T goes here, enter opens one):")
        thread = self.query_one(ThreadList)
        me = self.client.user.email if self.client.user else None
        thread.show_thread(tuple(reversed(page.items)), message.id, me)
        thread.display = True
        self.query_one("#reader-thread-title").display = True
        self.refresh_bindings()

    def action_thread(self) -> None:
        self.query_one(ThreadList).focus()

    @on(OptionList.OptionSelected, "#reader-thread")
    def _thread_message_chosen(self, event: OptionList.OptionSelected) -> None:
        summary = self.query_one(ThreadList).highlighted_summary
        if summary is None or summary.id == self.summary.id:
            self.say("This is the message you are reading.")
            return
        self.post_message(MessageOpenRequested(summary, instead_of=self))

    def _hide_input(self, field: Input) -> None:
        field.display = False
        target = self._focus_before if self._focus_before is not None and self._focus_before.is_attached else None
        (target or self.query_one("#body", TextArea)).focus()
        self._focus_before = None

    def action_back(self) -> None:
        for name in ("#link-number", "#save-folder", "#end-date"):
            field = self.query_one(name, Input)
            if field.display:
                self._hide_input(field)
                self.say(self._hint)  # what the field asked goes with it; the message's own hint is back
                return
        if self.downloading:
            self.action_stop_download()
            return
        self.app.pop_screen()

    def action_show_text_part(self) -> None:
        if self.message:
            self.query_one("#body", TextArea).load_text(clean(self.message.body_text) or "(no text part)")
            self.say("Showing the text part.")

    async def _replying(self) -> bool:
        """Once the message is shown: whether the reply asked for while loading opened."""
        await self._shown.wait()
        return self.message is not None

    def action_reply(self, kind: str) -> None:
        if self.message is None or not self.body_shown:
            # Once it is shown; the keys typed after this one wait for the reply to open.
            self._when_shown = kind
            self.say("Replying once the message is loaded ...")
            self.keys.wait_for(self._replying(), LOAD_WAIT_SECONDS, "the reply")
            return
        self.post_message(ComposeRequested(kind, self.message))

    def action_mark_unread(self) -> None:
        self._change(unread=True)

    def action_move(self, folder: str) -> None:
        self._change(folder=folder)

    @work(group="reader-action", exit_on_error=False)
    async def _change(self, **change) -> None:
        try:
            updated = await self.client.update_message(self.summary.id, **change)
        except PenError as exc:
            self.say(exc.message)
            return
        self.post_message(SummaryChanged(updated, moved="folder" in change, before=self.summary.folder))
        if "folder" in change:
            self.app.pop_screen()
        else:
            self.say("Marked unread.")

    # ------------------------------------------------------------ links

    def action_open_link(self) -> None:
        if not self.links:
            self.say("This message has no links to open.")
            return
        field = self.query_one("#link-number", Input)
        self._focus_before = self.focused
        field.display = True
        field.value = ""
        field.focus()

    @on(Input.Submitted, "#link-number")
    def _open_number(self, event: Input.Submitted) -> None:
        self._hide_input(event.input)
        value = event.value.strip()
        if not value.isdigit() or not 1 <= int(value) <= len(self.links):
            self.say(f"Type a link number from 1 to {len(self.links)}.")
            return
        url = self.links[int(value) - 1]
        if not allowed_link(url):
            self.say("Only http and https links are opened.")
            return
        self._open(url)

    @work(thread=True, group="open-link", exit_on_error=False)
    def _open(self, url: str) -> None:
        opened = webbrowser.open(url, new=2)
        self.app.call_from_thread(self.say, f"Opened link in your browser: {one_line(url, 200)}" if opened
                                  else "No web browser is set up here; the link is listed in the message.")

    # ------------------------------------------------------------ attachments

    def _wanted(self, which: str) -> tuple[Attachment, ...] | None:
        """The attachments a save key means, or None (with a sentence) when it cannot go."""
        if self.message is None:
            self.say("The message is still loading.")
            return None
        if not self.message.attachments:
            self.say("This message has no attachments.")
            return None
        if self.downloading:
            self.say("A download is running; press c to stop it first.")
            return None
        if which == "all":
            return self.message.attachments
        highlighted = self.query_one(ReaderAttachmentList).highlighted_attachment
        return (highlighted,) if highlighted is not None else None

    def action_save(self, which: str) -> None:
        wanted = self._wanted(which)
        if wanted:
            self._download(wanted, Path(self.download_dir).expanduser())

    @on(OptionList.OptionSelected, "#reader-attachments")
    def _attachment_chosen(self, event: OptionList.OptionSelected) -> None:
        self.action_save("one")

    def action_save_to(self, which: str) -> None:
        if self._wanted(which) is None:
            return
        self._save_which = which
        field = self.query_one("#save-folder", Input)
        field.placeholder = ("Folder to save every attachment in" if which == "all" else
                             "Folder to save the highlighted attachment in") + "; enter saves, escape cancels"
        field.value = str(self.download_dir)
        self._focus_before = self.focused
        field.display = True
        field.focus()
        field.cursor_position = len(field.value)

    @on(Input.Submitted, "#save-folder")
    def _folder_given(self, event: Input.Submitted) -> None:
        self._hide_input(event.input)
        value = event.value.strip()
        if not value:
            self.say("Type the folder to save in, or press s to use the download folder.")
            return
        wanted = self._wanted(self._save_which)
        if wanted:
            self._download(wanted, Path(value).expanduser())

    def action_stop_download(self) -> None:
        if self._cancel is None:
            self.say("No download is running.")
            return
        self._cancel.set()

    @work(exclusive=True, group="reader-download", exit_on_error=False)
    async def _download(self, attachments: tuple[Attachment, ...], folder: Path) -> None:
        """Save one or all attachments; the panel follows, and ends with one sentence."""
        panel = self.query_one(DownloadPanel)
        listing = self.query_one(ReaderAttachmentList)
        message = self.message
        first = attachments[0]
        self._cancel = cancel = asyncio.Event()
        panel.begin(safe_filename(first.filename), first.size, len(attachments))
        self.refresh_bindings()
        try:
            if len(attachments) == 1:
                results = [await save_attachment(self.client, message.id, first, folder,
                                                 progress=panel.show_progress, cancel=cancel)]
            else:
                results = await download_all(self.client, message, folder, progress=panel.show_progress,
                                             cancel=cancel)
            paths = [path for path, _ in results]
            already = sum(1 for _, was in results if was)
        except asyncio.CancelledError:
            # Leaving the message stops the download; what arrived stays, for the next save.
            self._cancel = None
            self._tell(f"The download of {safe_filename(first.filename)} stopped when you left the message; "
                       f"what arrived so far is kept, so saving it again goes on from there.", always=True)
            raise
        except PenError as exc:
            saved = list(getattr(exc, "saved", []))
            for attachment, path in zip(attachments, saved):
                listing.mark_saved(attachment, path)
            sentence = exc.message
            if saved:
                were = "was" if len(saved) == 1 else "were"
                sentence = (f"{sentence.rstrip('.')}; {len(saved)} of {len(attachments)} attachments {were} "
                            f"saved in {saved[0].parent} before that.")
            if not isinstance(exc, DownloadCancelled):
                self.app.bell()
        else:
            for attachment, path in zip(attachments, paths):
                listing.mark_saved(attachment, path)
            self.last_saved = paths[0] if len(paths) == 1 else None
            if len(paths) == 1 and already:
                sentence = (f"{paths[0].name} is already saved in {paths[0].parent} (the same sha256), so nothing "
                            f"was written; press x to open it.")
            elif len(paths) == 1:
                sentence = f"Saved {paths[0].name} in {paths[0].parent}; press x to open it."
            else:
                were = f" ({already} of them already there, not written again)" if already else ""
                sentence = (f"Saved {_count(len(paths), 'attachment')} in {paths[0].parent}{were}; "
                            f"press x to open the highlighted one.")
        self._cancel = None
        panel.end(sentence)
        self.refresh_bindings()
        self._tell(sentence)

    def _tell(self, sentence: str, always: bool = False) -> None:
        """A toast too when the reader is not in front (the panel is out of sight)."""
        if always or self.app.screen is not self:
            try:
                self.notify(sentence, title="Download", timeout=12, markup=False)
            except Exception:  # the app is closing: nobody to tell
                pass

    def action_open_saved(self) -> None:
        listing = self.query_one(ReaderAttachmentList)
        path = listing.saved_path(listing.highlighted_attachment) or self.last_saved
        if path is None:
            self.say("Save the attachment first (s); then x opens the saved copy.")
            return
        self.say(f"Opening {path.name} ...")
        self._open_file(path)

    @work(thread=True, group="open-file", exit_on_error=False)
    def _open_file(self, path: Path) -> None:
        self.app.call_from_thread(self.say, open_file(path))

    # ------------------------------------------------------------ notifications

    def action_notifications(self) -> None:
        if self.message is None:
            self.say("The message is still loading.")
        elif not self.message.notifications:
            self.say("Only the sender of a message can follow its notifications.")
        else:
            self.post_message(NotificationsRequested(self.message.id, self.message.subject))

    # ------------------------------------------------------------ after sending: withdraw, end date

    def action_withdraw(self) -> None:
        from tui.screens.withdraw import WithdrawScreen

        if not self.own or self.message is None:
            self.say("Only the sender of a message can withdraw it.")
            return
        message = self.message
        seen: dict[str, Choice] = {}
        for n in message.notifications:
            seen.setdefault(n.recipient.email.lower(), Choice(n.recipient.email, n.recipient.name, n.kind,
                                                              withdrawn=n.revoked_at is not None))

        def answered(withdrawal) -> None:
            if withdrawal is None:
                self.say("Not withdrawn; the recipients can still read it.")
            else:
                self._withdraw(withdrawal.recipients)

        self.app.push_screen(WithdrawScreen(message.subject, list(seen.values())), answered)

    @work(group="reader-action", exit_on_error=False)
    async def _withdraw(self, recipients: tuple[str, ...] | None) -> None:
        self.say("Withdrawing ...")
        try:
            message = await self.client.revoke(self.summary.id, list(recipients) if recipients else None)
        except PenError as exc:
            self.say(exc.message)
            return
        self._updated(message)
        self.say(withdrawn_sentence(message, recipients))

    def action_end_date(self) -> None:
        if not self.own or self.message is None:
            self.say("Only the sender of a message can set its end date.")
            return
        field = self.query_one("#end-date", Input)
        self._focus_before = self.focused
        field.value = field_text(self.message.expires_at)
        field.display = True
        field.focus()
        field.cursor_position = len(field.value)
        self.say(f"Type the end date ({EXAMPLES}), or none to remove it; after it the recipients can no longer "
                 f"read the message. Enter sets it, escape cancels.")

    @on(Input.Submitted, "#end-date")
    def _end_date_given(self, event: Input.Submitted) -> None:
        try:
            when = parse_end_date(event.value)
        except EndDateError as exc:
            self.say(str(exc))  # the field stays, with what was typed, to be corrected
            return
        self._hide_input(event.input)
        self._set_end_date(when)

    @work(group="reader-action", exit_on_error=False)
    async def _set_end_date(self, when: datetime | None) -> None:
        try:
            message = await self.client.set_expiry(self.summary.id, when)
        except PenError as exc:
            self.say(exc.message)
            return
        self._updated(message)
        self.say(now_sentence(message.expires_at))

    def _updated(self, message: Message) -> None:
        """The sender's copy as the PEN answered a change: the headers show it."""
        self.message = message
        self.query_one("#headers", SafeStatic).show(header_text(message))
        self.refresh_bindings()

