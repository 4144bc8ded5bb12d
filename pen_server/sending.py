"""Sending: the message, every recipient's copy and one outbox row per recipient, written
in one transaction; idempotent retries; the guest rule; resending failed notifications."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from pen_server import (
    addresses,
    after_send,
    audit,
    effective_settings,
    search_index,
    security,
    send_limits,
    suppression,
)
from pen_server.accounts import normalize_email
from pen_server.errors import ApiError, not_found, validation
from pen_server.mailbox import count_change
from pen_server.models import (
    Attachment,
    FolderCount,
    IdempotencyKey,
    MailboxEntry,
    Message,
    Notification,
    User,
    new_id,
    utcnow,
)
from pen_server.schemas import SendIn
from pen_server.settings import Settings
from pen_server.text import clean_body, has_control, snippet, strip_controls

IDEMPOTENCY_HOURS = 24
IDEMPOTENCY_KEY_MAX = 255
# Printable ASCII; no space at either end, since HTTP drops those from a header's value.
IDEMPOTENCY_KEY_PATTERN = r"^[!-~]([ -~]*[!-~])?$"


def valid_idempotency_key(key: str | None) -> str:
    if key is None or len(key) > IDEMPOTENCY_KEY_MAX or not re.fullmatch(IDEMPOTENCY_KEY_PATTERN, key):
        raise ApiError(400, "invalid_request",
                       "Sending needs an Idempotency-Key header of 1 to 255 printable ASCII characters.")
    return key


def _request_hash(body: SendIn) -> str:
    canonical = json.dumps(body.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _recipients(body: SendIn) -> tuple[dict[str, list[dict]], list[tuple[str, dict]]]:
    """Normalised lists as written, and each distinct recipient once with its first kind."""
    fields: dict[str, str] = {}
    lists: dict[str, list[dict]] = {"to": [], "cc": [], "bcc": []}
    seen: set[str] = set()
    unique: list[tuple[str, dict]] = []
    for kind in ("to", "cc", "bcc"):
        for i, addr in enumerate(getattr(body, kind)):
            name = addr.name.strip() if addr.name else None
            if name and has_control(name):
                fields[f"{kind}[{i}].name"] = "a name cannot contain control characters or line breaks"
                continue
            try:
                email = normalize_email(addr.email)
            except ValueError as exc:
                fields[f"{kind}[{i}].email"] = str(exc)
                continue
            entry = {"email": email, "name": name or None}
            lists[kind].append(entry)
            if email not in seen:
                seen.add(email)
                unique.append((kind, entry))
    if fields:
        raise validation(fields)
    if not unique:
        raise validation({"to": "at least one recipient is needed"}, "A message needs at least one recipient.")
    return lists, unique


def _check_guest(session: Session, user: User, recipients: list[tuple[str, dict]]) -> None:
    """A guest writes only to PEN members and to the people named on messages it holds a copy
    of. Only its own copies count: a reply in its thread that it never received must not let
    it write to (nor, by the answer, learn of) the people named there."""
    known: set[str] = set()
    for from_email, to, cc, bcc, is_sender in session.execute(
            select(Message.from_email, Message.to_list, Message.cc_list, Message.bcc_list, MailboxEntry.is_sender)
            .join(MailboxEntry, MailboxEntry.message_id == Message.id).where(MailboxEntry.user_id == user.id)):
        known.add(from_email)
        known.update(a["email"] for a in to + cc + (bcc if is_sender else []))
    for _kind, addr in recipients:
        if addr["email"] in known:
            continue
        other = session.scalar(select(User).where(User.email == addr["email"]))
        if other is None or other.role not in ("member", "admin"):
            raise ApiError(403, "guest_recipient_forbidden",
                           f"As a guest you can write only to members of this PEN and to people in your "
                           f"conversations, and {addr['email']} is neither.")


def _attachments(session: Session, user: User, ids: list[str]) -> list[tuple[Attachment, bool]]:
    """The attachments named, each with True when it is the caller's own upload (to be
    claimed) or False when it belongs to a message the caller can read (to be shared)."""
    if len(set(ids)) != len(ids):
        raise validation({"attachments": "an attachment is named more than once"},
                         "The same attachment is named twice in this message; name each file once.")
    found: list[tuple[Attachment, bool]] = []
    for i, att_id in enumerate(ids):
        att = session.get(Attachment, att_id)
        if att is not None and att.message_id is None and att.owner_id == user.id:
            found.append((att, True))
            continue
        source = session.scalar(select(MailboxEntry).where(
            MailboxEntry.user_id == user.id, MailboxEntry.message_id == att.message_id)) \
            if att is not None and att.message_id is not None else None
        if source is not None:
            after_send.gate(source)  # a withdrawn or expired message's files are not forwarded
            found.append((att, False))
            continue
        if att is not None and att.owner_id == user.id:
            raise _taken(i)
        raise validation({f"attachments[{i}]": "no such upload"},
                         "One of the attachments is not an upload of yours; upload the file again.")
    return found


def _taken(i: int) -> ApiError:
    return ApiError(409, "conflict", f"Attachment {i + 1} is already part of another message (perhaps one sent "
                                     "at the same moment); upload the file again to send it with this one.",
                    fields={f"attachments[{i}]": "already part of another message"})


def _attach(session: Session, user: User, message: Message, attachments: list[tuple[Attachment, bool]]) -> None:
    """Own uploads are claimed by one conditional UPDATE each, so of several messages sent at
    the same moment naming one upload exactly one gets it; forwarded files get a new row on
    the same blob."""
    for position, (att, own) in enumerate(attachments):
        if own:
            claimed = session.execute(
                update(Attachment).where(Attachment.id == att.id, Attachment.owner_id == user.id,
                                         Attachment.message_id.is_(None))
                .values(message_id=message.id, position=position)
                .execution_options(synchronize_session=False)).rowcount  # type: ignore[attr-defined]
            if claimed != 1:
                raise _taken(position)
            session.expire(att)
        else:
            session.add(Attachment(id=new_id(), owner_id=user.id, filename=att.filename, message_id=message.id,
                                   position=position, content_type=att.content_type, size=att.size,
                                   sha256=att.sha256))


def send(session: Session, settings: Settings, secret: bytes, user: User, body: SendIn,
         idempotency_key: str, who: audit.Who | None = None) -> tuple[MailboxEntry, list[tuple[str, str, dict]]]:
    """Write the message; returns the sender's copy and the events to publish once it is
    committed, (user_id, kind, payload): `message.new` to each holder of a copy, and
    `notification.updated` to the sender for each recipient on the suppression list (its
    notification is `suppressed` at once, never sent). `who` says through what it was sent,
    for the audit rows of a reply or a forward."""
    key = valid_idempotency_key(idempotency_key)
    digest = _request_hash(body)
    sent_before = _sent_before(session, user, key, digest)
    if sent_before is not None:
        return sent_before, []

    if has_control(body.subject):
        raise validation({"subject": "no line breaks or control characters"},
                         "The subject cannot contain line breaks or control characters.")
    send_limits.check_recipient_cap(settings, len(body.to) + len(body.cc) + len(body.bcc))
    lists, recipients = _recipients(body)
    if user.role == "guest":
        _check_guest(session, user, recipients)
    parent = None
    if body.in_reply_to:
        parent_copy = session.scalar(select(MailboxEntry).where(MailboxEntry.user_id == user.id,
                                                                MailboxEntry.message_id == body.in_reply_to))
        if parent_copy is None:
            raise validation({"in_reply_to": "not a message you can read"},
                             "The message you are replying to does not exist, or is not yours.")
        parent = after_send.gate(parent_copy).message
    attachments = _attachments(session, user, body.attachments)

    now = utcnow()
    expires_at = after_send.parse_expiry(body.expires_at) if body.expires_at is not None else \
        after_send.default_expiry(session, user, now)
    text = clean_body(body.body_text)
    html = clean_body(body.body_html) if body.body_html is not None else None
    message = Message(
        id=new_id(), thread_id=parent.thread_id if parent else new_id(), sender_id=user.id,
        from_email=user.email, from_name=strip_controls(user.display_name) or None,
        to_list=lists["to"], cc_list=lists["cc"], bcc_list=lists["bcc"], subject=body.subject,
        body_text=text, body_html=html, snippet=snippet(text), in_reply_to=parent.id if parent else None,
        sent_at=now, size=len(text.encode()) + len((html or "").encode()) + sum(a.size for a, _ in attachments),
        attachment_count=len(attachments), expires_at=expires_at,
    )
    session.add(message)
    session.flush()  # from here on this transaction holds SQLite's write lock
    send_limits.check_rate(session, settings, user.id, message.id, len(recipients))
    _attach(session, user, message, attachments)
    session.add(MailboxEntry(user_id=user.id, message_id=message.id, folder="sent", unread=False,
                             is_sender=True, sent_at=now, thread_id=message.thread_id))
    announce, copies, invited, suppressed = _hand_out(session, settings, secret, user, message, lists, recipients, now)
    session.add(IdempotencyKey(user_id=user.id, key=key, request_hash=digest, message_id=message.id, created_at=now))
    try:
        session.flush()
    except IntegrityError:
        # The same key raced in from a parallel retry: answer as that one did.
        session.rollback()
        raise ApiError(409, "conflict", "The same message is being sent already; try again in a moment.",
                       headers={"Retry-After": "1"}) from None
    addresses.remember(session, copies)
    _index_count_audit(session, message, text, announce, invited, attachments, parent, who)
    entry = session.scalar(select(MailboxEntry).where(MailboxEntry.user_id == user.id,
                                                      MailboxEntry.message_id == message.id))
    events: list[tuple[str, str, dict]] = [(user_id, "message.new", {"id": mid, "folder": folder})
                                           for user_id, mid, folder in announce]
    events += [(user.id, "notification.updated", {"message_id": message.id, "recipient": addr, "status": "suppressed"})
               for _kind, addr in recipients if addr["email"] in suppressed]
    return entry, events


def _sent_before(session: Session, user: User, key: str, digest: str) -> MailboxEntry | None:
    """The sender's copy of the message an earlier request with this Idempotency-Key sent
    (within IDEMPOTENCY_HOURS, for the same request); an older key's row is let go."""
    earlier = session.get(IdempotencyKey, (user.id, key))
    if earlier is None:
        return None
    if earlier.created_at <= utcnow() - timedelta(hours=IDEMPOTENCY_HOURS):
        session.delete(earlier)
        session.flush()
        return None
    if earlier.request_hash != digest:
        raise ApiError(422, "idempotency_key_reused",
                       "That Idempotency-Key was used for another message; make a new key for a new message.")
    entry = session.scalar(select(MailboxEntry).where(MailboxEntry.user_id == user.id,
                                                      MailboxEntry.message_id == earlier.message_id))
    if entry is None:
        raise ApiError(409, "conflict", "The message sent with that Idempotency-Key has been deleted since; "
                                        "make a new key to send it again.")
    return entry


