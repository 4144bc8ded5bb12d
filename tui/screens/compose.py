"""Writing a message: a new one, a reply, a reply to all or a forward, kept as a draft on
disk while it is written (within two seconds of a change, and whenever the screen is left)
so that a crash loses nothing. Sending uses the draft's Idempotency-Key, so a retry after a
lost answer never sends twice; the draft keeps its files' upload ids, so a draft resumed
after a crash sends the same body again (the PEN answers with the first message) instead of
new uploads under the old key. A draft is sent only from the account that wrote it. Every
call to the PEN, and every draft write, runs in a worker; the screen reacts to what comes
back."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from typing import Any

from textual import events, on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Input, TextArea

from tui.compose import (
    AddressBook,
    format_address,
    forward_body,
    forward_subject,
    quote_body,
    reply_recipients,
    reply_subject,
    validate_subject,
)
from tui.drafts import Draft, DraftStore, account_key
from tui.pen_client import Address, Attachment, Message, PenClient, PenError, parse_time, rfc3339
from tui.safe_text import clean, one_line
from tui.screens.confirm import ConfirmScreen
from tui.screens.messages import NOTICE_SECONDS, NotificationsRequested
from tui.text.end_date import EXAMPLES, EndDateError, field_text, parse_end_date
from tui.widgets.address_field import AddressField, SubjectField
from tui.widgets.attachments import AttachmentPanel
from tui.widgets.external_editor import edit_text
from tui.widgets.footer import KeyFooter
from tui.widgets.safe_static import SafeStatic
from tui.writing.sender import NotSent, Sender, draft_entries
from tui.writing.uploads import Entry, Uploader

AUTOSAVE_SECONDS = 1.5  # a change is on disk within this (plus the write itself)
TITLES = {"new": "New message", "reply": "Reply", "reply_all": "Reply to all", "forward": "Forward",
          "draft": "Draft"}
ADDRESS_FIELDS = (("to", "To"), ("cc", "Cc"), ("bcc", "Bcc"))
CHECKED_FIELDS = ADDRESS_FIELDS + (("subject", "Subject"), ("expires", "Ends"))  # by _validate, named in its sentences
SENT_BEFORE = ("This draft was already sent in an earlier session, so it was not sent again and is kept "
               "(look in Sent; F12 then y discards it).")


def _reply_text(m: Message) -> str:
    if m.body_text.strip() or not m.body_html:
        return m.body_text
    from tui.text.htmlbody import HtmlConversionError, html_to_text

    try:
        return html_to_text(m.body_html, timeout=1.0)[0]  # on the screen's thread: keep it short
    except HtmlConversionError:
        return ""


class ComposeScreen(Screen):


    AUTO_FOCUS = None  # on_mount: To when it is empty, else the body
    # Keys no focused field takes (the body's TextArea has f6 and f7) and terminals pass on.
    BINDINGS = [
        Binding("f9,ctrl+enter", "send", "Send", id="compose.send"),
        Binding("f3", "attach", "Attach", id="compose.attach"),
        Binding("f8", "remove_attachment", "Remove file", id="compose.remove_attachment"),
        Binding("f4", "editor", "Editor", id="compose.editor"),
        Binding("f5", "end_date", "End date", show=False, id="compose.end_date"),
        Binding("f2", "save", "Save draft", show=False, id="compose.save"),
        Binding("f12", "discard", "Discard draft", show=False, id="compose.discard"),
        Binding("escape", "close", "Close", id="compose.close"),
        Binding("f1", "app.help", "Help", id="compose.help"),
    ]

    def __init__(self, client: PenClient, draft: Draft, *, kind: str = "draft", store: DraftStore | None = None,
                 forwarded: Sequence[Attachment] = (), seen: list | None = None) -> None:
        super().__init__()
        self.client, self.draft, self.kind = client, draft, kind
        self.uploader = Uploader(client)  # its I/O runs in this screen's workers
        self.store = store if store is not None else DraftStore()
        self.book: AddressBook | None = None  # loaded in a thread on mount
        self._seen = list(seen or [])  # addresses to remember once the book is loaded
        self._forwarded = {a.id: a for a in forwarded}
        self.touched = kind == "draft"  # a resumed draft is on disk already; a new one once edited
        self.closed = False  # sent or discarded: never written again
        self.sending = False
        self.definite_failure = False  # the PEN refused the content: the next edit gets a new key
        self.problem: str | None = None
        self._info = ""
        self._save_timer: Timer | None = None
        self._save_lock = threading.Lock()
        self._seq = self._saved_seq = 0
        self.sent_before = False  # the PEN says this draft's key went with another body: never again
        self.account = account_key(client.server, client.user.email) if client.user else None
        if draft.account is None and self.account is not None:
            draft.account = self.account  # new, or written before drafts had an account: now this one's

    @classmethod
    def start(cls, client: PenClient, kind: str = "new", message: Message | None = None,
              store: DraftStore | None = None) -> ComposeScreen:
        """A new draft: empty, or a reply, reply-all or forward of `message`."""
        if kind not in TITLES or kind == "draft" or (kind != "new" and message is None):
            raise ValueError(f"cannot compose {kind!r}")
        draft, seen = Draft(), []
        forwarded: Sequence[Attachment] = ()
        if message is not None and kind != "new":
            seen = [message.sender, *message.to, *message.cc]
            if kind == "forward":
                draft.subject = forward_subject(message.subject)
                draft.body = "\n\n" + forward_body(message)
                draft.forward_of = message.id
                draft.forward_attachment_ids = [a.id for a in message.attachments]
                forwarded = message.attachments
            else:
                me = client.user.email if client.user else ""
                to, cc = reply_recipients(message, me, reply_all=kind == "reply_all")
                draft.to, draft.cc = [format_address(a) for a in to], [format_address(a) for a in cc]
                draft.subject = reply_subject(message.subject)
                draft.body = "\n\n" + quote_body(_reply_text(message), message.sent_at,
                                                 message.sender.name or message.sender.email)
                draft.in_reply_to = message.id
        return cls(client, draft, kind=kind, store=store, forwarded=forwarded, seen=seen)

    # ------------------------------------------------------------ layout

    def compose(self) -> ComposeResult:
        d = self.draft
        yield SafeStatic("", id="compose-title")
        with Vertical(id="compose-head"):
            for name, label in ADDRESS_FIELDS:
                with Horizontal(classes="compose-row"):
                    yield SafeStatic(f" {label}:", classes="compose-label", id=f"{name}-label")
                    yield AddressField(", ".join(one_line(a) for a in getattr(d, name)), lambda: self.book,
                                       self._people, id=name, classes="compose-address",
                                       placeholder="name@example.org, ...; right arrow completes")
            with Horizontal(classes="compose-row"):
                yield SafeStatic(" Subject:", classes="compose-label", id="subject-label")
                yield SubjectField(clean(d.subject), id="subject")
            with Horizontal(classes="compose-row", id="expires-row"):
                yield SafeStatic(" Ends:", classes="compose-label", id="expires-label")
                yield Input(_end_date_field(d.expires_at), compact=True, select_on_focus=False, id="expires",
                            placeholder=f"no end date; {EXAMPLES} (readable until then)")
            yield AttachmentPanel(self._entries(), id="compose-files")
        yield TextArea(clean(d.body), soft_wrap=True, show_line_numbers=False, tab_behavior="focus",
                       id="compose-body")
        yield SafeStatic("", id="compose-status")
        yield KeyFooter()

    def _entries(self) -> list[Entry]:
        return draft_entries(self.draft, self._forwarded)

    def on_mount(self) -> None:
        # The end date's row shows once one is set, or F5 asks for it.
        self.query_one("#expires-row").display = bool(self.draft.expires_at)
        self._show_title()
        self._load_book()
        self._start_files()
        self._validate()
        if not self.query_one("#to", AddressField).value:
            self.query_one("#to").focus()
        else:
            body = self.query_one("#compose-body", TextArea)
            body.focus()
            body.move_cursor((0, 0))

    def _field(self, name: str) -> AddressField:
        return self.query_one(f"#{name}", AddressField)

    def say(self, text: str) -> None:
        self._info = text
        self._show_status()

    def _show_status(self) -> None:
        # The latest news wins: a sentence said, or else what is wrong with the fields.
        for status in self.query("#compose-status").results(SafeStatic):  # none once the screen is gone
            status.show(self._info or self.problem or "")

    def _show_title(self, saved: str = "") -> None:
        who = self.client.user.email if self.client.user else ""
        for title in self.query("#compose-title").results(SafeStatic):
            title.show(f"{TITLES[self.kind]}  from {who}  {saved}".rstrip())

    # ------------------------------------------------------------ workers that fetch

    @property
    def _me(self) -> str | None:
        return self.client.user.email if self.client.user else None

    async def _people(self, prefix: str) -> list[Address] | None:
        """The PEN's people for an address field's completion; None (the book alone) when it
        cannot say, e.g. an older PEN without GET /addresses or no connection."""
        try:
            return await self.client.addresses(prefix, limit=20)
        except PenError:
            return None

    @work(thread=True, group="compose-book", exit_on_error=False)
    def _load_book(self) -> None:
        book = AddressBook()
        if self._seen:
            book.add_seen(self._seen, self._me)
        self.book = book

    def _start_files(self) -> None:
        entries = self.query_one(AttachmentPanel).entries
        if self.draft.forward_of and any(e.forwarded and e.size is None for e in entries):
            self._name_forwarded()  # a resumed forward: its file names come from the original
        if any(e.record and not e.upload_id for e in entries):
            self._check_resumed()  # a resumed draft: files uploaded in an earlier session
        self._fetch_limit()

    @work(group="attach-limit", exit_on_error=False)
    async def _fetch_limit(self) -> None:
        await self.uploader.limit()

    @work(group="attach-names", exit_on_error=False)
    async def _name_forwarded(self) -> None:
        await self.uploader.name_forwarded(self.query_one(AttachmentPanel), self.draft.forward_of)

    @work(group="attach-check", exit_on_error=False)
    async def _check_resumed(self) -> None:
        await self.uploader.check_resumed(self.query_one(AttachmentPanel))

    @on(AttachmentPanel.AttachRequested)
    def _attach_requested(self, event: AttachmentPanel.AttachRequested) -> None:
        self._attach_file(event.path)

    @work(group="attach", exit_on_error=False)
    async def _attach_file(self, path: str) -> None:
        await self.uploader.attach(self.query_one(AttachmentPanel), path)

    # ------------------------------------------------------------ editing and drafts

    def _collect(self) -> bool:
        """Copy the fields into the draft; True when something changed."""
        entries = self.query_one(AttachmentPanel).entries
        now: dict[str, Any] = {name: self._field(name).items() for name, _ in ADDRESS_FIELDS}
        now.update(subject=self.query_one("#subject", Input).value, body=self.query_one(TextArea).text,
                   expires_at=self._end_date()[0],
                   attachments=[e.path for e in entries if e.path],
                   uploads={e.path: e.record for e in entries if e.path and e.record},
                   forward_attachment_ids=[e.upload_id for e in entries if e.forwarded])
        changed = {k: v for k, v in now.items() if getattr(self.draft, k) != v}
        for key, value in changed.items():
            setattr(self.draft, key, value)
        return bool(changed)

    def _changed(self) -> None:
        if self.closed or not self._collect():
            return
        self.touched = True
        if self.definite_failure:  # the refused content changed: a new sending attempt
            self.draft.new_idempotency_key()
            self.definite_failure = False
        if self._save_timer is None:
            self._save_timer = self.set_timer(AUTOSAVE_SECONDS, self._autosave)

    @on(Input.Changed, ".compose-address")
    @on(Input.Changed, "#subject")
    @on(Input.Changed, "#expires")
    def _field_changed(self) -> None:
        self._validate()
        self._changed()

    @on(TextArea.Changed, "#compose-body")
    def _body_changed(self) -> None:
        self._changed()

    @on(AttachmentPanel.Changed)
    def _files_changed(self) -> None:
        self._changed()

    @on(AttachmentPanel.Said)
    def _files_said(self, event: AttachmentPanel.Said) -> None:
        self.say(event.text)

    @on(SubjectField.Refused)
    def _subject_refused(self, event: SubjectField.Refused) -> None:
        self.say(f"Not pasted: {event.reason} Type the subject on one line.")

    @on(Input.Submitted, ".compose-address")
    @on(Input.Submitted, "#subject")
    def _next_field(self) -> None:
        self.focus_next()

    # ------------------------------------------------------------ the end date

    def _end_date(self) -> tuple[str | None, str | None]:
        """(the end date in the field as the draft keeps it, RFC 3339; or None) and what is
        wrong with the field (or None)."""
        try:
            when = parse_end_date(self.query_one("#expires", Input).value)
        except EndDateError as exc:
            return self.draft.expires_at, str(exc)
        return (rfc3339(when) if when is not None else None), None

    def _fix_end_date(self) -> None:
        """"7d" becomes the time it means now, in the field: from then on the draft's end date
        stays the same, so a retried send sends the same message."""
        field = self.query_one("#expires", Input)
        when, problem = self._end_date()
        if problem is None and field.value.strip() != _end_date_field(when):
            field.value = _end_date_field(when)

    def action_end_date(self) -> None:
        self.query_one("#expires-row").display = True
        self.query_one("#expires").focus()
        self.say(f"Type the end date ({EXAMPLES}); after it the recipients can no longer read the message. "
                 f"Empty: none.")

    @on(Input.Submitted, "#expires")
    def _end_date_submitted(self) -> None:
        self._fix_end_date()
        self.focus_next()

    @on(events.DescendantBlur, "#expires")
    def _end_date_left(self) -> None:
        self._fix_end_date()

    @on(Input.Submitted, "#compose-path")
    def _path_given(self) -> None:
        self.query_one(TextArea).focus()

    def _validate(self) -> None:
        problems = []
        for name, label in CHECKED_FIELDS:
            field = self.query_one(f"#{name}", Input)
            if isinstance(field, AddressField):
                errors = field.addresses()[1]
            elif name == "expires":
                errors = [e for e in [self._end_date()[1]] if e]
            else:
                errors = [e for e in [validate_subject(field.value)] if e]
            field.set_class(bool(errors), "-invalid")
            # The mark is a character, not colour alone.
            self.query_one(f"#{name}-label", SafeStatic).show(f"{'!' if errors else ' '}{label}:")
            problems += [f"{label}: {e}" for e in errors[:1]]
        problem = problems[0] if problems else None
        if problem != self.problem:
            self.problem, self._info = problem, ""
        self._show_status()

    def _autosave(self) -> None:
        self._save_timer = None
        if self.touched and not self.closed:
            self._save_in_thread(*self._snapshot())

    def _snapshot(self) -> tuple[int, Draft]:
        self._seq += 1
        return self._seq, Draft.from_dict(self.draft.to_dict())

    def _write(self, seq: int, copy: Draft) -> str | None:
        """Write one snapshot unless a newer one is on disk already, or the draft is gone."""
        with self._save_lock:
            if self.closed or seq <= self._saved_seq:
                return None
            try:
                self.store.save(copy)
            except OSError as exc:
                return f"The draft could not be saved ({exc.strerror or exc}); keep this screen open."
            self._saved_seq = seq
        return None

    @work(thread=True, group="compose-save", exit_on_error=False)
    def _save_in_thread(self, seq: int, copy: Draft) -> None:
        problem = self._write(seq, copy)
        if problem:
            self.app.call_from_thread(self.say, problem)
        else:
            self.app.call_from_thread(self._show_title, "(draft saved)")

    def _save_now(self) -> None:
        """Leaving the screen: write at once, here (a worker might not outlive the screen)."""
        if self._save_timer is not None:
            self._save_timer.stop()
            self._save_timer = None
        if self.touched and not self.closed:
            problem = self._write(*self._snapshot())
            if problem:
                self.notify(problem, title="Draft", severity="error", timeout=NOTICE_SECONDS, markup=False)

    def on_screen_suspend(self) -> None:
        self._save_now()

    def on_unmount(self) -> None:
        self._save_now()

    def _forget(self) -> None:
        with self._save_lock:
            self.closed = True
            self.store.delete(self.draft.id)

    # ------------------------------------------------------------ actions

    def keep_for_later(self) -> str | None:
        """Quitting or signing out with this screen open: the draft is written now; the
        sentence that says so (None when there was nothing to keep)."""
        if self.closed:
            return None
        self._collect()
        self._save_now()
        if not self.touched:
            return None
        return (f"The draft \u201c{one_line(self.draft.subject, 60) or '(no subject)'}\u201d is kept in Drafts "
                f"(key 5 in the mailbox); it is offered again when you next sign in.")

    def action_close(self) -> None:
        if self.query_one(AttachmentPanel).hide_prompt():
            self.query_one(TextArea).focus()
            return
        kept = self.keep_for_later()
        if kept:
            self.notify(kept, title="Draft", timeout=NOTICE_SECONDS, markup=False)
        self.app.pop_screen()

    def action_save(self) -> None:
        self.touched = True
        self._save_in_thread(*self._snapshot())

    def action_discard(self) -> None:
        def answered(yes: bool | None) -> None:
            if not yes or self.closed:
                return
            self._forget()
            self.notify("The draft was discarded.", title="Draft", timeout=NOTICE_SECONDS, markup=False)
            self.app.pop_screen()

        self.app.push_screen(ConfirmScreen("Discard this draft for good?", yes="Yes, discard it"), answered)

    def action_attach(self) -> None:
        self.query_one(AttachmentPanel).ask_path()

    def action_remove_attachment(self) -> None:
        self.query_one(AttachmentPanel).remove_current()

    def action_editor(self) -> None:
        body = self.query_one(TextArea)
        text, sentence = edit_text(self.app, body.text, self.store.root)
        if text is not None:
            body.load_text(text)
            self._changed()
        self.say(sentence)

    # ------------------------------------------------------------ sending

    def _unsendable(self) -> str | None:
        if self.account is not None and not self.draft.belongs_to(self.account):
            owner = self.draft.account or ""
            return (f"this draft was written as {one_line(owner.rpartition('|')[2], 80)}; "
                    f"sign in as that account to send it.")
        if self.problem:
            return self.problem
        if not any(self._field(name).addresses()[0] for name, _ in ADDRESS_FIELDS):
            return "Add at least one recipient in To, Cc or Bcc."
        if self.query_one(AttachmentPanel).uploading:
            return "An attachment is still uploading; send when the bar is gone."
        return None

    def action_send(self) -> None:
        if self.sending:
            self.say("Sending already; wait for the PEN's answer.")
            return
        if self.sent_before:
            self.say(SENT_BEFORE)
            return
        self._fix_end_date()
        self._collect()
        problem = self._unsendable()
        if problem:
            self.say(f"Not sent: {problem}")
            self._focus_named(problem)
            return
        if not self._asked_about_empty():
            self._start_send()

    def _start_send(self) -> None:
        if self.sending:
            return
        self.sending = True
        self.say("Sending ...")
        self._send()

    def _focus_named(self, problem: str) -> None:
        """After a sentence that names a field ("To: ...", "Add at least one recipient ..."),
        the cursor goes to that field, to correct it there."""
        label = problem.partition(":")[0] if ":" in problem.split(" ", 1)[0] else ""
        names = {label: name for name, label in CHECKED_FIELDS}
        if label in names:
            self.query_one(f"#{names[label]}").focus()
        elif problem.startswith("Add at least one recipient"):
            self.query_one("#to").focus()

    def _focus_refused(self, error: PenError) -> None:
        """The PEN refused a field ("to[0].email", "subject") or an address (a guest's
        recipient): the cursor goes to the field that holds it."""
        named = [key.split("[")[0].split(".")[0] for key in error.fields]
        named += [name for name, _ in ADDRESS_FIELDS
                  if any(a.email.lower() in error.message.lower() for a in self._field(name).addresses()[0])]
        for name in named:
            if name in ("to", "cc", "bcc", "subject"):
                self.query_one(f"#{name}").focus()
                return
            if name == "expires_at":  # an end date that passed while the draft waited
                self.query_one("#expires-row").display = True
                self.query_one("#expires").focus()
                return

    def _asked_about_empty(self) -> bool:
        """No subject asks once before sending (one question, also when the text is empty):
        y sends; n, escape or enter (the default) go back to the Subject field. True while it asks."""
        if self.query_one("#subject", Input).value.strip():
            return False
        no_text = not self.query_one("#compose-body", TextArea).text.strip()
        question = "This message has no subject" + (" and no text" if no_text else "") + ". Send it anyway?"

        def answered(send: bool | None) -> None:
            if send:
                self._start_send()
                return
            self.query_one("#subject").focus()
            self.say("Not sent: type a subject, then press F9 to send.")

        self.app.push_screen(ConfirmScreen(question, yes="Send it"), answered)
        return True

    @work(group="compose-send", exit_on_error=False)
    async def _send(self) -> None:
        try:
            await self._send_draft()
        finally:
            self.sending = False

    async def _keep(self) -> None:
        """The sender's ``keep``: the draft, with its files' upload ids, on disk."""
        if self._collect():
            self.touched = True
        if self.touched:
            await asyncio.to_thread(self._write, *self._snapshot())

    async def _send_draft(self) -> None:
        if self.touched:
            await asyncio.to_thread(self._write, *self._snapshot())
        files = self.query_one(AttachmentPanel)
        fields: dict[str, Any] = {name: self._field(name).addresses()[0] for name, _ in ADDRESS_FIELDS}
        try:
            message = await Sender(self.client, self.uploader, self._keep).send(self.draft, files, fields)
        except NotSent as exc:
            self._not_sent(exc)
            return
        await asyncio.to_thread(self._forget)
        sent_to = [a for people in fields.values() for a in people]
        await asyncio.to_thread((self.book or AddressBook()).add_seen, sent_to, self._me)
        # The app closes this screen: a worker of the screen would end with it.
        self.app.call_later(_after_sent, self.app, self, message)

    def _not_sent(self, exc: NotSent) -> None:
        if exc.kind == NotSent.NOT_UPLOADED:
            return  # the attachment panel has said why
        if exc.kind == NotSent.SENT_BEFORE:
            # This key went with another body before (a session that crashed after sending, before
            # it could forget the draft): sending again would send a second message.
            self.sent_before = True
            self.definite_failure = False  # an edit must not make a new key that would send it twice
            self.say(SENT_BEFORE)
            return
        self.definite_failure = not exc.maybe_sent
        if exc.kind == NotSent.REFUSED and exc.error is not None:
            self._focus_refused(exc.error)
        if exc.kind == NotSent.REFUSED:
            then = "The draft is kept; change what the PEN names and send again."
        elif exc.maybe_sent:
            then = "The draft is kept; press F9 to try again (it cannot go twice)."
        else:
            then = "The draft is kept; press F9 to try again."
        self.say(f"Not sent: {exc.message} {then}")


def _end_date_field(expires_at: str | None) -> str:
    """The draft's end date (RFC 3339) as the field shows it."""
    return field_text(parse_time(expires_at) if expires_at else None)


async def _after_sent(app, screen: ComposeScreen, message: Message) -> None:
    while screen in app.screen_stack:
        await app.pop_screen()
    app.post_message(NotificationsRequested(message.id, message.subject))
