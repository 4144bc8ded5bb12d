"""The notification e-mail: one plain e-mail per recipient that says who sent a secure
message and links to it. This module owns what that e-mail looks like and its header
safety; it does no I/O (the delivery worker in `outbox.py` loads the rows and sends).

Header safety does not rest on the `email` package: Python 3.11 decodes RFC 2047 text that
it finds in a header value it is given (`=?UTF-8?Q?=0A?=Bcc: x` becomes a real line break),
and it lets over-long words through unfolded. So every header that carries input (subject,
display names, addresses) is written here, already folded and pure ASCII, and stored with
`set_raw` under a policy that never refolds raw values: input text becomes either plain
printable ASCII words without any `=?`, or base64 encoded-words that we made ourselves, so
literal encoded-word text in the input reaches the receiver as literal text.
"""

from __future__ import annotations

import html
import re
import unicodedata
from base64 import b64encode
from datetime import UTC, datetime
from email import policy as email_policy
from email.message import EmailMessage
from email.utils import format_datetime
from urllib.parse import quote

from pen_server import security
from pen_server.effective_settings import PenConf

# SMTP line endings; raw header values are written out exactly as we folded them.
POLICY = email_policy.SMTP.clone(refold_source="none", max_line_length=78)
LINE = 78
# 36 bytes of UTF-8 -> 48 base64 characters -> a 60-character encoded-word: under RFC 2047's
# 75, and short enough to sit after any header name on one line.
_EW_BYTES = 36
_PLAIN_WORD = 60
# Longer input is cut: the API allows subjects of 998 characters and names of 200, so
# nothing it accepts changes, and a huge value cannot make a header that relays truncate.
SUBJECT_LIMIT = 998
NAME_LIMIT = 200

_ATEXT = r"A-Za-z0-9!#$%&'*+/=?^_`{|}~-"
_LOCAL = re.compile(rf"[{_ATEXT}]+(?:\.[{_ATEXT}]+)*")
_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_MSGID = re.compile(r"<[A-Za-z0-9._+-]{1,200}@[A-Za-z0-9.-]{1,253}>")
_ID_PART = re.compile(r"[A-Za-z0-9._-]{1,100}")


class AddressError(ValueError):
    """An address or id that cannot be written safely into a header or an envelope."""


def clean_line(text: str | None) -> str:
    """One line of text for a header or a sentence: every control character (C0, C1, DEL)
    and Unicode line/paragraph separator becomes a space, lone surrogates become U+FFFD,
    and the ends are trimmed. Nothing else changes (an ordinary subject passes unchanged)."""
    out = []
    for ch in text or "":
        cat = unicodedata.category(ch)
        if cat in ("Cc", "Zl", "Zp"):
            out.append(" ")
        elif cat == "Cs":
            out.append("\ufffd")
        else:
            out.append(ch)
    return "".join(out).strip()


def clean_block(text: str | None) -> str:
    """Several lines of text (footer, disclaimer): line breaks kept, other controls dropped."""
    lines = (text or "").replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return "\n".join(clean_line(line) for line in lines).strip("\n")


def checked_address(address: str | None) -> str:
    """An addr-spec that is safe in a header and an SMTP envelope: a dot-atom local part (no
    quoting, no `=?`) and a host name, internationalised domains in their ASCII (IDNA) form.
    Anything else raises AddressError rather than being written."""
    address = (address or "").strip()
    local, sep, domain = address.rpartition("@")
    if not sep or not _LOCAL.fullmatch(local) or "=?" in local or len(local) > 64:
        raise AddressError(f"not a deliverable e-mail address: {address[:100]!r}")
    if not domain.isascii():
        domain = _idna(domain)
    labels = domain.split(".")
    # One label is allowed: the default from_address is pen@localhost.
    if not all(_LABEL.fullmatch(label) for label in labels) or len(domain) > 253:
        raise AddressError(f"not a deliverable e-mail domain: {domain[:100]!r}")
    return f"{local}@{domain}"


def _idna(domain: str) -> str:
    """An internationalised domain in ASCII: IDNA 2008 as the API's validator uses (the
    `idna` package), else Python's IDNA 2003 codec."""
    try:
        try:
            import idna
        except ImportError:
            return domain.encode("idna").decode("ascii")
        return idna.encode(domain, uts46=True).decode("ascii")
    except (UnicodeError, ValueError):  # idna.IDNAError is a UnicodeError
        raise AddressError(f"not a deliverable e-mail domain: {domain[:100]!r}") from None


def _encoded_words(text: str) -> list[str]:
    """`text` as base64 UTF-8 encoded-words, never splitting a character between two."""
    words: list[list[str]] = []
    chunk: list[str] = []
    size = 0
    for ch in text:
        n = len(ch.encode("utf-8"))
        if chunk and size + n > _EW_BYTES:
            words.append(chunk)
            chunk, size = [], 0
        chunk.append(ch)
        size += n
    if chunk:
        words.append(chunk)
    return ["=?utf-8?b?" + b64encode("".join(w).encode("utf-8")).decode("ascii") + "?=" for w in words]


