"""The logic of writing a message, without any user interface.

Owns: reply and forward subjects and the recipients of a reply or reply-all (by the rule
that the web pages follow too, pen_rules.replies, on text cleaned here first), the quoted
text of a reply, the body of a forward, checking what the person typed in the address and
subject fields (one sentence per problem, shown as it is), and the address book used to
complete addresses.

It works on the client's dataclasses (``tui.pen_client.Message`` and ``Address``); the
address book's file holds ``{"email", "name"}`` objects, read into Addresses. Everything
taken from a message passes through ``safe_text`` before it is put into a new one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pen_rules import replies
from pen_rules.replies import MAX_SUBJECT
from tui.files import write_atomic
from tui.pen_client import Address, Message
from tui.safe_text import clean, one_line

__all__ = [
    "MAX_SUBJECT",
    "AddressBook",
    "format_address",
    "forward_body",
    "forward_subject",
    "parse_address",
    "parse_address_list",
    "quote_body",
    "remember_seen",
    "reply_recipients",
    "reply_subject",
    "validate_address",
    "validate_subject",
]

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
_LINE_BREAK = re.compile("[\r\n\x0b\x0c\x85\u2028\u2029]")
_DISPLAY_FORM = re.compile(r'^(?:"((?:[^"\\]|\\.)*)"|([^<>"]*?))\s*<([^<>]*)>$', re.DOTALL)
_NAME_SPECIALS = re.compile(r'[,;<>"@()\[\]:\\]')


def reply_subject(subject: str) -> str:
    """ "Re: <subject>", with any earlier "Re:", "AW:", "Re[2]:", "SV:" folded into one (pen_rules)."""
    return replies.reply_subject(one_line(subject or ""))


def forward_subject(subject: str) -> str:
    """ "Fwd: <subject>", with any earlier "Fwd:", "FW:", "WG:" folded into one (pen_rules)."""
    return replies.forward_subject(one_line(subject or ""))


def _parse_time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, str) and value:
        try:
            dt = datetime.fromisoformat(value.strip().replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            return None
    else:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)  # the contract's times are UTC
    return dt


def format_date(value: Any) -> str:
    """ "27 Nov 2026 09:30" in local time (English month names whatever the locale); "" if unknown."""
    dt = _parse_time(value)
    if dt is None:
        return ""
    local = dt.astimezone()
    return f"{local.day} {_MONTHS[local.month - 1]} {local.year} {local:%H:%M}"


def format_address(address: Address | str) -> str:
    """ "Ann Lee <ann@x.example>", or the bare address when there is no name."""
    if isinstance(address, str):
        return one_line(address)
    email = one_line(address.email or "")
    name = one_line(address.name or "")
    if not name or name.lower() == email.lower():
        return email
    if _NAME_SPECIALS.search(name):
        # Quote it, so that "Lee, Ann" stays one address when the field is parsed again.
        name = '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return f"{name} <{email}>"


def quote_body(text: str, date: Any, name: str | None) -> str:
    """ "On <date>, <name> wrote:" and the text with every line quoted by ">"."""
    who = one_line(name or "") or "the sender"
    when = format_date(date)
    header = f"On {when}, {who} wrote:" if when else f"{who[:1].upper()}{who[1:]} wrote:"
    lines = clean(text or "").rstrip().split("\n")
    quoted = []
    for line in lines:
        line = line.rstrip()
        if not line:
            quoted.append(">")
        elif line.startswith(">"):
            quoted.append(">" + line)  # ">>" for a quote within the quote
        else:
            quoted.append("> " + line)
    return header + "\n" + "\n".join(quoted) + "\n"


def _clean_address(value: Address) -> Address | None:
    """The address with its fields cleaned for a new message, or None if it has no address."""
    email = one_line(value.email or "")
    return Address(email, one_line(value.name or "") or None) if email else None


def _clean_addresses(values: Iterable[Address]) -> list[Address]:
    return [a for a in (_clean_address(v) for v in values) if a is not None]


def reply_recipients(message: Message, me: str | Iterable[str],
                     reply_all: bool) -> tuple[list[Address], list[Address]]:
    """(to, cc) for a reply or reply-all, by the rule of pen_rules.replies; `me` is the
    user's address (or all of them), never among the recipients."""
    mine = [me] if isinstance(me, str) else list(me)
    sender = _clean_address(message.sender)
    return replies.reply_recipients(sender, _clean_addresses(message.to), _clean_addresses(message.cc), mine,
                                    reply_all=reply_all, email_of=lambda a: a.email)


