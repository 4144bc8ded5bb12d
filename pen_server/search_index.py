"""The full-text index behind the search language (docs/pen-api.md, "Search"): what it holds
of each message, how it is written (in the transaction that writes the message) and built
again (migration 0010, `migrate-to`), and the query a search becomes on each database.

Both databases index the same words, cut out here in Python (`words`): runs of letters and
digits, lower-case, without accents; everything else separates words. So `cat@abc.example`
is the words cat, abc, example on SQLite and PostgreSQL alike (PostgreSQL's own parser would
keep an e-mail address as one word, SQLite's as three).

SQLite: an FTS5 table without content of its own (`message_search`, only the index: the text
is in `messages` already), one row per message, whose rowid is the message's `sent_at` in
microseconds times 1024 (plus a count for messages of the same microsecond; `search_keys`
maps it to the message). So the index hands its matches out newest first, and a page of 50
is the first 50 matches that are the user's copies in the folder, without reading the rest;
the owners of a message's copies are words of a column of their own, so a search reads only
the user's messages even in a PEN of many users. An FTS5 table without content forgets a row
only when it is given the row's values again (`forget`): the message's row gives its text
again through `document`, and `search_keys` keeps what it cannot give (the owners as they
were indexed, and the attachment mark), so deleting messages takes their words out of the
index. `words` is therefore part of the file format: a change to it needs a migration that
builds the index again.

PostgreSQL: a table `message_search` (message_id, doc, addr) of two tsvectors with a GIN
index each; a search asks it for its matches in the whole PEN up to search.RARE, and when
those are all, looks only at their copies; else it walks the folder's page index newest
first testing each message (search.page). Its rows go with their messages (a foreign key).

On both, `search_words` lists the words of three or more characters that the index holds,
for prefix searches (`expansion`); `prune` takes out those of deleted messages that no other
message has."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Column, Connection, MetaData, String, Table, Text, text

# The words of a body are indexed up to this many bytes (UTF-8) of its text: PostgreSQL refuses
# a tsvector over 1 MiB, and the words of 256 KiB make at most about 800 KB of one (each
# distinct word of n bytes costs n + 8 bytes there, and needs n + 1 bytes of text). 256 KiB is
# some 40,000 words, far more than a letter; both databases cut at the same place.
BODY_BYTES = 256 * 1024
PREFIX_FROM = 3  # a word of at least this many characters also finds the longer words it begins
LONGEST_WORD = 500  # a search is at most 500 characters: longer words are not indexed
_WORD = re.compile(r"[^\W_]+")  # letters and digits (Unicode categories L and N)

# PostgreSQL's table (not one of the models: its columns exist only there). The tsvector
# columns are named for the queries only (their type would import SQLAlchemy's PostgreSQL
# dialect, 0.1-0.2 s, into every SQLite server's start).
_pg = MetaData()
message_search = Table("message_search", _pg, Column("message_id", String(32), primary_key=True),
                       Column("doc", Text), Column("addr", Text))

SQLITE_TABLES = ("search_words", "search_keys", "message_search")  # the FTS5 table's shadow tables go with it
PG_TABLES = ("message_search", "search_words")


def words(value: str | None) -> list[str]:
    """The words of a text as both databases index them: lower-case, accents removed."""
    if not value:
        return []
    if not value.isascii():
        value = "".join(c for c in unicodedata.normalize("NFKD", value) if not unicodedata.combining(c))
    return [w for w in _WORD.findall(value.lower()) if len(w) <= LONGEST_WORD]


def _joined(items: Iterable[str], limit: int | None = None) -> str:
    out = " ".join(items)
    if limit is not None and len(out) > limit // 4:  # cheap check first: a char is at most 4 bytes
        raw = out.encode()
        if len(raw) > limit:
            out = raw[:limit].decode(errors="ignore").rsplit(" ", 1)[0]
    return out


def _address_words(items) -> list[str]:
    out: list[str] = []
    for a in items or []:
        if isinstance(a, dict):
            out += words(a.get("email")) + words(a.get("name"))
    return out


@dataclass
class Document:
    """One message's words, per field."""

    message_id: str
    sent_at: datetime
    subject: str
    sender: str
    to: str
    cc: str
    body: str
    attachment: bool
    owners: list[str]


