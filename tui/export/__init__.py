"""Exporting PEN messages into a Maildir, each once, with its attachments.

``export_maildir(client, DIR, folders=..., since=...)`` writes every message of the
folders that is not in the Maildir yet as an RFC 5322 message (``EmailMessage``, policy
SMTP, stored with LF line ends as Maildir readers expect):

* ``Message-ID: <PEN message id@PEN host>``; ``In-Reply-To`` and ``References`` from
  ``in_reply_to`` (the parent's derived Message-ID, and its known ancestors before it), so
  mail programs thread the conversation; ``X-PEN-Message-Id``, ``X-PEN-Thread-Id`` and
  ``X-PEN-Folder`` for scripts.
* ``Date`` from ``sent_at``; ``From``, ``To``, ``Cc``, and ``Bcc`` only on the sender's own
  copies, each address built from an addr-spec that ``email_validator`` accepts and a
  cleaned display name that the email package quotes or encodes: server text that is not
  one valid address adds no recipient (it is left out; a sender's shows only as the name
  of ``unknown@invalid``), and the written addresses are read back and compared;
  ``Subject``.  Every header value is one line of cleaned text (``safe_text``) in which
  encoded-word look-alikes (``=?``) are broken up, because Python's email package
  decodes them on the way in and writes a decoded CR LF out raw (CVE-2024-6923 and
  relatives); the written bytes are parsed again and must show exactly the headers that
  were set, or nothing is written.
* text/plain, with a text/html alternative when the message has one; each attachment as
  a MIME part, downloaded with ``tui.downloads`` and checked against its sha256.
* Read messages go to ``cur/`` with the ``S`` flag, unread ones to ``new/``, in the Maildir++
  folder of their PEN folder (``tui.export.maildir``: inbox at the root, ``.Sent``, ``.Archive``,
  ``.Trash``).  Each file is written in that folder's ``tmp/``, fsynced, then linked into
  place under a unique name, so a reader never sees half a message.

The tree's index (PEN message ids to Maildir keys) and lock live in penmail's state folder,
not in the tree, so a second run adds only what is new while mail programs see only mail;
files the index does not know are looked at once for ``X-PEN-Message-Id`` (a crash between
writing a message and the index, or a lost index, costs no duplicate).  A tree of the flat
layout of earlier versions is migrated (``tui.export.maildir``).
No Textual here.

The package: this module (``penmail export`` and the message builder that
``penmail intercept`` shares) and ``maildir`` (the Maildir++ tree it writes into). No Textual;
may import the client library (tui.files, tui.text, tui.downloads, tui.pen_client), never the UI.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.policy
import hashlib
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.headerregistry import Address as MailAddress
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import format_datetime
from pathlib import Path
from urllib.parse import urlsplit

from tui.export.maildir import MaildirError, MaildirTree
from tui.files import safe_filename
from tui.safe_text import clean, one_line

__all__ = [
    "DEFAULT_FOLDERS",
    "ExportError",
    "ExportResult",
    "build_email",
    "export_maildir",
    "header_text",
    "message_id_for",
    "serialize",
]

DEFAULT_FOLDERS = ("inbox", "archive", "sent")
FILE_POLICY = email.policy.SMTP.clone(linesep="\n")
MAX_ANCESTORS = 30
_SAFE_ID = re.compile(r"^[A-Za-z0-9_-]{1,200}$")
_DOT_ATOM = re.compile(r"^[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*$")
_MIME_TYPE = re.compile(r"^([a-z0-9][a-z0-9!#$&^_.+-]{0,126})/([a-z0-9][a-z0-9!#$&^_.+-]{0,126})$")
_PART_HEADERS = {"content-type", "content-transfer-encoding", "content-disposition", "mime-version"}


class ExportError(Exception):
    """The export cannot go on; ``message`` is one sentence."""

    def __init__(self, message: str, code: str = "export_failed"):
        super().__init__(message)
        self.message, self.code = message, code


@dataclass
class ExportResult:
    maildir: Path
    added: list[dict] = field(default_factory=list)  # {"id", "key", "folder", "subject", "flags", "attachments"}
    skipped: int = 0  # already in the Maildir
    migrated: int = 0  # moved from the flat layout of earlier versions into their sub-folders

    def to_json(self) -> dict:
        return {"maildir": str(self.maildir), "added": self.added, "count": len(self.added),
                "skipped": self.skipped, "migrated": self.migrated}


@contextlib.contextmanager
def _as_export_error():
    try:
        yield
    except MaildirError as exc:
        raise ExportError(exc.message, exc.code) from None


# ---------------------------------------------------------------- building one message


def header_text(value: str | None, max_len: int | None = None) -> str:
    """One line of text that is safe as (part of) a header value: controls, escapes and
    line breaks gone (``one_line``), and ``=?`` broken up so that nothing in it can be taken
    for an RFC 2047 encoded word -- Python would decode it, newlines and all."""
    text = one_line(value or "", max_len)
    while "=?" in text:
        text = text.replace("=?", "=\u200b?")
    return text


def _host(server: str | None) -> str:
    host = (urlsplit(server or "").hostname or "").lower()
    return host if _DOT_ATOM.match(host) else "pen.invalid"


def message_id_for(pen_id: str, host: str) -> str:
    """``<id@host>``; an id that is not plain URL-safe text is replaced by its sha256."""
    local = pen_id if _SAFE_ID.match(pen_id or "") else hashlib.sha256((pen_id or "").encode("utf-8",
                                                                                              "replace")).hexdigest()
    return f"<{local}@{host if _DOT_ATOM.match(host) else 'pen.invalid'}>"


def _addr_spec(text: str) -> tuple[str, str] | None:
    """(local part, ASCII domain) when ``text`` is exactly one valid addr-spec, else None:
    no display name, no second address, nothing that needs SMTPUTF8."""
    from email_validator import EmailNotValidError, validate_email  # imported only when needed

    if not text or len(text) > 320:
        return None
    try:  # as the client checks what a person types (tui.compose): no quoting, no literals
        result = validate_email(text, check_deliverability=False, allow_smtputf8=False, test_environment=True)
    except EmailNotValidError:
        return None
    return result.local_part, result.ascii_domain


def _mail_address(a) -> MailAddress | None:
    """An address built from a checked addr-spec and a cleaned display name (the email
    package quotes or encodes the name), never from the server's text as it came; None
    when the server's address is not one valid addr-spec."""
    spec = _addr_spec(getattr(a, "email", "") or "")
    if spec is None:
        return None
    name = header_text(getattr(a, "name", None) or "", 200)
    return MailAddress(display_name=name, username=spec[0], domain=spec[1])