def forward_body(message: Message) -> str:
    """The forwarded message's headers and text, to follow what the person writes."""
    lines = ["---------- Forwarded message ----------"]
    sender = _clean_address(message.sender)
    if sender:
        lines.append(f"From: {format_address(sender)}")
    when = format_date(message.sent_at)
    if when:
        lines.append(f"Date: {when}")
    lines.append(f"Subject: {one_line(message.subject or '')}")
    for people, label in ((message.to, "To"), (message.cc, "Cc")):
        cleaned = _clean_addresses(people)
        if cleaned:
            lines.append(f"{label}: " + ", ".join(format_address(a) for a in cleaned))
    body = message.body_text or ""
    if not body.strip() and message.body_html:
        from tui.text.htmlbody import HtmlConversionError, html_to_text

        try:
            body, _ = html_to_text(message.body_html)
        except HtmlConversionError:
            body = ""
    return "\n".join(lines) + "\n\n" + clean(body).rstrip() + "\n"


def parse_address(text: str) -> tuple[Address | None, str | None]:
    """(Address, None) for "ann@x.example" or "Ann Lee <ann@x.example>", else (None, sentence)."""
    if not isinstance(text, str):
        return None, "An address must be text."
    s = text.strip()
    if not s:
        return None, "An address is empty."
    if _CONTROL.search(s) or _LINE_BREAK.search(s):
        return None, "An address cannot contain a line break or a control character."
    shown = one_line(s, 80)
    name: str | None = None
    match = _DISPLAY_FORM.match(s)
    if match:
        quoted, bare, email = match.groups()
        name = re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else bare.strip()
        name = name.strip() or None
        email = email.strip()
    elif "<" in s or ">" in s or '"' in s:
        return None, f"{shown} is not a valid e-mail address (write it as Name <name@example.org>)."
    else:
        email = s

    from email_validator import EmailNotValidError, validate_email  # imported only when needed

    try:
        result = validate_email(email, check_deliverability=False, allow_smtputf8=False, test_environment=True)
    except EmailNotValidError as e:
        reason = str(e).strip().rstrip(".")
        return None, f"{shown} is not a valid e-mail address ({reason[:1].lower()}{reason[1:]})."
    return Address(result.normalized, name), None


def validate_address(text: str) -> str | None:
    """None when ``text`` is one valid address (bare or "Name <address>"), else why not."""
    return parse_address(text)[1]


def _split_list(text: str) -> list[str]:
    """Split on , ; and line ends that are outside quotes and angle brackets."""
    items, current, quoted, angle, i = [], [], False, False, 0
    while i < len(text):
        c = text[i]
        if c == "\\" and quoted and i + 1 < len(text):
            current.append(text[i : i + 2])
            i += 2
            continue
        if c == '"':
            quoted = not quoted
        elif c == "<" and not quoted:
            angle = True
        elif c == ">" and not quoted:
            angle = False
        if c in ",;\r\n" and not quoted and not angle:
            items.append("".join(current))
            current = []
        else:
            current.append(c)
        i += 1
    items.append("".join(current))
    return [item.strip() for item in items if item.strip()]


def parse_address_list(text: str) -> tuple[list[Address], list[str]]:
    """Addresses from a comma-separated field, each once, and a sentence per bad one."""
    addresses: list[Address] = []
    errors: list[str] = []
    seen: set[str] = set()
    for item in _split_list(text or ""):
        address, error = parse_address(item)
        if error is not None:
            errors.append(error)
        elif address is not None and address.email.lower() not in seen:
            seen.add(address.email.lower())
            addresses.append(address)
    return addresses, errors


def validate_subject(subject: str) -> str | None:
    """None when the server will accept ``subject``, else one sentence saying why not."""
    if not isinstance(subject, str):
        return "The subject must be text."
    if _LINE_BREAK.search(subject):
        return "The subject cannot contain a line break."
    if _CONTROL.search(subject):
        return "The subject cannot contain control characters."
    if len(subject) > MAX_SUBJECT:
        return f"The subject is {len(subject):,} characters long; it can be at most {MAX_SUBJECT}."
    return None


