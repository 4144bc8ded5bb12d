"""The audit trail: one row for every read, download, reply, forward, withdrawal, end-date
change, notification sent and bounce, chained so that no row changes unnoticed.

Rows get the ids 1, 2, 3... without a gap, and each row's `hash` is a sha256 over its own
fields and the `hash` of the row before it (the first row's `prev_hash` is 64 zeros), as
Certificate Transparency's logs and git's history chain theirs. `verify` walks the chain
and names the first row that does not hold: a changed field, a row removed or put in
between, or rows cut off the end (the head row `audit_head` still names the last one).

Appending first updates the head row: that takes SQLite's write lock, or the head row's
lock on PostgreSQL, until the caller's transaction ends, so writers of several processes
append one after the other and the chain never forks. Callers append last in their
transaction and commit soon after, as every audited request waits for that lock.

No row holds a message body, a subject or a password: who (an account's id and address, or
a guest's address), what, which message and attachment, through what (`api`, `web`,
`intercept`; `smtp` for the delivery worker and bounces) and from which client address."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from pen_server import paging
from pen_server.errors import ApiError, validation
from pen_server.models import AuditHead, AuditRow, utcnow

ACTIONS = ("read", "download", "reply", "forward", "revoke", "expiry", "notified", "bounce")
CHANNELS = ("api", "web", "intercept", "smtp")
ZERO = "0" * 64
CHANNEL_HEADER = "X-PEN-Channel"  # "intercept" from penmail intercept; the API is "api" otherwise
PAGE_MAX = 1000
# `since` of the audit trail's filters (GET /admin/audit, pen-server audit): a day or a time.
SINCE_PATTERN = (r"^[0-9]{4}-[0-9]{2}-[0-9]{2}"
                 r"([Tt ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]+)?)?([Zz]|[+-][0-9]{2}:[0-9]{2})?)?$")
VERIFY_BATCH = 5000


@dataclass
class Who:
    """Who acts and through what: made once per request (`who_of`)."""
    actor_id: str | None
    actor: str | None
    channel: str
    client: str | None = None


@dataclass
class Entry:
    action: str
    who: Who
    message_id: str | None
    attachment_id: str | None = None
    recipient: str | None = None
    detail: dict = field(default_factory=dict)


SMTP = Who(None, None, "smtp")


def who_of(request, settings, user, web: bool = False) -> Who:
    """The actor of an API or web request: its user, the channel, the client's address."""
    from pen_server.signin import client_address

    channel = "web" if web else "api"
    if not web and request.headers.get(CHANNEL_HEADER, "").strip().lower() == "intercept":
        channel = "intercept"
    return Who(user.id, user.email, channel, client_address(request, settings))


def _detail(detail: dict | None) -> str | None:
    return json.dumps(detail, sort_keys=True, separators=(",", ":"), ensure_ascii=False) if detail else None


def row_hash(row_id: int, at: datetime, action: str, actor_id: str | None, actor: str | None,
             recipient: str | None, message_id: str | None, attachment_id: str | None, channel: str,
             client: str | None, detail: str | None, prev_hash: str) -> str:
    fields = [row_id, at.isoformat(), action, actor_id, actor, recipient, message_id, attachment_id, channel,
              client, detail, prev_hash]
    return hashlib.sha256(json.dumps(fields, separators=(",", ":"), ensure_ascii=False).encode()).hexdigest()


def hash_of(row: AuditRow) -> str:
    return row_hash(row.id, row.at, row.action, row.actor_id, row.actor, row.recipient, row.message_id,
                    row.attachment_id, row.channel, row.client, row.detail, row.prev_hash)


def _lock_head(session: Session) -> tuple[int, str]:
    """Take the chain's lock (an UPDATE of the head row) and read where the chain ends, in
    one statement (UPDATE ... RETURNING, on SQLite and PostgreSQL alike)."""
    def touch():
        return session.execute(update(AuditHead).where(AuditHead.id == 1).values(last_id=AuditHead.last_id)
                               .returning(AuditHead.last_id, AuditHead.last_hash)
                               .execution_options(synchronize_session=False)).one_or_none()

    head = touch()
    if head is None:  # the first row of this PEN: make the head (one of several first writers wins)
        try:
            with session.begin_nested():
                session.add(AuditHead(id=1, last_id=0, last_hash=ZERO))
        except IntegrityError:
            pass
        head = touch()
    return head[0], head[1]