def _hand_out(session: Session, settings: Settings, secret: bytes, user: User, message: Message, lists: dict,
              recipients: list, now: datetime) -> tuple[list, list, set[str], dict[str, str]]:
    """The sender's copy, each recipient's copy (an outsider becomes a guest, invited) and a
    notification row for each recipient; returns the copies to announce (user_id, message id,
    folder), the people each holder now knows (for the address book), the users this message
    invited, and the recipients on the suppression list with their reasons."""
    announce = [(user.id, message.id, "sent")]
    sender_person = {"email": user.email, "name": message.from_name}
    copies = [(user.id, user.email, addresses.people_of_copy(
        sender_person, lists["to"] + lists["cc"], lists["bcc"], is_sender=True))]
    invited: set[str] = set()  # users made by this message: their inbox counts start at 1
    host = effective_settings.effective(session, settings).host
    expires = now + timedelta(days=settings.invitation_days)
    suppressed = suppression.reasons(session, [addr["email"] for _kind, addr in recipients])
    for position, (kind, addr) in enumerate(recipients):
        recipient = session.scalar(select(User).where(User.email == addr["email"]))
        if recipient is None:  # an outsider: a guest invitation, registered on first visit
            recipient = User(id=new_id(), email=addr["email"], display_name=addr["name"] or "", role="guest")
            try:
                with session.begin_nested():
                    session.add(recipient)
            except IntegrityError:  # another send invited the address meanwhile (PostgreSQL)
                recipient = session.scalar(select(User).where(User.email == addr["email"]))
            else:
                invited.add(recipient.id)
        if recipient.id != user.id:
            session.add(MailboxEntry(user_id=recipient.id, message_id=message.id, folder="inbox",
                                     unread=True, sent_at=now, thread_id=message.thread_id))
            announce.append((recipient.id, message.id, "inbox"))
            copies.append((recipient.id, recipient.email, addresses.people_of_copy(
                sender_person, lists["to"] + lists["cc"], [], is_sender=False)))
        session.add(notification_row(secret, host, expires, message.id, position, addr, recipient.id, kind, now,
                                     suppressed=suppressed.get(addr["email"])))
    return announce, copies, invited, suppressed