def document(message: dict, owners: Iterable[str]) -> Document:
    """`message`: the columns of a messages row (id, sent_at, subject, from_email, from_name,
    to_list, cc_list, body_text, attachment_count); `owners`: the users holding a copy."""
    body = message.get("body_text") or ""
    if len(body) > BODY_BYTES // 4:
        body = body.encode()[:BODY_BYTES].decode(errors="ignore")
    return Document(
        message["id"], message["sent_at"], _joined(words(message.get("subject"))),
        _joined(words(message.get("from_email")) + words(message.get("from_name"))),
        _joined(_address_words(message.get("to_list"))), _joined(_address_words(message.get("cc_list"))),
        _joined(words(body), BODY_BYTES), bool(message.get("attachment_count")), sorted(set(owners)))


def owner_word(user_id: str) -> str:
    """A user as a word of the owners column: hex, as ids mix cases and hyphens."""
    return "o" + user_id.encode().hex()


def micros(when: datetime) -> int:
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    delta = when - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def key_floor(when: datetime) -> int:
    """The lowest SQLite index key of a message sent at `when`."""
    return micros(when) << 10


_SQLITE_INSERT = text("INSERT INTO message_search (rowid, subject, sender, tos, ccs, body, meta, owners) "
                      "VALUES (:key, :subject, :sender, :to, :cc, :body, :meta, :owners)")
_PG_INSERT = text("INSERT INTO message_search (message_id, doc, addr) "
                  "VALUES (:id, CAST(:doc AS tsvector), CAST(:addr AS tsvector))")
# The tsvectors are written out here rather than made by to_tsvector: PostgreSQL's parser
# would cut words its own way (7e12abc is a number and a word to it), and the words must be
# those of `words`, as SQLite's are. Its 'simple' configuration would have been the choice
# otherwise: mail comes in every language, and a stemming configuration (english, say) folds
# one language's words and mangles the others'.
_PG_MAX_POSITION = 16383  # PostgreSQL keeps word positions up to this
_PG_MAX_WORD_BYTES = 2047  # and words up to this long (a search is at most 500 characters)


def pg_tsvector(fields: list[tuple[str, str]]) -> str:
    """tsvector input text of fields (joined words, weight letter), positions running on."""
    seen: dict[str, list[str]] = {}
    position = 0
    for joined, weight in fields:
        for word in joined.split():
            position = min(position + 1, _PG_MAX_POSITION)
            if len(word) * 4 > _PG_MAX_WORD_BYTES and len(word.encode()) > _PG_MAX_WORD_BYTES:
                continue
            places = seen.setdefault(word, [])
            if len(places) < 256:  # PostgreSQL keeps 256 positions a word
                places.append(f"{position}{weight}")
        position = min(position + 1, _PG_MAX_POSITION)  # a gap: no phrase runs from one field into the next
    return " ".join(f"'{w}':{','.join(p)}" for w, p in seen.items())


def _vocabulary(docs: Iterable[Document]) -> list[str]:
    """The words of these messages that prefix searches look up (`search_words`)."""
    return sorted({w for d in docs for field in (d.subject, d.sender, d.to, d.cc, d.body)
                   for w in field.split() if len(w) >= PREFIX_FROM})


def _fts_row(key: int, d: Document, meta: str, owners: str) -> dict:
    return {"key": key, "subject": d.subject, "sender": d.sender, "to": d.to, "cc": d.cc, "body": d.body,
            "meta": meta, "owners": owners}


def add(conn: Connection, docs: list[Document]) -> None:
    """Index these messages, in the caller's transaction."""
    if not docs:
        return
    vocabulary = _vocabulary(docs)
    if conn.dialect.name == "postgresql":
        conn.execute(_PG_INSERT, [{"id": d.message_id,
                                   "doc": pg_tsvector([(d.subject, "A"), (d.sender, "B"), (d.body, "D")]),
                                   "addr": pg_tsvector([(d.to, "A"), (d.cc, "B")])} for d in docs])
        if vocabulary:
            conn.execute(text("INSERT INTO search_words (word) SELECT unnest(CAST(:w AS varchar[])) "
                              "ON CONFLICT DO NOTHING"), {"w": vocabulary})
        return
    keys: list[dict] = []
    rows: list[dict] = []
    used: list[int] = []
    for d in docs:
        floor = key_floor(d.sent_at)
        taken = conn.scalar(text("SELECT max(key) FROM search_keys WHERE key BETWEEN :a AND :b"),
                            {"a": floor, "b": floor + 1023})
        key = floor if taken is None else taken + 1
        for earlier in used:  # the same microsecond within this batch
            if key <= earlier < floor + 1024:
                key = earlier + 1
        used.append(key)
        meta, owners = "attachment" if d.attachment else "", " ".join(owner_word(u) for u in d.owners)
        keys.append({"key": key, "message_id": d.message_id, "meta": meta, "owners": owners})
        rows.append(_fts_row(key, d, meta, owners))
    conn.execute(text("INSERT INTO search_keys (key, message_id, meta, owners) "
                      "VALUES (:key, :message_id, :meta, :owners)"), keys)
    conn.execute(_SQLITE_INSERT, rows)
    if vocabulary:
        conn.execute(text("INSERT OR IGNORE INTO search_words (word) VALUES (:w)"), [{"w": w} for w in vocabulary])


