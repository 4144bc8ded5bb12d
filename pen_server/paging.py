"""Keyset paging of the administrator's lists: accounts and the suppression list by one
unique text column, an address (by_key), and the audit trail by row id (audit.page). The
cursor names the last key of a page, so a page stays right while rows come and go."""

from __future__ import annotations

import base64
import binascii
from typing import Any

from sqlalchemy.orm import Session

from pen_server.errors import ApiError

PREFIX = "k|"  # so that a cursor of GET /messages (or any other text) is not taken for one


def encode(key: str) -> str:
    return base64.urlsafe_b64encode((PREFIX + key).encode()).decode().rstrip("=")


def decode(cursor: str) -> str:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raw = ""
    if not raw.startswith(PREFIX) or "\x00" in raw:
        raise ApiError(422, "validation_failed", "The cursor is not one that this server gave out for this list.",
                       fields={"cursor": "not a cursor from this server for this list"})
    return raw[len(PREFIX):]


def by_key(session: Session, query, column, cursor: str | None, limit: int) -> tuple[list, str | None]:
    """`limit` rows of `query` after `cursor`, by `column` ascending, and the next page's
    cursor (None at the end)."""
    if cursor:
        query = query.where(column > decode(cursor))
    rows, last = keyset(session, query, column, limit)
    return rows, encode(last) if last is not None else None


def keyset(session: Session, query, column, limit: int) -> tuple[list, Any]:
    """`limit` rows of `query` (already limited to those after the cursor) by `column`
    ascending, and the last one's key when more follow (None at the end). The lists by
    address above and the audit trail (audit.page, by row id) both page with this."""
    rows = list(session.scalars(query.order_by(column).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, getattr(rows[-1], column.key) if more and rows else None