def _index_count_audit(session: Session, message: Message, text: str, announce: list[tuple[str, str, str]],
                       invited: set[str], attachments: list, parent: Message | None,
                       who: audit.Who | None) -> None:
    """What the stored message changes beside itself, in the same transaction: the search
    index, each holder's folder count, and the audit rows of a reply or a forward."""
    now = message.sent_at
    # The search index, in this same transaction: a message is found as soon as it is stored.
    search_index.add(session.connection(), [search_index.document(
        {"id": message.id, "sent_at": now, "subject": message.subject, "from_email": message.from_email,
         "from_name": message.from_name, "to_list": message.to_list, "cc_list": message.cc_list,
         "body_text": text, "attachment_count": message.attachment_count},
        [user_id for user_id, _mid, _folder in announce])])
    for user_id, _mid, folder in announce:
        if user_id in invited:
            session.add(FolderCount(user_id=user_id, folder=folder, total=1))
        else:
            count_change(session, user_id, folder, +1)
    if who is not None:  # last: the audit rows hold the chain's lock until the commit
        forwarded = dict.fromkeys(a.message_id for a, own in attachments if not own)
        audit.append(session, ([audit.Entry("reply", who, parent.id, detail={"reply": message.id})] if parent else [])
                     + [audit.Entry("forward", who, source, detail={
                         "attachments": [a.id for a, own in attachments if not own and a.message_id == source],
                         "message": message.id}) for source in forwarded])


