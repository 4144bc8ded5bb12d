"""Members' lifecycle, one code for the command line (`pen-server user ...`, `pen-server
package ...`) and the admin API (`GET /admin/users`, `PATCH /admin/users/{id}`): disabling
and enabling an account, its package and role, removing it, and the packages themselves.

Disabling ends every sign-in of the account in its own transaction (API and refresh tokens
revoked, web sessions deleted: accounts.revoke_all), and the change returns a `signin.ended`
event for the account: published once committed, it reaches each of the account's open
event streams, in whichever process holds it (events.py), and each looks its sign-in up and
closes. From then on every token and cookie it held is refused, and signing in fails with
the 401 of a wrong password. The messages it sent stay with their recipients, and messages
sent to it still reach its inbox for when it is enabled again.

Removing an account that holds messages (sent, or copies of its own) needs a choice:
- `keep`: the messages it sent stay readable by their recipients, under a tombstone of the
  account (disabled, no password, its address freed for a new account and never listed);
  its own copies, uploads and completion words go;
- `delete`: the messages it sent are deleted for every recipient too, their words taken out
  of the search index (search_index.forget, prune), then the account.
An account that sent nothing, or whose sent messages were deleted, leaves no row.

An unknown package is refused with one sentence that lists the packages (`Refused`,
"invalid": exit 2 on the command line, 422 in the API). The last administrator that can sign
in cannot be disabled, demoted or removed ("conflict": exit 1, 409)."""

from __future__ import annotations

import difflib

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from pen_server import accounts, paging, search_index
from pen_server.addresses import index_member
from pen_server.mailbox import count_change
from pen_server.models import (
    AddressWord,
    Attachment,
    FolderCount,
    IdempotencyKey,
    MailboxEntry,
    Message,
    Notification,
    Package,
    User,
    utcnow,
)
from pen_server.text import plural

Events = list[tuple[str, str, dict]]  # (user id, kind, payload), to publish after the commit
CHOICES = ("keep", "delete")
TOMBSTONE_DOMAIN = "removed.invalid"  # .invalid (RFC 2606): no mail can ever go there


class Refused(Exception):
    """One sentence. kind "invalid": the request names what does not exist, or leaves out a
    choice it needs (exit 2, 422, with `field`); "conflict": the PEN's state forbids it
    (exit 1, 409)."""

    def __init__(self, message: str, kind: str = "conflict", field: str | None = None):
        super().__init__(message)
        self.message, self.kind, self.field = message, kind, field

    @property
    def exit_code(self) -> int:
        return 2 if self.kind == "invalid" else 1


def _names(names: list[str]) -> str:
    quoted = [f"'{n}'" for n in names]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " and " + quoted[-1]


# ---------------------------------------------------------------- packages

def package_names(session: Session) -> list[str]:
    return list(session.scalars(select(Package.name).order_by(Package.name)))


def check_package(session: Session, name: str | None) -> str | None:
    """`name` when it is a package of this PEN (or None: no package), else Refused with the
    sentence that lists the packages."""
    if name is None or session.get(Package, name) is not None:
        return name
    names = package_names(session)
    near = difflib.get_close_matches(name, names, n=1)
    hint = f" (did you mean '{near[0]}'?)" if near else ""
    known = (f"the only package is '{names[0]}'" if len(names) == 1 else f"the packages are {_names(names)}") \
        if names else "this PEN has no packages yet"
    raise Refused(f"There is no package '{name}'{hint}; {known}.", "invalid", "package")


def packages(session: Session) -> list[tuple[Package, int]]:
    """Each package with how many accounts have it."""
    counts = dict(session.execute(select(User.package, func.count()).where(User.package.is_not(None))
                                  .group_by(User.package)).all())
    return [(p, counts.get(p.name, 0)) for p in session.scalars(select(Package).order_by(Package.name))]


def remove_package(session: Session, name: str) -> None:
    check_package(session, name)
    users = session.scalar(select(func.count()).select_from(User).where(User.package == name)) or 0
    if users:
        raise Refused(f"{plural(users, 'account')} {'has' if users == 1 else 'have'} the package '{name}'; "
                      f"give {'it' if users == 1 else 'them'} another package (or none) first.")
    session.execute(delete(Package).where(Package.name == name))


# ---------------------------------------------------------------- accounts

def find(session: Session, email: str) -> User | None:
    """The account with this address (never a removed member's tombstone)."""
    user = accounts.find_user(session, email.strip())
    return user if user is not None and user.removed_at is None else None


def account_out(user: User) -> dict:
    return {**accounts.user_out(user), "registered": user.registered, "disabled": user.disabled,
            "disabled_at": user.disabled_at, "created_at": user.created_at}


def page(session: Session, q: str | None, cursor: str | None, limit: int) -> dict:
    """The accounts by address, those whose address or name holds `q` (ignoring case)."""
    query = select(User).where(User.removed_at.is_(None))
    if q:
        query = query.where(User.email.icontains(q, autoescape=True) | User.display_name.icontains(q, autoescape=True))
    rows, next_cursor = paging.by_key(session, query, User.email, cursor, limit)
    return {"items": [account_out(u) for u in rows], "next_cursor": next_cursor}


