"""Is this e-mail a notification of the configured PEN, and for which message?

Both the ``X-PEN-Message: <base_url>/m/<id>`` header and every PEN link in the text
(``<base_url>/m/<id>?t=<token>``) must name the same message on the configured server; a
mail with a header for another server, or links that disagree with it, is not ours (a
forged notification cannot send penmail to another server, nor make it replace mail for
a message other than the one it names).  Notifications are small: anything larger than
``MAX_NOTICE`` is never one.
"""

from __future__ import annotations

import email.policy
import re
from dataclasses import dataclass
from datetime import datetime
from email.parser import BytesParser
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

MAX_NOTICE = 256 * 1024
HEADER = "X-PEN-Message"
_ID = r"[A-Za-z0-9_-]{1,200}"
_HEADER_VALUE = re.compile(rf"^(?P<base>https://[!-~]+?)/m/(?P<id>{_ID})$")
_LINK = re.compile(rf"(?P<base>https://[^\s<>\"']+?)/m/(?P<id>{_ID})\?t=[A-Za-z0-9_%-]+")


@dataclass(frozen=True)
class Notice:
    pen_id: str
    address: str  # <base_url>/m/<id>: the message's page on the PEN, no token
    date: datetime | None  # the notification's Date


def _place(url: str) -> tuple[str, str, int, str] | None:
    try:
        parts = urlsplit(url.rstrip("/"))
        port = parts.port or 443
    except ValueError:
        return None
    if parts.scheme.lower() != "https" or not parts.hostname:
        return None
    return "https", parts.hostname.lower(), port, parts.path


def same_server(a: str | None, b: str | None) -> bool:
    pa, pb = _place(a or ""), _place(b or "")
    return pa is not None and pa == pb


def recognise(raw: bytes, server: str) -> Notice | None:
    """The Notice when ``raw`` (a whole e-mail) is a notification of ``server``, else None."""
    if len(raw) > MAX_NOTICE or HEADER.encode().lower() not in raw[:64 << 10].lower():
        return None
    try:
        msg = BytesParser(policy=email.policy.default).parsebytes(raw)
        values = msg.get_all(HEADER) or []
        if len(values) != 1:
            return None
        found = _HEADER_VALUE.match(str(values[0]).strip())
        if not found or not same_server(found["base"], server):
            return None
        body = msg.get_body(("plain",))
        text = body.get_content() if body is not None else ""
    except (LookupError, ValueError, TypeError, AttributeError, UnicodeError):
        return None
    links = list(_LINK.finditer(text))
    if not links or any(m["id"] != found["id"] or not same_server(m["base"], server) for m in links):
        return None
    try:
        date = parsedate_to_datetime(str(msg["Date"])) if msg["Date"] else None
    except (TypeError, ValueError, IndexError):
        date = None
    if date is not None and date.tzinfo is None:
        date = None
    return Notice(found["id"], f"{server.rstrip('/')}/m/{found['id']}", date)