def _sender(a) -> MailAddress:
    """From must name a mailbox: a sender whose address is not valid keeps what the server
    said only as a display name, on an address that goes nowhere (RFC 2606 ``.invalid``)."""
    found = _mail_address(a)
    if found is not None:
        return found
    shown = header_text(f"{getattr(a, 'name', None) or ''} {getattr(a, 'email', '') or ''}".strip(), 200)
    return MailAddress(display_name=shown or "unknown", username="unknown", domain="invalid")


def _recipients(items) -> list[MailAddress]:
    """The valid ones only: a server's text that is not an addr-spec adds no recipient."""
    return [found for found in map(_mail_address, items or ()) if found is not None]


def _content_type(value: str | None) -> tuple[str, str]:
    bare = (value or "").split(";", 1)[0].strip().lower()
    match = _MIME_TYPE.match(bare)
    if not match or match.group(1) in ("multipart", "message"):
        return "application", "octet-stream"
    return match.group(1), match.group(2)


def build_email(message, attachments: Iterable[tuple[object, bytes]] = (), *, host: str,
                references: Sequence[str] = (), own_copy: bool = False) -> EmailMessage:
    """The RFC 5322 form of a PEN message (a ``tui.pen_client.Message``).

    ``attachments`` is (Attachment, bytes) in order; ``references`` the ancestor message
    ids, oldest first, ending with the parent; ``own_copy`` says whether the person sent it
    (only then is Bcc written).
    """
    msg = EmailMessage(policy=email.policy.SMTP)

    def put(name: str, value) -> None:
        msg[name] = value

    put("Message-ID", message_id_for(message.id, host))
    if message.sent_at is not None:
        sent = message.sent_at if message.sent_at.tzinfo else message.sent_at.replace(tzinfo=UTC)
        put("Date", format_datetime(sent.astimezone(UTC)))
    put("From", _sender(message.sender))
    for header, items in (("To", message.to), ("Cc", message.cc), ("Bcc", getattr(message, "bcc", ()))):
        found = _recipients(items)
        if found and (header != "Bcc" or own_copy):
            put(header, found)
    put("Subject", header_text(message.subject))
    if message.in_reply_to:
        parent = message_id_for(message.in_reply_to, host)
        chain = [message_id_for(r, host) for r in references if r] or [parent]
        if chain[-1] != parent:
            chain.append(parent)
        put("In-Reply-To", parent)
        put("References", " ".join(chain[-MAX_ANCESTORS:]))
    if _SAFE_ID.match(message.id or ""):
        put("X-PEN-Message-Id", message.id)
    if _SAFE_ID.match(getattr(message, "thread_id", "") or ""):
        put("X-PEN-Thread-Id", message.thread_id)
    if message.folder in ("inbox", "sent", "archive", "trash"):
        put("X-PEN-Folder", message.folder)

    text = clean(message.body_text or "")
    html = clean(message.body_html) if message.body_html else None
    if not text.strip() and html:
        from tui.text.htmlbody import HtmlConversionError, html_to_text

        try:
            text, _ = html_to_text(html)
        except HtmlConversionError:
            text = ""
    msg.set_content(text, subtype="plain", charset="utf-8")
    if html:
        msg.add_alternative(html, subtype="html", charset="utf-8")
    for attachment, data in attachments:
        maintype, subtype = _content_type(getattr(attachment, "content_type", None))
        name = header_text(safe_filename(getattr(attachment, "filename", "") or "", fallback="attachment"))
        msg.add_attachment(bytes(data), maintype=maintype, subtype=subtype, filename=name)
    return msg