class AddressBook:
    """Addresses seen in messages, for completing the To, Cc and Bcc fields.

    Kept in ``state_dir()/addresses.json`` (written atomically), most recent last, and
    bounded to ``limit`` entries so it cannot grow without end.
    """

    def __init__(self, path: Path | str | None = None, limit: int = 5000) -> None:
        if path is None:
            from tui.config import state_dir

            path = state_dir() / "addresses.json"
        self.path = Path(path)
        self.limit = limit
        self._entries: dict[str, Address] = {}  # lower-case email -> address; insertion = recency
        self._load()

    def __len__(self) -> int:
        return len(self._entries)

    def _load(self) -> None:
        try:
            data = json.loads(self.path.read_bytes().decode("utf-8"))
        except (OSError, UnicodeDecodeError, ValueError, RecursionError):
            return  # no book yet, or a broken one: start afresh rather than fail
        items = data.get("addresses") if isinstance(data, dict) else None
        if isinstance(items, list):  # the file's {"email", "name"} objects; anything else is skipped
            self._remember(Address(item.get("email"), item.get("name") if isinstance(item.get("name"), str) else None)
                           for item in items if isinstance(item, dict))

    def _remember(self, items: Iterable[Address | str]) -> bool:
        """Add or refresh entries; True when the book (its entries or their order) changed."""
        before = list(self._entries.items())
        for item in items:
            address = self._normalise(item)
            if address is None:
                continue
            key = address.email.lower()
            old = self._entries.pop(key, None)
            if old is not None and not address.name:
                address = replace(address, name=old.name)  # "ann@x" alone does not forget "Ann Lee"
            self._entries[key] = address
        while len(self._entries) > self.limit:
            del self._entries[next(iter(self._entries))]
        return list(self._entries.items()) != before  # reading the same message again writes nothing

    @staticmethod
    def _normalise(item: Address | str) -> Address | None:
        if isinstance(item, str):
            address, _ = parse_address(item)
            return address
        email = item.email
        if not isinstance(email, str) or "@" not in email or len(email) > 254:
            return None
        if _CONTROL.search(email) or any(c.isspace() for c in email):
            return None
        return Address(email, one_line(item.name or "", 200) or None)

    def add(self, address: Address | str) -> None:
        """Remember one address (an Address or "Name <email>") and save."""
        self.add_many([address])

    def add_seen(self, addresses: Iterable[Address], me_email: str | None = None) -> None:
        """Remember the people on a message the user has seen: see seen_addresses()."""
        self.add_many(seen_addresses(addresses, me_email))

    def add_many(self, addresses: Iterable[Address | str]) -> None:
        """Remember several (say, everyone on a message) with one write."""
        if self._remember(addresses):
            self.save()

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        data = {"version": 1, "addresses": [a.to_json() for a in self._entries.values()]}
        write_atomic(self.path, json.dumps(data, ensure_ascii=False).encode("utf-8"))

    def complete(self, prefix: str, limit: int = 10) -> list[str]:
        """Addresses whose email, name or any word of the name starts with ``prefix``, newest first."""
        return [format_address(a) for a in self.complete_addresses(prefix, limit)]

    def complete_addresses(self, prefix: str, limit: int = 10) -> list[Address]:
        """As complete(), the Addresses themselves."""
        p = " ".join((prefix or "").split()).lower()
        if not p:
            return []
        found: list[Address] = []
        for address in reversed(self._entries.values()):
            email = address.email.lower()
            name = (address.name or "").lower()
            words = re.split(r"[\s,.'\"()-]+", name)
            if email.startswith(p) or name.startswith(p) or any(w.startswith(p) for w in words if w):
                found.append(address)
                if len(found) >= limit:
                    break
        return found


MAX_SEEN_PER_MESSAGE = 100  # a message to thousands adds its first hundred people, not all


def seen_addresses(addresses: Iterable[Address], me_email: str | None = None,
                   limit: int = MAX_SEEN_PER_MESSAGE) -> list[Address]:
    """The people on a message, for the address book: each once, the user never, at most ``limit``.

    The user's own address is left out: it is on every message they receive, and is not
    whom they complete.
    """
    me = (me_email or "").strip().lower()
    seen: set[str] = {me} if me else set()
    found: list[Address] = []
    for item in addresses:
        if len(found) >= limit:
            break
        address = AddressBook._normalise(item)
        if address is None or address.email.lower() in seen:
            continue
        seen.add(address.email.lower())
        found.append(address)
    return found


def remember_seen(addresses: Iterable[Address], me_email: str | None = None, path: Path | str | None = None) -> None:
    """Add the people on a message the user opened to the address book (blocking: call it in
    a thread).  A book that cannot be written is not the reader's problem: nothing is raised."""
    try:
        AddressBook(path).add_seen(list(addresses), me_email)
    except OSError:
        pass