def _is_plain(text: str, forbidden: str = "") -> bool:
    """True when `text` can go out as it is: printable ASCII words with single spaces, no
    `=?` that a receiver could take for an encoded-word, no word too long to fold."""
    if not text or "=?" in text or any(c in text for c in forbidden):
        return False
    words = text.split(" ")
    return all(w and len(w) <= _PLAIN_WORD and all("!" <= c <= "~" for c in w) for w in words)


def _text_tokens(text: str) -> list[str]:
    """Tokens of an unstructured header (joined by single spaces, folded at those spaces)."""
    text = clean_line((text or "")[:SUBJECT_LIMIT])
    if not text:
        return []
    return text.split(" ") if _is_plain(text) else _encoded_words(text)


def _mailbox_tokens(name: str | None, address: str) -> list[str]:
    """`name <address>` as tokens: the name quoted when plain, else as encoded-words."""
    addr = "<" + checked_address(address) + ">"
    name = clean_line((name or "")[:NAME_LIMIT])
    if not name:
        return [addr]
    if _is_plain(name, forbidden='"\\') and len(name) <= _PLAIN_WORD:
        return ['"' + name + '"', addr]
    return _encoded_words(name) + [addr]


def _fold(name: str, tokens: list[str]) -> str:
    """Join tokens by spaces, breaking lines (CRLF + space) at those spaces to stay within
    78 characters where a token allows. Returns the value for `set_raw`."""
    lines, line = [], f"{name}:"
    for tok in tokens:
        if len(line) + 1 + len(tok) > LINE and line != f"{name}:":
            lines.append(line)
            line = " " + tok
        else:
            line += " " + tok
    lines.append(line)
    return "\r\n".join(lines)[len(name) + 2:]


def address_headers(message) -> dict[str, str]:
    """The folded To and Cc header values of a message. Every notification of the message
    carries the same ones, so the delivery worker makes them once per message and hands them
    to build_notification for each recipient. Raises AddressError as build_notification does."""
    out = {"To": _fold("To", _address_list(message.to_list)) if message.to_list
           else "undisclosed-recipients:;"}  # only Cc/Bcc: an empty group names nobody
    if message.cc_list:
        out["Cc"] = _fold("Cc", _address_list(message.cc_list))
    return out