def notification_row(secret: bytes, host: str, expires: datetime, message_id: str, position: int, addr: dict,
                     user_id: str | None, kind: str, now: datetime, suppressed: str | None = None) -> Notification:
    """One queued notification e-mail to `addr` ({"email", "name"}), with a link token of its
    own (made again from the row's id when the e-mail is built; stored only hashed); or,
    with `suppressed` (its last_error), one that is never sent."""
    notif_id = new_id()
    return Notification(
        id=notif_id, message_id=message_id, position=position, recipient_email=addr["email"],
        recipient_name=addr["name"], recipient_user_id=user_id, kind=kind,
        status="suppressed" if suppressed else "queued", last_error=suppressed, updated_at=now,
        next_attempt_at=now, smtp_message_id=f"<{notif_id}@{host}>",
        token_hash=security.token_hash(security.derived_token(secret, "invite", notif_id)),
        token_expires_at=expires)


def own_message(session: Session, user: User, message_id: str) -> Message:
    """The caller's own sent message, while the sender keeps its copy; anyone else gets 404."""
    message = session.get(Message, message_id)
    if message is None or message.sender_id != user.id or session.scalar(select(MailboxEntry.id).where(
            MailboxEntry.user_id == user.id, MailboxEntry.message_id == message_id)) is None:
        raise not_found()
    return message


def resend(session: Session, user: User, message_id: str, recipients: list[str] | None) -> list[Notification]:
    own_message(session, user, message_id)
    query = select(Notification).where(Notification.message_id == message_id)
    # A suppressed one goes back to the outbox too (its address may be off the list by now:
    # if not, the delivery worker suppresses it again at once, without sending).
    if recipients is None:
        query = query.where(Notification.status.in_(("failed", "suppressed")))
    else:
        wanted = {r.strip().lower() for r in recipients if "\x00" not in r}  # no address holds a NUL
        query = query.where(Notification.recipient_email.in_(wanted),
                            Notification.status.in_(("failed", "deferred", "bounced", "suppressed")))
    # A recipient the message was withdrawn from is never sent another notification.
    query = query.where(~after_send.revoked_recipient(Notification.recipient_user_id, Notification.message_id))
    now = utcnow()
    ids = [n.id for n in session.scalars(query)]
    if ids:
        session.execute(
            update(Notification)
            .where(Notification.id.in_(ids))
            .values(
                status="queued", attempts=0, next_attempt_at=now, updated_at=now, lease_owner=None, lease_until=None
            )
        )
    session.expire_all()
    return list(
        session.scalars(
            select(Notification).where(Notification.message_id == message_id).order_by(Notification.position)
        )
    )
