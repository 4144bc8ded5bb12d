"""The reader: headers, attachments, then the body (HTML through html2text in a worker,
with limits; the text part when that fails). Links are listed and numbered and opened
only on request, and only http and https. Opening marks the message read."""

from __future__ import annotations

import asyncio
import webbrowser

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import Footer, Input, TextArea

from tui.htmlbody import HtmlConversionError, allowed_link, html_to_text
from tui.pen_client import Message, PenClient, PenError, Summary
from tui.safe_text import clean, one_line
from tui.widgets.safe_static import SafeStatic


def human_size(n: int) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} bytes"


def header_text(m: Message) -> str:
    def addrs(items) -> str:
        return ", ".join(one_line(str(a)) for a in items) or "-"

    lines = [f"From:    {one_line(str(m.sender))}", f"To:      {addrs(m.to)}"]
    if m.cc:
        lines.append(f"Cc:      {addrs(m.cc)}")
    if m.bcc:
        lines.append(f"Bcc:     {addrs(m.bcc)}")
    when = m.sent_at.astimezone().strftime("%a %d %b %Y %H:%M") if m.sent_at else "-"
    lines += [f"Date:    {when}", f"Subject: {one_line(m.subject) or '(no subject)'}"]
    return "\n".join(lines)


def attachments_text(m: Message) -> str:
    if not m.attachments:
        return ""
    rows = [f"{n}. {one_line(a.filename) or '(no name)'}  ({one_line(a.content_type)}, {human_size(a.size)})"
            for n, a in enumerate(m.attachments, 1)]
    return "Attachments:\n" + "\n".join(rows)


class ReaderScreen(Screen):
    AUTO_FOCUS = "#body"
    BINDINGS = [
        Binding("escape,q", "back", "Back", id="reader.back"),
        Binding("r", "reply('reply')", "Reply", id="reader.reply"),
        Binding("R", "reply('reply_all')", "Reply all", id="reader.reply_all"),
        Binding("f", "reply('forward')", "Forward", show=False, id="reader.forward"),
        Binding("u", "mark_unread", "Mark unread", show=False, id="reader.mark_unread"),
        Binding("a", "move('archive')", "Archive", id="reader.archive"),
        Binding("d", "move('trash')", "Trash", id="reader.trash"),
        Binding("o", "open_link", "Open link", id="reader.open_link"),
        Binding("t", "show_text_part", "Text part", show=False, id="reader.text_part"),
        Binding("f1,question_mark", "app.help", "Help", id="reader.help"),
    ]

    def __init__(self, client: PenClient, summary: Summary) -> None:
        super().__init__()
        self.client, self.summary = client, summary
        self.message: Message | None = None
        self.links: list[str] = []
        self.body_shown = False

    def compose(self) -> ComposeResult:
        with Vertical(id="reader-head"):
            yield SafeStatic(f"Subject: {one_line(self.summary.subject)}\nLoading the message ...", id="headers")
            yield SafeStatic("", id="attachments")
        yield TextArea("", read_only=True, soft_wrap=True, show_line_numbers=False, id="body")
        yield Input(placeholder="Link number to open in your browser; escape cancels", id="link-number")
        yield SafeStatic("", id="reader-status")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#link-number", Input).display = False
        self.query_one("#body", TextArea).focus()
        self._load()

    def say(self, text: str) -> None:
        self.query_one("#reader-status", SafeStatic).show(text)

    @work(exclusive=True, group="reader", exit_on_error=False)
    async def _load(self) -> None:
        try:
            message = await self.client.get_message(self.summary.id)
        except PenError as exc:
            self.query_one("#headers", SafeStatic).show(exc.message)
            return
        self.message = message
        self.query_one("#headers", SafeStatic).show(header_text(message))
        attachments = self.query_one("#attachments", SafeStatic)
        attachments.show(attachments_text(message))
        attachments.display = bool(message.attachments)
        body, note = clean(message.body_text), ""
        if message.body_html:
            try:
                body, self.links = await asyncio.to_thread(html_to_text, message.body_html)
            except HtmlConversionError as exc:
                note = str(exc)
        self.query_one("#body", TextArea).load_text(body or "(This message has no text.)")
        self.body_shown = True
        self.say(note or (f"{len(self.links)} link{'s' if len(self.links) != 1 else ''}; press o to open one."
                                 if self.links else ""))
        if message.unread:
            try:
                updated = await self.client.update_message(message.id, unread=False)
                self.app.summary_changed(updated)
            except PenError as exc:
                self.say(exc.message)

    def action_back(self) -> None:
        link = self.query_one("#link-number", Input)
        if link.display:
            link.display = False
            self.query_one("#body", TextArea).focus()
            return
        self.app.pop_screen()

    def action_show_text_part(self) -> None:
        if self.message:
            self.query_one("#body", TextArea).load_text(clean(self.message.body_text) or "(no text part)")
            self.say("Showing the text part.")

    def action_reply(self, kind: str) -> None:
        if self.message is None:
            self.say("The message is still loading.")
            return
        self.app.compose(kind, self.message)

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
        self.app.summary_changed(updated, moved="folder" in change)
        if "folder" in change:
            self.app.pop_screen()
        else:
            self.say("Marked unread.")

    def action_open_link(self) -> None:
        if not self.links:
            self.say("This message has no links to open.")
            return
        field = self.query_one("#link-number", Input)
        field.display = True
        field.value = ""
        field.focus()

    @on(Input.Submitted, "#link-number")
    def _open_number(self, event: Input.Submitted) -> None:
        event.input.display = False
        self.query_one("#body", TextArea).focus()
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