def guest_from_name(name: str | None, email: str, pen_name: str) -> str:
    """The From name of a guest's notification, "NAME (guest) via PEN NAME": a guest chooses
    its own name, so the e-mail never shows it bare on the PEN's own sending address."""
    name = clean_line((name or "")[:NAME_LIMIT // 2]) or clean_line(email[:NAME_LIMIT // 2])
    pen_name = clean_line((pen_name or "")[:NAME_LIMIT // 2 - 20]) or "PEN"
    return f"{name} (guest) via {pen_name}"


def _address_list(entries: list[dict]) -> list[str]:
    tokens: list[str] = []
    for i, entry in enumerate(entries):
        item = _mailbox_tokens(entry.get("name"), entry.get("email"))
        if i < len(entries) - 1:
            item[-1] += ","
        tokens.extend(item)
    return tokens


def _checked_msgid(value: str) -> str:
    """A Message-ID made of safe characters only; an internationalised host goes as IDNA."""
    if isinstance(value, str) and value.endswith(">") and not value.isascii():
        left, sep, host = value[:-1].rpartition("@")
        if sep and left.isascii():
            value = f"{left}@{_idna(host)}>"
    if not isinstance(value, str) or not _MSGID.fullmatch(value):
        raise AddressError(f"not a safe Message-ID: {str(value)[:100]!r}")
    return value


def invite_token(secret: bytes, notification_id: str) -> str:
    """The link's token; the API stores sha256 of it as the notification's token_hash."""
    return security.derived_token(secret, "invite", notification_id)


def message_link(base_url: str, message_id: str, token: str) -> str:
    return f"{message_address(base_url, message_id)}?t={quote(token, safe='')}"


def message_address(base_url: str, message_id: str) -> str:
    """`<base_url>/m/<message id>`: the link without its token, for the X-PEN-Message header
    (a program such as `penmail intercept` finds the message by it; it opens nothing)."""
    return f"{base_url.rstrip('/')}/m/{quote(message_id, safe='')}"


_HEADER_URL = re.compile(r"https?://[!-~]{1,900}")


def thread_root_id(thread_id: str, host: str) -> str:
    """A Message-ID that no e-mail has: every notification of a thread names it first in
    References, so mail programs group one conversation together."""
    if not _ID_PART.fullmatch(thread_id or ""):
        raise AddressError(f"not a safe thread id: {str(thread_id)[:100]!r}")
    try:
        host = checked_address(f"x@{host}").partition("@")[2]
    except AddressError:
        host = "localhost.invalid"
    return _checked_msgid(f"<thread.{thread_id}@{host}>")


def sender_terms(sender, package) -> tuple[str | None, str]:
    """The disclaimer and subject policy that a sender's notifications carry: its package's
    (`package` the Package row named by sender.package, or None), none and "keep" for a
    guest or a sender without a package."""
    if sender is None or package is None or sender.role == "guest":
        return None, "keep"
    return package.disclaimer, package.subject_policy or "keep"


def outside_subject(message, subject_policy: str) -> str:
    """The subject shown where no one has signed in (the notification, the page its link
    opens, GET /invitations/{token}): "generic" puts "Secure message from NAME" in place of
    the message's own."""
    if subject_policy != "generic":
        return message.subject
    return f"Secure message from {clean_line((message.from_name or '')[:NAME_LIMIT]) or clean_line(message.from_email)}"


def build_notification(notification, message, *, conf: PenConf, secret: bytes,
                       disclaimer: str | None = None, parent_message_id: str | None = None,
                       guest: bool = False, headers: dict[str, str] | None = None,
                       subject_policy: str = "keep") -> EmailMessage:
    """The notification e-mail for one Notification row of one Message.

    `disclaimer` is the sender's package disclaimer (None for a guest sender or a package
    without one); `parent_message_id` the Message-ID of the notification that this
    recipient got for the message being replied to, when there is one; `guest` says that
    the sender is a guest: its From name says so and there is no Reply-To (a reply goes to
    the PEN, never to an address the guest chose); `headers` is address_headers(message),
    made once for all of a message's notifications; `subject_policy` is the sender's
    package's: "generic" puts "Secure message from NAME" in place of the message's subject.
    Raises AddressError when an address or id cannot be written safely (the row should then
    fail)."""
    msg = EmailMessage(policy=POLICY)
    sender_name = clean_line((message.from_name or "")[:NAME_LIMIT]) or clean_line(message.from_email)
    from_name = guest_from_name(message.from_name, message.from_email, conf.name) if guest else sender_name
    sent_at = message.sent_at or datetime.now(UTC)
    if sent_at.tzinfo is None:
        sent_at = sent_at.replace(tzinfo=UTC)
    own_id = _checked_msgid(notification.smtp_message_id)
    root = thread_root_id(message.thread_id, conf.host)

    msg["Date"] = format_datetime(sent_at)
    msg.set_raw("From", _fold("From", _mailbox_tokens(from_name, conf.smtp.from_address)))
    if not guest:
        msg.set_raw("Reply-To", _fold("Reply-To", _mailbox_tokens(message.from_name, message.from_email)))
    for field, value in (headers if headers is not None else address_headers(message)).items():
        msg.set_raw(field, value)
    msg.set_raw("Subject", _fold("Subject", _text_tokens(outside_subject(message, subject_policy))))
    msg.set_raw("Message-ID", own_id)
    references = [root]
    if message.in_reply_to:
        parent = _checked_msgid(parent_message_id) if parent_message_id else root
        msg.set_raw("In-Reply-To", parent)
        if parent != root:
            references.append(parent)
    msg.set_raw("References", _fold("References", references))
    msg.set_raw("Auto-Submitted", "auto-generated")
    pen_message = message_address(conf.base_url, message.id)
    if _HEADER_URL.fullmatch(pen_message):  # printable ASCII, one line; else no header rather than a bad one
        msg.set_raw("X-PEN-Message", pen_message)

    link = message_link(conf.base_url, message.id, invite_token(secret, notification.id))
    who = sender_name if sender_name == clean_line(message.from_email) else \
        f"{sender_name} <{clean_line(message.from_email)}>"
    who += ", a guest," if guest else ""
    sentence = (f"{who} sent you a secure message through {clean_line(conf.name) or 'a Private Email Network'}; "
                f"the link below opens it in any web browser.")
    expires = getattr(message, "expires_at", None)
    if expires is not None:  # the sender's end date: after it the link opens nothing
        sentence += f" It can be read until {expires.astimezone(UTC).strftime('%-d %B %Y, %H:%M UTC')}."
    footer, notice = clean_block(conf.footer), clean_block(disclaimer)

    text = [sentence, "", "Read it here:", link]
    text += ["", footer] if footer else []
    text += ["", notice] if notice else []
    msg.set_content("\n".join(text) + "\n", subtype="plain", charset="utf-8", cte="quoted-printable")

    def para(block: str) -> str:
        return "<p>" + "<br>\n".join(html.escape(line, quote=True) for line in block.split("\n")) + "</p>"

    # The HTML part says what the text part says, and the link's visible text is the link
    # itself, on the PEN's own host: nothing hides where it goes (filters look for that).
    shown = html.escape(link, quote=True)
    parts = [para(sentence), f'<p>Read it here:<br>\n<a href="{shown}">{shown}</a></p>']
    parts += [para(footer)] if footer else []
    parts += [para(notice)] if notice else []
    title = html.escape(clean_line(conf.name) or "Private Email Network")
    page = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{title}</title></head><body>\n'
            + "\n".join(parts) + "\n</body></html>\n")
    msg.add_alternative(page, subtype="html", charset="utf-8", cte="quoted-printable")
    return msg