def _skeleton(data: bytes, msg: EmailMessage) -> bytes:
    """``data`` with the body of each MIME part cut to one line: every header block and
    every boundary line as they are, so parsing it shows the same structure and headers,
    without holding a parsed copy of every attachment (that took 12 times their size)."""
    bounds = [part.get_boundary() for part in msg.walk() if part.is_multipart()]
    if not bounds or not all(bounds):
        return data
    delimiter = re.compile(rb"^--(?:" + b"|".join(re.escape(b.encode("ascii")) for b in bounds)
                           + rb")(?:--)?[ \t]*\n", re.M)
    out, pos = [], 0
    for found in delimiter.finditer(data):
        end = data.find(b"\n\n", pos, found.start()) if pos else -1
        out.append(data[pos:found.start()] if end < 0 else data[pos:end + 2] + b"x\n")
        out.append(found.group(0))
        pos = found.end()
    out.append(data[pos:])
    return b"".join(out)


def serialize(msg: EmailMessage) -> bytes:
    """The message's bytes for a Maildir (LF line ends), after checking that parsing them
    again shows exactly the headers that were set (no input added one)."""
    data = msg.as_bytes(policy=FILE_POLICY)
    head, _, _ = data.partition(b"\n\n")
    if b"\r" in head:
        raise ExportError("A message could not be written safely (a header would have held a line break), "
                          "so the export stopped.", code="unsafe_header")
    parsed = BytesParser(policy=email.policy.default).parsebytes(_skeleton(data, msg))
    if sorted(k.lower() for k in parsed.keys()) != sorted(k.lower() for k in msg.keys()):
        raise ExportError("A message could not be written safely (its headers changed when written), so the "
                          "export stopped.", code="unsafe_header")
    for name in ("From", "To", "Cc", "Bcc"):
        if name in msg and [a.addr_spec for a in msg[name].addresses] != [a.addr_spec for a in
                                                                          parsed[name].addresses]:
            raise ExportError("A message could not be written safely (its addresses changed when written), so "
                              "the export stopped.", code="unsafe_header")
    for part in parsed.walk():
        if part is parsed:
            continue
        if any(k.lower() not in _PART_HEADERS for k in part.keys()):
            raise ExportError("A message could not be written safely (a part's headers changed when written), "
                              "so the export stopped.", code="unsafe_header")
    return data


# ---------------------------------------------------------------- the Maildir on disk


# ---------------------------------------------------------------- the export


def _flags(summary) -> str:
    # Never T (trashed) in .Trash: mutt and others purge T-flagged mail when leaving a folder.
    return "" if summary.unread else "S"