def _keep_an_admin(session: Session, user: User, doing: str) -> None:
    """Refused when `user` is the last administrator that can sign in."""
    if user.role != "admin" or user.disabled:
        return
    others = session.scalar(select(func.count()).select_from(User).where(
        User.role == "admin", User.disabled_at.is_(None), User.removed_at.is_(None), User.id != user.id))
    if not others:
        raise Refused(f"{user.email} is the only administrator of this PEN that can sign in, so it cannot be "
                      f"{doing}; make another account an administrator first.")


def set_disabled(session: Session, user: User, disabled: bool) -> Events:
    if disabled == user.disabled:
        return []
    if disabled:
        _keep_an_admin(session, user, "disabled")
        user.disabled_at = utcnow()
        accounts.revoke_all(session, user.id)
    else:
        user.disabled_at = None
    index_member(session, user)  # a disabled member is not offered by address completion
    return [(user.id, "signin.ended", {})] if disabled else []


def set_package(session: Session, user: User, package: str | None) -> None:
    user.package = check_package(session, package)


def set_role(session: Session, user: User, role: str) -> None:
    """`role` member or admin (the API's schema and the command's choices allow no other)."""
    if role != "admin":
        _keep_an_admin(session, user, "made a member")
    user.role = role
    index_member(session, user)  # a guest made a member is offered from now on


def change(session: Session, user: User, fields: dict) -> Events:
    """PATCH /admin/users/{id} with the fields given: `package` (null: none), `role` and
    `disabled` (null: unchanged); the package is checked before anything changes."""
    if "package" in fields:
        check_package(session, fields["package"])
    if fields.get("role") is not None:
        set_role(session, user, fields["role"])
    if "package" in fields:
        set_package(session, user, fields["package"])
    return set_disabled(session, user, fields["disabled"]) if fields.get("disabled") is not None else []


def remove(session: Session, user: User, messages: str | None) -> tuple[str, Events]:
    """Remove an account (see the module's text); returns a sentence of what was done and the
    events to publish: `signin.ended` to it, `resync` to each account that lost a copy."""
    uid = user.id
    sent = session.scalar(select(func.count()).select_from(Message).where(Message.sender_id == uid)) or 0
    copies = session.scalar(select(func.count()).select_from(MailboxEntry).where(MailboxEntry.user_id == uid)) or 0
    if (sent or copies) and messages not in CHOICES:
        raise Refused(f"{user.email} has sent {plural(sent, 'message')} and holds "
                      f"{plural(copies, 'copy', 'copies')} of messages; say what becomes of them: --messages keep "
                      "(the messages it sent stay readable by their recipients, under a disabled tombstone of the "
                      "account) or --messages delete (they are deleted for their recipients too); to keep its "
                      "mailbox as it is, disable the account instead.", "invalid", "messages")
    _keep_an_admin(session, user, "removed")
    email, holders = user.email, set()
    if sent and messages == "delete":
        theirs = select(Message.id).where(Message.sender_id == uid).scalar_subquery()
        for holder, folder, n in session.execute(
                select(MailboxEntry.user_id, MailboxEntry.folder, func.count())
                .where(MailboxEntry.message_id.in_(theirs), MailboxEntry.user_id != uid)
                .group_by(MailboxEntry.user_id, MailboxEntry.folder)).all():
            count_change(session, holder, folder, -n)
            holders.add(holder)
        conn = session.connection()
        words = search_index.forget(conn, list(session.scalars(select(Message.id).where(Message.sender_id == uid))))
        session.execute(delete(Message).where(Message.sender_id == uid))  # copies, notifications, files go along
        search_index.prune(conn, words)
    accounts.revoke_all(session, uid)
    if sent and messages == "keep":
        for table in (MailboxEntry, FolderCount, AddressWord, IdempotencyKey):
            session.execute(delete(table).where(table.user_id == uid))
        session.execute(delete(Attachment).where(Attachment.owner_id == uid, Attachment.message_id.is_(None)))
        # Its address is free again: a link of an old notification must not find the tombstone.
        session.execute(update(Notification).where(Notification.recipient_user_id == uid)
                        .values(recipient_user_id=None))
        now = utcnow()
        user.email, user.password_hash, user.package = f"removed-{uid}@{TOMBSTONE_DOMAIN}", None, None
        user.disabled_at, user.removed_at = user.disabled_at or now, now
        index_member(session, user)
        said = (f"Removed {email}; {'the message' if sent == 1 else f'the {sent} messages'} it sent "
                f"{'stays' if sent == 1 else 'stay'} readable by their recipients under a disabled tombstone of "
                "the account, and its address is free for a new account.")
    else:
        session.execute(delete(User).where(User.id == uid))
        said = f"Removed {email}" + (f" and the {plural(sent, 'message')} it sent, for their recipients too."
                                     if sent else ".")
    return said, [(uid, "signin.ended", {})] + [(holder, "resync", {}) for holder in sorted(holders)]
