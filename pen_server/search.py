"""The search language of `GET /messages?q=`: parsed here into terms, then run over the
full-text index (pen_server/search_index.py) and the copies' own columns; docs/pen-api.md,
"Search".

    from:ann  to:bob  cc:cat  subject:budget  body:"next week"  has:attachment
    is:unread  is:read  before:2026-01-31  after:2026-01-01  "a phrase"  word

Words outside quotes are separate terms, each of which must match somewhere (as in other
mail programs); a phrase is quoted. A word finds that word, and (from three letters or
digits on) the words it begins; a phrase finds its words in that order."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import and_, false, func, literal_column, or_, select, text
from sqlalchemy.orm import Session

from pen_server import search_index as index
from pen_server.errors import ApiError
from pen_server.models import MailboxEntry, Message, User, utcnow

KEYS = ("from", "to", "cc", "subject", "body", "has", "is", "before", "after")
MAX_TERMS = 32  # room for a pasted subject's words
MAX_PHRASE_WORDS = 16  # a phrase's words are looked up one by one: a bound on its cost
MAX_WORDS = 64  # all terms' words together
COUNT_LIMIT = 1000  # `total` counts matches up to this many (`total_exact` false past it)
RARE = 5000  # PostgreSQL: text that matches at most this many messages is looked up, not walked to
_KEY = re.compile(r"([A-Za-z]+):")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_KEY_LIST = "from:, to:, cc:, subject:, body:, has:attachment, is:unread, is:read, before: and after:"
_TEXT_KEYS = (None, "from", "to", "cc", "subject", "body")


class SearchError(ApiError):
    def __init__(self, sentence: str):
        super().__init__(422, "validation_failed", sentence, fields={"q": sentence})


@dataclass(frozen=True)
class Term:
    """One condition: `key` None is text over subject, sender and body; `quoted` text is a
    phrase of whole words (unquoted, its last word also finds longer words it begins)."""

    key: str | None
    value: str | bool | datetime
    quoted: bool = field(default=False, compare=False)


def parse(q: str) -> list[Term]:
    """The terms of a query, or SearchError with one sentence naming the word at fault."""
    if "\x00" in q:  # no stored text holds one (PostgreSQL cannot compare with it either)
        raise SearchError("A search may not contain the NUL character; leave it out.")
    terms: list[Term] = []
    i, n = 0, len(q)
    words = 0
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
        quoted = i < n and q[i] == '"'
        if quoted:
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
                terms.append(Term(None, value, quoted))
        else:
            terms.append(_keyed(key, match.group(0), value, quoted))
        if len(terms) > MAX_TERMS:
            raise SearchError(f"A search may have at most {MAX_TERMS} terms; leave some out.")
        if terms and terms[-1].key in _TEXT_KEYS and value:
            found = len(index.words(value))
            if found > MAX_PHRASE_WORDS:
                shown = value if len(value) <= 40 else value[:40] + "..."
                raise SearchError(f'The phrase "{shown}" has {found} words; a phrase may have at most '
                                  f"{MAX_PHRASE_WORDS}, so search for a part of it.")
            words += found
            if words > MAX_WORDS:
                raise SearchError(f"A search may have at most {MAX_WORDS} words in all; leave some out.")
    return terms


def _unclosed(rest: str) -> str:
    words = rest.strip()[:40]
    where = f"before {words}" if words else "at the end of the search"
    return f"The double quote {where} is not closed; end the phrase with another double quote."


def _keyed(key: str, written: str, value: str, quoted: bool) -> Term:
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
    return Term(key, value, quoted)


_EXAMPLES = {"from": "ann", "to": "ann", "cc": "ann", "subject": "budget", "body": "budget",
             "has": "attachment", "is": "unread", "before": "2026-01-31", "after": "2026-01-01"}


# ---- running a search ----

@dataclass
class Text:
    """A text term as the index sees it: its words, in its field (None: subject, sender, body)."""

    key: str | None
    words: list[str]
    prefix: bool  # the last word also finds longer words it begins


def texts(terms: list[Term]) -> list[Text]:
    """The text terms; one without letters or digits (only punctuation) is left out."""
    out = []
    for t in terms:
        if t.key in _TEXT_KEYS:
            ws = index.words(str(t.value))
            if ws:
                out.append(Text(t.key, ws, not t.quoted and len(ws[-1]) >= index.PREFIX_FROM))
    return out


def hides_unreadable(terms: list[Term]) -> bool:
    """Whether the search reads bodies (a word without a key, or body:): then a copy withdrawn
    from its reader or past its end date is not found by them (its sender's copy still is)."""
    return any(t.key in (None, "body") and index.words(str(t.value)) for t in terms)


def entry_conditions(terms: list[Term]) -> list:
    """The conditions on the copies' own columns (read state, date)."""
    out = []
    for t in terms:
        if t.key == "is":
            out.append(MailboxEntry.unread == t.value)
        elif t.key == "before":
            out.append(MailboxEntry.sent_at < t.value)
        elif t.key == "after":
            out.append(MailboxEntry.sent_at >= t.value)
    return out


Before = Callable[[Session], None]  # called before each statement (the time limit, search_run.py)


def no_limit(_session: Session) -> None:
    return None


def page(session: Session, user: User, folder: str, limit: int, cursor: str | None, unread: bool | None,
         terms: list[Term], order: str, before: Before = no_limit) -> dict:
    """One page of the folder's copies that match, and how many match (up to COUNT_LIMIT)."""
    from pen_server import mailbox

    found = texts(terms)
    attachment = any(t.key == "has" for t in terms)
    dialect = session.get_bind().dialect.name
    if dialect == "sqlite" and (found or attachment):
        return _sqlite_page(session, user, folder, limit, cursor, unread, terms, found, attachment, order, before)
    filters = [MailboxEntry.user_id == user.id, MailboxEntry.folder == folder, *entry_conditions(terms)]
    if unread is not None:
        filters.append(MailboxEntry.unread == unread)
    query = select(MailboxEntry)
    unreadable = hides_unreadable(terms)
    if attachment or unreadable:
        query = query.join(Message, Message.id == MailboxEntry.message_id)
    if attachment:
        filters.append(Message.attachment_count > 0)
    if unreadable:  # a copy that can no longer be read is never found by the words of its body
        filters.append(or_(MailboxEntry.is_sender, and_(MailboxEntry.revoked_at.is_(None), or_(
            Message.expires_at.is_(None), Message.expires_at > utcnow()))))
    words: list = []
    if found:
        query = query.join(index.message_search, index.message_search.c.message_id == MailboxEntry.message_id)
        conn = session.connection()
        for column, tsquery in _pg_tsqueries(found, lambda w: index.expansion(conn, w)).items():
            words.append(index.message_search.c[column].op("@@")(literal_column(tsquery)))
        before(session)
        # The planner cannot tell a rare word from a common one well (it guesses 0.5% for any
        # word outside its statistics' most common ones, and OR of a prefix's words adds up),
        # and walking the folder for a rare word reads all of it. So the GIN index is asked
        # first for at most RARE matches in the whole PEN: when that is all of them, only
        # their copies are looked at.
        matching = select(index.message_search.c.message_id).where(*words)
        rare = session.scalar(select(func.count()).select_from(matching.limit(RARE + 1).subquery())) <= RARE
        candidates = list(session.scalars(matching)) if rare else []
        if rare:
            filters.append(MailboxEntry.message_id.in_(candidates) if candidates else false())
        else:
            filters.extend(words)
        if rare:
            query = select(MailboxEntry)
            if attachment or unreadable:
                query = query.join(Message, Message.id == MailboxEntry.message_id)
    oldest = order == "oldest"
    keys = ((MailboxEntry.sent_at.asc(), MailboxEntry.message_id.asc()) if oldest
            else (MailboxEntry.sent_at.desc(), MailboxEntry.message_id.desc()))
    before(session)
    if dialect == "postgresql" and (found or attachment):
        # Nested loops only, for this search's transaction: either the folder's page index newest
        # first, each copy's words looked at, until a page (a common word), or the GIN index's
        # few matches, each copy looked up (a rare one). A hash join over the folder would read
        # every copy of a 100,000-message folder for one rare word when the planner misjudges it
        # as common (it guesses 0.5% for any word outside its statistics' most common ones).
        session.execute(text("SELECT set_config('enable_hashjoin', 'off', true), "
                             "set_config('enable_mergejoin', 'off', true)"))
    # The first COUNT_LIMIT + 1 matches in page order: their number is `total`, and without a
    # cursor the page is their first ones.
    first = list(session.scalars(query.with_only_columns(MailboxEntry.id).where(*filters).order_by(*keys)
                                 .limit(COUNT_LIMIT + 1)))
    if not cursor:
        return _rows(session, first[:limit + 1], limit, order, len(first))
    before(session)
    rows, next_cursor = mailbox.keyset(session, query, filters, limit, cursor, order)
    return _out(rows, next_cursor, len(first))


def _out(rows, next_cursor, counted: int) -> dict:
    from pen_server import mailbox

    return {"items": [mailbox.summary_out(e) for e in rows], "next_cursor": next_cursor,
            "total": min(counted, COUNT_LIMIT), "total_exact": counted <= COUNT_LIMIT}


# PostgreSQL: `doc` holds subject (weight A), sender (B) and body (D); `addr` To (A) and Cc (B).
_PG_FIELDS = {None: ("doc", "ABD"), "subject": ("doc", "A"), "from": ("doc", "B"), "body": ("doc", "D"),
              "to": ("addr", "A"), "cc": ("addr", "B")}


def _pg_tsquery(t: Text, weights: str, expand: Callable[[str], list[str] | None]) -> str:
    def lexeme(word: str, last: bool, w: str) -> str:
        return f"'{word}':{'*' if last and t.prefix else ''}{w}"

    if len(t.words) == 1:
        words = expand(t.words[0]) if t.prefix else None
        if words is not None:  # the words it begins, by name (search_index.expansion)
            return " | ".join(f"'{w}':{weights}" for w in words or t.words)
        return lexeme(t.words[0], True, weights)
    # A phrase per field, so that it never runs from the end of one into the next.
    return " | ".join("(" + " <-> ".join(lexeme(word, i == len(t.words) - 1, w) for i, word in enumerate(t.words))
                      + ")" for w in weights)


def _pg_tsqueries(found: list[Text], expand: Callable[[str], list[str] | None]) -> dict[str, str]:
    """One tsquery literal per column (inlined, not bound: the planner then sees the words and
    their frequencies, and chooses the index or the folder's page order by them)."""
    parts: dict[str, list[str]] = {}
    for t in found:
        column, weights = _PG_FIELDS[t.key]
        parts.setdefault(column, []).append(f"({_pg_tsquery(t, weights, expand)})")
    # Words are letters and digits only (search_index.words): nothing in them needs quoting.
    return {column: "'" + " & ".join(p).replace("'", "''") + "'::tsquery" for column, p in parts.items()}


# SQLite: the FTS5 columns each key reads.
_FTS_COLUMNS = {None: "{subject sender body}", "from": "sender", "to": "tos", "cc": "ccs", "subject": "subject",
                "body": "body"}


def fts_match(user_id: str, found: list[Text], attachment: bool,
              expand: Callable[[str], list[str] | None] = lambda _w: None) -> str:
    """The FTS5 query: the user's messages, each text term in its columns, has:attachment."""
    parts = [f'owners : "{index.owner_word(user_id)}"']
    for t in found:
        words = expand(t.words[0]) if t.prefix and len(t.words) == 1 else None
        if words is not None:  # the words it begins, by name (search_index.expansion)
            named = " OR ".join(f'"{w}"' for w in words or t.words)  # none: the word itself, found nowhere
            parts.append(f"{_FTS_COLUMNS[t.key]} : ({named})")
        else:
            parts.append(f'{_FTS_COLUMNS[t.key]} : "{" ".join(t.words)}"{"*" if t.prefix else ""}')
    if attachment:
        parts.append('meta : "attachment"')
    return " AND ".join(parts)


def _sqlite_page(session: Session, user: User, folder: str, limit: int, cursor: str | None, unread: bool | None,
                 terms: list[Term], found: list[Text], attachment: bool, order: str, before: Before) -> dict:
    """The index hands out its matches newest first (its keys follow sent_at): the user's
    copies in the folder among them, up to a page, joined one by one (CROSS JOIN keeps
    SQLite's join in that order)."""
    from pen_server import mailbox

    where = ["message_search MATCH :match", "e.folder = :folder"]
    before(session)
    conn = session.connection()
    params: dict = {"match": fts_match(user.id, found, attachment, lambda w: index.expansion(conn, w)),
                    "folder": folder, "uid": user.id}
    for i, t in enumerate(terms):
        if t.key == "is":
            where.append(f"e.unread = :is{i}")
            params[f"is{i}"] = bool(t.value)
        elif t.key in ("before", "after"):
            where.append(f"f.rowid {'<' if t.key == 'before' else '>='} :d{i}")
            params[f"d{i}"] = index.key_floor(t.value)  # type: ignore[arg-type]
    if unread is not None:
        where.append("e.unread = :unread")
        params["unread"] = unread
    base = ("FROM message_search f CROSS JOIN search_keys k CROSS JOIN mailbox_entries e "
            "WHERE k.key = f.rowid AND e.user_id = :uid AND e.message_id = k.message_id AND ")
    if hides_unreadable(terms):  # as in page() above
        base = base.replace("CROSS JOIN mailbox_entries e ", "CROSS JOIN mailbox_entries e CROSS JOIN messages m ")
        where.append("m.id = e.message_id AND (e.is_sender OR (e.revoked_at IS NULL AND "
                     "(m.expires_at IS NULL OR m.expires_at > :now)))")
        params["now"] = utcnow().astimezone(UTC).replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")
    oldest = order == "oldest"
    direction = "ASC" if oldest else "DESC"
    before(session)
    # The first COUNT_LIMIT + 1 matches: their number is `total`, and without a cursor the page is
    # their first ones (one pass over the index instead of two).
    first = list(session.scalars(text(f"SELECT e.id {base}{' AND '.join(where)} ORDER BY f.rowid {direction} "
                                      f"LIMIT {COUNT_LIMIT + 1}"), params))
    counted = len(first)
    if not cursor:
        return _rows(session, first[:limit + 1], limit, order, counted)
    c_sent, c_id = mailbox.decode_cursor(cursor, order)
    key = session.scalar(text("SELECT key FROM search_keys WHERE message_id = :m"), {"m": c_id})
    if key is None:  # not a message of this PEN: its time alone
        key = index.key_floor(c_sent) + (1023 if oldest else 0)
    where.append(f"f.rowid {'>' if oldest else '<'} :after_key")
    params["after_key"] = key
    before(session)
    ids = list(session.scalars(text(f"SELECT e.id {base}{' AND '.join(where)} "
                                    f"ORDER BY f.rowid {direction} LIMIT {limit + 1}"), params))
    return _rows(session, ids, limit, order, counted)


def _rows(session: Session, ids: list[int], limit: int, order: str, counted: int) -> dict:
    from pen_server import mailbox

    more = len(ids) > limit
    ids = ids[:limit]
    by_id = {e.id: e for e in session.scalars(select(MailboxEntry).where(MailboxEntry.id.in_(ids))
                                              .options(mailbox.SUMMARY_ONLY))} if ids else {}
    rows = [by_id[i] for i in ids if i in by_id]
    next_cursor = mailbox.encode_cursor(rows[-1].sent_at, rows[-1].message_id, order) if more and rows else None
    return _out(rows, next_cursor, counted)