async def _summaries(client, folders: Iterable[str], since: datetime | None) -> list:
    """Every message of the folders (newest first per folder; stops at ``since``), once each."""
    seen: dict[str, object] = {}
    for folder in folders:
        cursor = None
        while True:
            page = await client.list_messages(folder, limit=200, cursor=cursor)
            done = False
            for s in page.items:
                if since is not None and s.sent_at is not None and s.sent_at < since:
                    done = True  # newest first: everything after this is older
                    break
                seen.setdefault(s.id, s)
            cursor = page.next_cursor
            if done or not cursor or not page.items:
                break
    return list(seen.values())


async def _attachment_bytes(client, message, attachment, folder: Path) -> bytes:
    from tui.downloads import download_attachment

    path = await download_attachment(client, message.id, attachment, folder)
    try:
        data = await asyncio.to_thread(path.read_bytes)
    finally:
        path.unlink(missing_ok=True)
    if hashlib.sha256(data).hexdigest() != (attachment.sha256 or "").lower():
        raise ExportError(f"An attachment of \"{one_line(message.subject, 60)}\" did not match its checksum, so "
                          f"the export stopped; try again.", code="checksum_mismatch")
    return data


async def export_maildir(client, maildir: str | os.PathLike, *, folders: Iterable[str] = DEFAULT_FOLDERS,
                         since: datetime | None = None, host: str | None = None, state: Path | None = None,
                         progress: Callable[[int, int, str], None] | None = None) -> ExportResult:
    """Add the folders' messages that are not in the Maildir tree yet; see the module's
    docstring. ``state``: where the tree's index and lock are kept (penmail's state folder).

    Raises ExportError, or a PenError from the client (not signed in, unreachable, ...).
    Messages written before a failure stay written and indexed.
    """
    from tui.pen_client import NotFound

    root = Path(maildir).expanduser().absolute()
    if state is None:
        from tui.config import state_dir

        state = state_dir() / "exports"
    try:
        box = await asyncio.to_thread(MaildirTree, root, state)
    except MaildirError as exc:
        raise ExportError(exc.message, exc.code) from None
    host = host or _host(getattr(client, "server", None))
    me = (getattr(getattr(client, "user", None), "email", "") or "").lower()
    result = ExportResult(root)
    with _as_export_error(), box.locked():
        await asyncio.to_thread(box.load)
        result.migrated = box.migrated
        summaries = await _summaries(client, folders, since)
        todo = [s for s in summaries if s.id not in box.messages]
        result.skipped = len(summaries) - len(todo)
        todo.sort(key=lambda s: (s.sent_at or datetime.min.replace(tzinfo=UTC), s.id))
        parents: dict[str, str | None] = {k: v.get("in_reply_to") for k, v in box.messages.items()}

        async def ancestry(parent: str) -> list[str]:
            chain: list[str] = []
            current = parent
            while current and current not in chain and len(chain) < MAX_ANCESTORS:
                chain.append(current)
                if current not in parents:
                    try:
                        parents[current] = (await client.get_message(current)).in_reply_to
                    except NotFound:
                        parents[current] = None
                current = parents[current]
            return list(reversed(chain))

        # Attachments are fetched into the Maildir's own tmp/ (the same disk as the
        # messages; /tmp may be memory), and removed once they are in their message.
        with tempfile.TemporaryDirectory(prefix=".penmail-export-", dir=root / "tmp") as scratch:
            for number, summary in enumerate(todo, 1):
                if progress:
                    progress(number, len(todo), summary.subject)
                message = await client.get_message(summary.id)
                parents[message.id] = message.in_reply_to
                files = [(a, await _attachment_bytes(client, message, a, Path(scratch)))
                         for a in message.attachments]
                refs = await ancestry(message.in_reply_to) if message.in_reply_to else []
                own = bool(me) and message.sender.email.lower() == me
                built = build_email(message, files, host=host, references=refs, own_copy=own)
                data = serialize(built)
                flags = _flags(message)
                mtime = message.sent_at.timestamp() if message.sent_at else None
                key = await asyncio.to_thread(box.deliver, data, folder=message.folder, flags=flags, mtime=mtime)
                box.messages[message.id] = {"key": key, "folder": message.folder, "in_reply_to": message.in_reply_to}
                await asyncio.to_thread(box.save)
                result.added.append({"id": one_line(message.id), "key": key, "folder": one_line(message.folder),
                                     "subject": one_line(message.subject), "flags": flags,
                                     "attachments": len(files)})
    return result
