"""The search language of `GET /messages?q=`: parsed here into terms, then into SQL conditions
that AND together (docs/pen-api.md, "Search").

    from:ann  to:bob  cc:cat  subject:budget  body:"next week"  has:attachment
    is:unread  is:read  before:2026-01-31  after:2026-01-01  "a phrase"  word

Words outside quotes are separate terms, each of which must match somewhere (as in other
mail programs); a phrase is quoted."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import exists, func, or_, select

from pen_server.errors import ApiError
from pen_server.models import MailboxEntry, Message

KEYS = ("from", "to", "cc", "subject", "body", "has", "is", "before", "after")
MAX_TERMS = 32  # room for a pasted subject's words
_KEY = re.compile(r"([A-Za-z]+):")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_KEY_LIST = "from:, to:, cc:, subject:, body:, has:attachment, is:unread, is:read, before: and after:"


class SearchError(ApiError):
    def __init__(self, sentence: str):
        super().__init__(422, "validation_failed", sentence, fields={"q": sentence})


@dataclass(frozen=True)
class Term:
    """One condition: `key` None is text over subject, sender and body."""

    key: str | None
    value: str | bool | datetime


def parse(q: str) -> list[Term]:
    """The terms of a query, or SearchError with one sentence naming the word at fault."""
    if "\x00" in q:  # no stored text holds one (PostgreSQL cannot compare with it either)
        raise SearchError("A search may not contain the NUL character; leave it out.")
    terms: list[Term] = []
    i, n = 0, len(q)
    while i < n:
        if q[i].isspace():
            i += 1
            continue
        key = None
        match = _KEY.match(q, i)
        if match and match.group(1).lower() not in KEYS and (match.end() == n or q[match.end()].isspace()):
            match = None  # "Re:" and the like: a word
        if match:
            key = match.group(1).lower()
            i = match.end()
        if i < n and q[i] == '"':
            end = q.find('"', i + 1)
            if end < 0:
                raise SearchError(_unclosed(q[i + 1:]))
            value, i = q[i + 1:end], end + 1
        else:
            start = i
            while i < n and not q[i].isspace() and q[i] != '"':
                i += 1
            value = q[start:i]
        if key is None:
            if value:
                terms.append(Term(None, value))
        else:
            terms.append(_keyed(key, match.group(0), value))
        if len(terms) > MAX_TERMS:
            raise SearchError(f"A search may have at most {MAX_TERMS} terms; leave some out.")
    return terms


def _unclosed(rest: str) -> str:
    words = rest.strip()[:40]
    where = f"before {words}" if words else "at the end of the search"
    return f"The double quote {where} is not closed; end the phrase with another double quote."


def _keyed(key: str, written: str, value: str) -> Term:
    if key not in KEYS:
        raise SearchError(f'"{written}" is not a search key; the keys are {_KEY_LIST} '
                          f'(put text with a colon in double quotes to search for it).')
    if not value:
        raise SearchError(f'"{written}" needs a value right after the colon, for example {key}:'
                          f'{_EXAMPLES[key]}.')
    word = f"{written}{value}"
    if key == "has":
        if value.lower() != "attachment":
            raise SearchError(f'"{word}" is not understood; has: takes only attachment (has:attachment).')
        return Term("has", True)
    if key == "is":
        if value.lower() not in ("unread", "read"):
            raise SearchError(f'"{word}" is not understood; is: takes unread or read.')
        return Term("is", value.lower() == "unread")
    if key in ("before", "after"):
        try:
            if not _DATE.fullmatch(value):
                raise ValueError
            when = datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=UTC)
        except ValueError:
            raise SearchError(f'"{word}" is not a date; write dates as YYYY-MM-DD (UTC), '
                              f'for example {key}:2026-01-31.') from None
        return Term(key, when)
    return Term(key, value)


_EXAMPLES = {"from": "ann", "to": "ann", "cc": "ann", "subject": "budget", "body": "budget",
             "has": "attachment", "is": "unread", "before": "2026-01-31", "after": "2026-01-01"}


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _contains(column, text: str):
    return column.ilike(_like(text), escape="\\")


def _address_list(column, text: str, dialect: str):
    email: Any
    name: Any
    """Any address of a JSON list [{"email", "name"}] whose e-mail or name contains text."""
    if dialect == "postgresql":
        items = func.json_array_elements(column).table_valued("value").alias("address")
        email, name = items.c.value.op("->>")("email"), items.c.value.op("->>")("name")
    else:
        items = func.json_each(column).table_valued("value").alias("address")
        email, name = func.json_extract(items.c.value, "$.email"), func.json_extract(items.c.value, "$.name")
    return exists(select(1).select_from(items).where(or_(_contains(email, text), _contains(name, text))))


def needs_message(terms: list[Term]) -> bool:
    """Whether the conditions read the message's own columns (else the entry alone will do)."""
    return any(t.key not in ("is", "before", "after") for t in terms)


def conditions(terms: list[Term], dialect: str) -> list:
    out = []
    for t in terms:
        if t.key is None:
            text = str(t.value)
            out.append(or_(_contains(Message.subject, text), _contains(Message.from_email, text),
                           _contains(Message.from_name, text), _contains(Message.body_text, text)))
        elif t.key == "from":
            out.append(or_(_contains(Message.from_email, str(t.value)), _contains(Message.from_name, str(t.value))))
        elif t.key in ("to", "cc"):
            out.append(_address_list(Message.to_list if t.key == "to" else Message.cc_list, str(t.value), dialect))
        elif t.key == "subject":
            out.append(_contains(Message.subject, str(t.value)))
        elif t.key == "body":
            out.append(_contains(Message.body_text, str(t.value)))
        elif t.key == "has":
            out.append(Message.attachment_count > 0)
        elif t.key == "is":
            out.append(MailboxEntry.unread == t.value)
        elif t.key == "before":
            out.append(MailboxEntry.sent_at < t.value)
        else:
            out.append(MailboxEntry.sent_at >= t.value)
    return out
