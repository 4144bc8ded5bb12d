"""Address completion, `GET /addresses?prefix=&limit=` (docs/pen-api.md, "Address completion"):
the PEN's members and the people on the caller's own messages whose address, name or any
word of the name starts with a prefix, ignoring case, with their stored names.

Both come from indexed tables of lower-case words (models.AddressWord, models.MemberWord),
so a prefix is one range scan however large the mailbox. A copy of a message adds its
sender and, when the message names at most PEOPLE_PER_COPY people, its To and Cc; the
sender's own copy adds its recipients (Bcc too, the sender's own knowledge). These are
people a guest may write to (sending._check_guest), so a guest is offered nothing more."""

from __future__ import annotations

import re
from collections.abc import Iterable

from sqlalchemy import delete, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from pen_server.models import WORD_LENGTH, AddressWord, MemberWord, User

MAX_LIMIT = 50
MAX_PREFIX = 100
PEOPLE_PER_COPY = 20  # a recipient's copy adds the To and Cc of messages naming at most this many
PEOPLE_PER_SENT = 100  # the sender's copy adds at most this many recipients
MEMBER_ROLES = ("member", "admin")
_SPLIT = re.compile(r"[\s,.;:'\"()<>\[\]/-]+")
_CHUNK = 400  # users per IN list, well under SQLite's parameter limit


def words(email: str, name: str | None, cut: int = WORD_LENGTH) -> set[str]:
    """The lower-case words a person is found by: the address, the whole name, each word of
    it (each cut to `cut` characters, the length the index keeps)."""
    found = {email.lower()[:cut]}
    low = " ".join((name or "").split()).lower()
    if low:
        found.add(low[:cut])
        found.update(w[:cut] for w in _SPLIT.split(low) if w)
    return found


def _norm_prefix(prefix: str) -> str:
    """Leading space dropped, inner runs of space made one ("linda p" finds "Linda Park")."""
    return re.sub(r"\s+", " ", prefix.lstrip()).lower()


def _starts(p: str, email: str, name: str | None) -> bool:
    """The index's answer checked on the whole words (it keeps them cut to WORD_LENGTH)."""
    return any(w.startswith(p) for w in words(email, name, cut=len(email) + len(name or "")))


# ---------------------------------------------------------------- keeping the words

def index_member(session: Session, user: User) -> None:
    """(Re)write a user's member words: call after its role, address, name or disabling
    changes (a disabled member is not offered)."""
    session.execute(delete(MemberWord).where(MemberWord.user_id == user.id))
    if user.role in MEMBER_ROLES and not user.disabled:
        session.flush()  # the user row first: the words refer to it
        session.execute(insert(MemberWord), [{"word": w, "user_id": user.id}
                                             for w in words(user.email, user.display_name)])


def people_of_copy(sender: dict, named: list[dict], bcc: list[dict], is_sender: bool) -> list[dict]:
    """The people one copy of a message adds to its holder's words (see the module's text)."""
    if is_sender:
        return (named + bcc)[:PEOPLE_PER_SENT]
    return [sender] + (named if len(named) <= PEOPLE_PER_COPY else [])


def remember(session: Session, copies: Iterable[tuple[str, str, list[dict]]]) -> None:
    """Add the people of new copies: (holder's user id, holder's own address, people). A
    person already known gets its name refreshed when the copy names it otherwise."""
    wanted: dict[tuple[str, str], str | None] = {}
    for user_id, own, people in copies:
        for person in people:
            email = (person.get("email") or "").lower()
            if not email or email == own.lower():
                continue
            name = " ".join((person.get("name") or "").split()) or None
            key = (user_id, email)
            wanted[key] = name or wanted.get(key)
    if not wanted:
        return
    known: dict[tuple[str, str], str | None] = {}
    holders = sorted({u for u, _ in wanted})
    emails = sorted({e for _, e in wanted})
    for i in range(0, len(holders), _CHUNK):
        for j in range(0, len(emails), _CHUNK):
            found = session.execute(select(AddressWord.user_id, AddressWord.email, AddressWord.name).distinct().where(
                AddressWord.user_id.in_(holders[i:i + _CHUNK]), AddressWord.email.in_(emails[j:j + _CHUNK])))
            known.update(((u, e), n) for u, e, n in found)
    stale = [key for key, name in wanted.items() if key in known and name and name != known[key]]
    rows = [{"user_id": u, "word": w, "email": e, "name": wanted[(u, e)]}
            for (u, e) in wanted if (u, e) not in known or (u, e) in stale
            for w in words(e, wanted[(u, e)])]
    if not rows:
        return
    try:
        with session.begin_nested():  # a parallel send that added the same word loses nothing
            for u, e in stale:
                session.execute(delete(AddressWord).where(AddressWord.user_id == u, AddressWord.email == e))
            session.execute(insert(AddressWord), rows)
    except IntegrityError:
        pass  # completion words only: the message itself is not at stake


# ---------------------------------------------------------------- completing

def complete(session: Session, user: User, prefix: str, limit: int) -> list[dict]:
    """Up to `limit` people {"email", "name"} for the prefix, by name then address."""
    p = _norm_prefix(prefix)
    if not p:
        return []  # spaces alone start nothing
    low, high = p[:WORD_LENGTH], p[:WORD_LENGTH] + "\U0010ffff"
    fetch = MAX_LIMIT * 4
    found: dict[str, str | None] = {}
    for email, name in session.execute(
            select(AddressWord.email, AddressWord.name).distinct().where(
                AddressWord.user_id == user.id, AddressWord.word >= low, AddressWord.word < high).limit(fetch)):
        found[email] = name
    for email, name in session.execute(
            select(User.email, User.display_name).distinct().join(MemberWord, MemberWord.user_id == User.id).where(
                MemberWord.word >= low, MemberWord.word < high, User.role.in_(MEMBER_ROLES)).limit(fetch)):
        found[email] = name or found.get(email)  # a member's own name before the one a sender wrote
    found.pop(user.email.lower(), None)
    people = [{"email": e, "name": n or None} for e, n in found.items() if _starts(p, e, n)]
    people.sort(key=lambda a: ((a["name"] or a["email"]).lower(), a["email"]))
    return people[:limit]