_SQLITE_DELETE = text("INSERT INTO message_search (message_search, rowid, subject, sender, tos, ccs, body, meta, "
                      "owners) VALUES ('delete', :key, :subject, :sender, :to, :cc, :body, :meta, :owners)")
# A body is read only as far as `document` indexes it (BODY_BYTES bytes are at most as many
# characters): a batch of messages with bodies of megabytes costs no more memory than that.
_COLUMNS = ("id, sent_at, subject, from_email, from_name, to_list, cc_list, "
            f"substr(body_text, 1, {BODY_BYTES}) AS body_text, attachment_count")


def forget(conn: Connection, message_ids: list[str]) -> list[str]:
    """Take these messages out of the index, in the caller's transaction, before their rows
    are deleted (SQLite's index is given each row's values again, which the message's row and
    `search_keys` hold; PostgreSQL's rows go with the messages). Returns their words, for
    `prune` once the rows are gone."""
    vocabulary: set[str] = set()
    for start in range(0, len(message_ids), _BATCH):
        ids = message_ids[start:start + _BATCH]
        docs = [document(_as_message(r), []) for r in conn.execute(
            text(f"SELECT {_COLUMNS} FROM messages WHERE id IN :ids").bindparams(_expanding("ids")),
            {"ids": ids}).mappings()]
        vocabulary.update(_vocabulary(docs))
        if conn.dialect.name == "postgresql":
            continue
        kept = {mid: (key, meta, owners) for key, mid, meta, owners in conn.execute(
            text("SELECT key, message_id, meta, owners FROM search_keys WHERE message_id IN :ids")
            .bindparams(_expanding("ids")), {"ids": ids})}
        rows = [_fts_row(kept[d.message_id][0], d, *kept[d.message_id][1:]) for d in docs if d.message_id in kept]
        if rows:
            conn.execute(_SQLITE_DELETE, rows)
            conn.execute(text("DELETE FROM search_keys WHERE message_id IN :ids").bindparams(_expanding("ids")),
                         {"ids": ids})
    return sorted(vocabulary)


def prune(conn: Connection, candidates: list[str]) -> int:
    """Take out of `search_words` those of `candidates` (words of deleted messages, from
    `forget`) that no message in the index has any more; how many."""
    gone = 0
    for start in range(0, len(candidates), _BATCH):
        batch = candidates[start:start + _BATCH]
        if conn.dialect.name == "postgresql":
            # Each word as a tsquery of that one lexeme, looked up in both tsvectors through their
            # GIN indexes (a word in many messages costs its whole posting list: removals are rare).
            gone += conn.execute(text(
                "DELETE FROM search_words s WHERE s.word = ANY(CAST(:w AS varchar[])) AND NOT EXISTS ("
                "SELECT 1 FROM message_search m WHERE m.doc @@ CAST(quote_literal(s.word) AS tsquery) "
                "OR m.addr @@ CAST(quote_literal(s.word) AS tsquery))"), {"w": batch}).rowcount
            continue
        # fts5vocab lists the terms the index holds now (its deletions applied); a word of the
        # owners column (o and hex) that is also a real word only keeps that word listed.
        conn.execute(text("CREATE VIRTUAL TABLE IF NOT EXISTS temp.search_vocabulary "
                          "USING fts5vocab(main, message_search, row)"))
        unused = [w for w in batch if conn.scalar(
            text("SELECT 1 FROM temp.search_vocabulary WHERE term = :w"), {"w": w}) is None]
        if unused:
            conn.execute(text("DELETE FROM search_words WHERE word = :w"), [{"w": w} for w in unused])
            gone += len(unused)
    return gone


MAX_EXPANSION = 32  # a word that begins more words than this is looked up as FTS5's own prefix


