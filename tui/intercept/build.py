"""The real message for a notification: fetched with the person's own sign-in and built
by ``tui.export.build_email``, the builder of ``penmail export``."""

from __future__ import annotations

import dataclasses
import html
import re
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from tui.export import _attachment_bytes, _host, build_email, message_id_for, serialize
from tui.intercept.notice import Notice
from tui.safe_text import one_line

DEFAULT_ATTACHMENT_LIMIT = 25 * 1024 * 1024


class Unreadable(Exception):
    """The person cannot read the message on the PEN (a forged notification, or someone
    else's): the notification is left where it is."""


@dataclass
class Replacement:
    data: bytes  # the message, LF line ends (``crlf`` gives CR LF for IMAP)
    message_id: str  # "<id@host>", the header a copy already appended is found by
    pen_id: str
    subject: str
    attachments: int  # attached as MIME parts
    left_on_pen: int  # over the limit: named in the text instead
    sent_at: datetime | None = None  # the Date header's time

    @property
    def crlf(self) -> bytes:
        return re.sub(rb"\r?\n", b"\r\n", self.data)

    def to_json(self) -> dict:
        return {"id": self.pen_id, "message_id": self.message_id, "subject": self.subject,
                "attachments": self.attachments, "left_on_pen": self.left_on_pen}


def _size(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)  # pragma: no cover


def _with_note(message, big, link: str, limit: int):
    """The message with a paragraph naming the attachments that stay on the PEN."""
    names = [f"{one_line(a.filename, 200) or 'attachment'} ({_size(a.size)})" for a in big]
    head = f"Left on the PEN (larger than {_size(limit)}); open the message there to get them:"
    text = (message.body_text or "").rstrip("\n") + "\n\n" + "\n".join([head, *("  " + n for n in names), link]) + "\n"
    body_html = message.body_html
    if body_html:
        items = "".join(f"<li>{html.escape(n)}</li>" for n in names)
        body_html += (f"\n<p>{html.escape(head)}</p><ul>{items}</ul>"
                      f'<p><a href="{html.escape(link, quote=True)}">{html.escape(link)}</a></p>')
    return dataclasses.replace(message, body_text=text, body_html=body_html)


async def replacement(client, notice: Notice, *, limit: int = DEFAULT_ATTACHMENT_LIMIT,
                      scratch: str | Path | None = None, message=None) -> Replacement:
    """Fetch the notice's message and build its real form.  Attachments go in, in order,
    while their total stays within ``limit`` (mail servers refuse large messages, and the
    whole message is in memory once, for the APPEND); the others stay on the PEN, named
    and linked in the text.  Each is downloaded to a file in ``scratch`` first and checked
    against its sha256.  ``message``: the PEN message when the caller has fetched it already.
    Raises Unreadable (404), another PenError, or ExportError (a checksum or a header that
    could not be written safely)."""
    from tui.pen_client import NotFound

    if message is None:
        try:
            message = await client.get_message(notice.pen_id)
        except NotFound:
            raise Unreadable(notice.pen_id) from None
    if notice.date is not None:
        message = dataclasses.replace(message, sent_at=notice.date)
    small, big, total = [], [], 0
    for a in message.attachments:  # in order, while the message stays within the limit
        if total + a.size <= limit:
            small.append(a)
            total += a.size
        else:
            big.append(a)
    if big:
        message = _with_note(message, big, notice.address, limit)
    host = _host(getattr(client, "server", None))
    me = (getattr(getattr(client, "user", None), "email", "") or "").lower()
    with tempfile.TemporaryDirectory(prefix="penmail-intercept-", dir=scratch) as folder:
        files = [(a, await _attachment_bytes(client, message, a, Path(folder))) for a in small]
        refs = [message.in_reply_to] if message.in_reply_to else []
        built = build_email(message, files, host=host, references=refs,
                            own_copy=bool(me) and message.sender.email.lower() == me)
        del files
        data = serialize(built)
    return Replacement(data, message_id_for(message.id, host), message.id, one_line(message.subject),
                       len(small), len(big), message.sent_at)