def append(session: Session, entries: list[Entry]) -> None:
    """Add rows in the caller's transaction (they stand or fall with what they record)."""
    if not entries:
        return
    last_id, last_hash = _lock_head(session)
    at = utcnow()
    rows = []
    for e in entries:
        last_id += 1
        detail = _detail(e.detail)
        digest = row_hash(last_id, at, e.action, e.who.actor_id, e.who.actor, e.recipient, e.message_id,
                          e.attachment_id, e.who.channel, e.who.client, detail, last_hash)
        rows.append({"id": last_id, "at": at, "action": e.action, "actor_id": e.who.actor_id, "actor": e.who.actor,
                     "recipient": e.recipient, "message_id": e.message_id, "attachment_id": e.attachment_id,
                     "channel": e.who.channel, "client": e.who.client, "detail": detail, "prev_hash": last_hash,
                     "hash": digest})
        last_hash = digest
    session.execute(insert(AuditRow), rows)
    session.execute(update(AuditHead).where(AuditHead.id == 1).values(last_id=last_id, last_hash=last_hash)
                    .execution_options(synchronize_session=False))


# -- reading ---------------------------------------------------------------------------------

def row_out(row: AuditRow, with_client: bool = True) -> dict:
    from pen_server.schemas import rfc3339

    return {"id": row.id, "at": rfc3339(row.at), "action": row.action, "actor": row.actor,
            "recipient": row.recipient, "message_id": row.message_id, "attachment_id": row.attachment_id,
            "channel": row.channel, "client": row.client if with_client else None,
            "detail": json.loads(row.detail) if row.detail else {}, "hash": row.hash}


def encode_cursor(row_id: int) -> str:
    return base64.urlsafe_b64encode(f"audit|{row_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        kind, _, number = raw.partition("|")
        if kind != "audit" or not number.isdigit():
            raise ValueError
        return int(number)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise ApiError(422, "validation_failed", "The cursor is not one that this server gave out for the audit "
                                                 "trail.", fields={"cursor": "not an audit cursor"}) from None


def page(session: Session, *, message_id: str | None = None, user: str | None = None,
         since: datetime | None = None, after_id: int = 0, limit: int = 100) -> tuple[list[AuditRow], str | None]:
    """Rows oldest first (the chain's order) after `after_id`, and the next page's cursor.
    `user` is an e-mail address: the rows it acted in, or that concern it as a recipient."""
    query = select(AuditRow).where(AuditRow.id > after_id)
    if message_id is not None:
        query = query.where(AuditRow.message_id == message_id)
    if user is not None:
        query = query.where(or_(AuditRow.actor == user, AuditRow.recipient == user))
    if since is not None:
        query = query.where(AuditRow.at >= since)
    rows, last = paging.keyset(session, query, AuditRow.id, limit)
    return rows, encode_cursor(last) if last is not None else None


def parse_since(value: str) -> datetime:
    """YYYY-MM-DD (the day's start, UTC) or an RFC 3339 time; else 422."""
    try:
        parsed = datetime.fromisoformat(value.strip().replace("z", "Z"))
    except ValueError:
        raise validation({"since": "YYYY-MM-DD or an RFC 3339 time"},
                         f"since {value[:40]!r} is not a date (YYYY-MM-DD) or an RFC 3339 time.") from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def all_rows(session: Session, **filters) -> Iterator[AuditRow]:
    after = 0
    while True:
        rows, cursor = page(session, after_id=after, limit=VERIFY_BATCH, **filters)
        yield from rows
        if cursor is None:
            return
        after = rows[-1].id


@dataclass
class Verdict:
    rows: int
    broken: int | None = None  # the first row that does not hold
    why: str = ""


def verify(session: Session) -> Verdict:
    """Walk the chain from row 1: each id the one after the last, each prev_hash the last
    row's hash, each hash right for its fields; then the head names the last row."""
    expected, prev = 1, ZERO
    for row in all_rows(session):
        if row.id != expected:
            return Verdict(expected - 1, expected, f"row {expected} is missing (the next row is {row.id})")
        if row.prev_hash != prev:
            return Verdict(expected - 1, row.id, f"row {row.id} does not follow row {row.id - 1}: one of them "
                                                 "was changed, or a row was put in between")
        if hash_of(row) != row.hash:
            return Verdict(expected - 1, row.id, f"row {row.id} does not match its hash: it was changed after "
                                                 "it was written")
        prev, expected = row.hash, expected + 1
    head = session.get(AuditHead, 1)
    count = expected - 1
    if head is not None and head.last_id > count:
        return Verdict(count, count + 1, f"the trail ends at row {count}, but {head.last_id} rows were written: "
                                         f"rows from {count + 1} on were removed")
    if head is not None and (head.last_id != count or head.last_hash != prev):
        return Verdict(count, count, f"the head of the chain does not name row {count}, the last one: the head "
                                     "or the last rows were changed")
    return Verdict(count)