def expansion(conn: Connection, word: str) -> list[str] | None:
    """The indexed words that `word` begins, or None when there are more than MAX_EXPANSION of
    them. SQLite's FTS5 answers a prefix (word*) by merging the lists of every word it begins
    into one, whole, before the first match comes out (40 ms for a word in each of a million
    messages); the same words named one by one come out newest first, lazily, and a page stops
    after 50. PostgreSQL's planner guesses 2% for any prefix (word:*), and so reads every match
    through the GIN index where walking the folder would stop after a page; for words by name
    it has the frequencies of its statistics."""
    found = list(conn.scalars(text(f"SELECT word FROM search_words WHERE word >= :w AND word < :end "
                                   f"ORDER BY word LIMIT {MAX_EXPANSION + 1}"),
                              {"w": word, "end": word + "\U0010ffff"}))
    return found if len(found) <= MAX_EXPANSION else None


def create(conn: Connection) -> None:
    """Make the index's tables (empty)."""
    if conn.dialect.name == "postgresql":
        # Every word of three or more characters the index holds, in byte order (see `expansion`).
        conn.execute(text('CREATE TABLE search_words (word VARCHAR COLLATE "C" NOT NULL PRIMARY KEY)'))
        conn.execute(text("CREATE TABLE message_search (message_id VARCHAR(32) NOT NULL PRIMARY KEY "
                          "REFERENCES messages (id) ON DELETE CASCADE, doc TSVECTOR NOT NULL, addr TSVECTOR NOT NULL)"))
        conn.execute(text("CREATE INDEX ix_message_search_doc ON message_search USING gin (doc)"))
        conn.execute(text("CREATE INDEX ix_message_search_addr ON message_search USING gin (addr)"))
        return
    # Every word of three or more characters the index holds (see `expansion`).
    conn.execute(text("CREATE TABLE search_words (word VARCHAR NOT NULL PRIMARY KEY) WITHOUT ROWID"))
    # The FTS5 row's key for each message, and the row's values the message's row cannot give
    # again (see `forget`).
    conn.execute(text("CREATE TABLE search_keys (key INTEGER NOT NULL PRIMARY KEY, "
                      "message_id VARCHAR(32) NOT NULL UNIQUE REFERENCES messages (id) ON DELETE CASCADE, "
                      "meta VARCHAR NOT NULL, owners TEXT NOT NULL)"))
    # No content of its own (the text is in messages), no column sizes (nothing is ranked);
    # detail=full keeps word positions, which phrases need.
    conn.execute(text("CREATE VIRTUAL TABLE message_search USING fts5(subject, sender, tos, ccs, body, meta, owners, "
                      "content='', columnsize=0, tokenize='unicode61 remove_diacritics 2')"))


def drop(conn: Connection) -> None:
    for name in (PG_TABLES if conn.dialect.name == "postgresql" else SQLITE_TABLES[::-1]):
        conn.execute(text(f"DROP TABLE IF EXISTS {name}"))


def tables(dialect: str) -> tuple[str, ...]:
    """The index's tables as the database lists them (FTS5's shadow tables included)."""
    if dialect == "postgresql":
        return PG_TABLES
    return (*SQLITE_TABLES, "message_search_data", "message_search_idx", "message_search_config")


_BATCH = 500  # messages read at a time: at most 500 x BODY_BYTES characters of bodies


def rebuild(conn: Connection) -> int:
    """Index every message (the index's tables empty), oldest first; how many."""
    done = 0
    after: tuple | None = None
    while True:
        where = "" if after is None else "WHERE (sent_at > :s OR (sent_at = :s AND id > :i)) "
        rows = conn.execute(text(
            f"SELECT {_COLUMNS} FROM messages {where}ORDER BY sent_at, id LIMIT {_BATCH}"),
            {} if after is None else {"s": after[0], "i": after[1]}).mappings().all()
        if not rows:
            return done
        ids = [r["id"] for r in rows]
        owners: dict[str, list[str]] = {}
        for mid, uid in conn.execute(text("SELECT message_id, user_id FROM mailbox_entries "
                                          "WHERE message_id IN :ids").bindparams(_expanding("ids")), {"ids": ids}):
            owners.setdefault(mid, []).append(uid)
        add(conn, [document(_as_message(r), owners.get(r["id"], [])) for r in rows])
        done += len(rows)
        after = (rows[-1]["sent_at"], rows[-1]["id"])


def _as_message(row) -> dict:
    """A messages row read through text() as `document` takes it."""
    m = dict(row)
    m["sent_at"] = _as_datetime(m["sent_at"])
    m["to_list"], m["cc_list"] = _as_list(m["to_list"]), _as_list(m["cc_list"])
    return m


def _expanding(name: str):
    from sqlalchemy import bindparam

    return bindparam(name, expanding=True)


def _as_datetime(value) -> datetime:
    if isinstance(value, str):  # SQLite through text(): the stored text
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _as_list(value) -> list:
    import json

    if isinstance(value, str):
        return json.loads(value)
    return value or []
