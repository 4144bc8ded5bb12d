"""The database schema (SQLAlchemy 2). Portable SQL only: SQLite is the embedded default,
PostgreSQL must work from the same models and migrations."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

# The server's clock (PEN_CLOCK is read when pen-server starts, not here); most modules import it from here.
from pen_server.clock import utcnow as utcnow


def new_id() -> str:
    """An opaque, URL-safe id of 128 random bits."""
    return secrets.token_urlsafe(16)


class UTCDateTime(TypeDecorator):
    """Datetimes stored naive in UTC, always handed back timezone-aware."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value

    def process_result_value(self, value, dialect):
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    pass


class PenSetting(Base):
    """Key/value settings the administrator changes through the API (name, footer, SMTP)."""

    __tablename__ = "pen_settings"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[dict | str | int | None] = mapped_column(JSON, nullable=True)


class Package(Base):
    __tablename__ = "packages"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    disclaimer: Mapped[str | None] = mapped_column(Text, nullable=True)
    # "keep": notifications carry the message's subject; "generic": "Secure message from
    # NAME", for organisations whose subjects must not travel in plain SMTP.
    subject_policy: Mapped[str] = mapped_column(String(8), default="keep", server_default="keep")
    # The end date its members' messages get when the sender names none (migration 0011).
    expire_days: Mapped[int | None] = mapped_column(Integer, nullable=True)


class User(Base):
    __tablename__ = "users"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    email: Mapped[str] = mapped_column(String(320), unique=True, index=True)
    display_name: Mapped[str] = mapped_column(String(200), default="")
    role: Mapped[str] = mapped_column(String(16), default="member")
    package: Mapped[str | None] = mapped_column(ForeignKey("packages.name"), nullable=True)
    # None for a guest that was invited and has not registered yet.
    password_hash: Mapped[str | None] = mapped_column(String(200), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Set while the account is disabled (members.py): it cannot sign in, and its sign-ins
    # were ended when it was set; its messages stay with their recipients.
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # Set on a removed member's tombstone: the row stays only so that the messages it sent
    # keep their sender (its address was freed for a new account; it is never listed).
    removed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    @property
    def registered(self) -> bool:
        return self.password_hash is not None

    @property
    def disabled(self) -> bool:
        return self.disabled_at is not None


class AuthToken(Base):
    """Access and refresh tokens, stored only as sha256 hashes. A family is one sign-in:
    every refresh rotates within it, and reuse of a dead refresh token revokes it whole."""

    __tablename__ = "auth_tokens"
    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(8))  # "access" | "refresh"
    family_id: Mapped[str] = mapped_column(String(32), index=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)


class Message(Base):
    """The content of one secure message, shared by every copy of it."""

    __tablename__ = "messages"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    thread_id: Mapped[str] = mapped_column(String(32), index=True)
    sender_id: Mapped[str] = mapped_column(ForeignKey("users.id"))
    from_email: Mapped[str] = mapped_column(String(320))
    from_name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    to_list: Mapped[list] = mapped_column(JSON, default=list)
    cc_list: Mapped[list] = mapped_column(JSON, default=list)
    bcc_list: Mapped[list] = mapped_column(JSON, default=list)
    subject: Mapped[str] = mapped_column(Text, default="")
    body_text: Mapped[str] = mapped_column(Text, default="")
    body_html: Mapped[str | None] = mapped_column(Text, nullable=True)
    snippet: Mapped[str] = mapped_column(String(200), default="")
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    # Kept with the message so that a page of summaries needs no look-up of attachments.
    attachment_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    in_reply_to: Mapped[str | None] = mapped_column(String(32), nullable=True)
    sent_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # After this its recipients can no longer read it (410 expired); the sender still can.
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    attachments: Mapped[list[Attachment]] = relationship(
        back_populates="message", order_by="Attachment.position", lazy="select"
    )

    # The hourly sending limit counts a sender's messages of the last hour. has:attachment on
    # PostgreSQL starts from the (usually few) messages with attachments (migration 0010).
    __table_args__ = (Index("ix_message_sender_sent", "sender_id", "sent_at"),
                      Index("ix_message_attachments", "id", postgresql_where=text("attachment_count > 0"),
                            sqlite_where=text("attachment_count > 0")))


class MailboxEntry(Base):
    """One user's copy of a message: its folder and read state are that user's own."""

    __tablename__ = "mailbox_entries"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    message_id: Mapped[str] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"))
    folder: Mapped[str] = mapped_column(String(16))
    unread: Mapped[bool] = mapped_column(Boolean, default=True)
    is_sender: Mapped[bool] = mapped_column(Boolean, default=False)
    # Copied from the message so that the page query reads one index only.
    sent_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # Copied too, so that a folder's threads are found in one index (migration 0008).
    thread_id: Mapped[str] = mapped_column(String(32))
    # A recipient's copy: when the sender withdrew it (410 revoked from then on), and when its
    # owner first read the message or one of its files (migration 0011).
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    opened_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    message: Mapped[Message] = relationship(lazy="joined")

    __table_args__ = (
        UniqueConstraint("user_id", "message_id", name="uq_entry_user_message"),
        Index("ix_entry_page", "user_id", "folder", "sent_at", "message_id"),
        Index("ix_entry_message", "message_id"),
        Index("ix_entry_thread", "user_id", "folder", "thread_id", "sent_at", "message_id"),
        # is:unread / is:read and the folders' unread counts: one range of this (migration 0010).
        Index("ix_entry_unread", "user_id", "folder", "unread", "sent_at", "message_id"),
    )


class FolderCount(Base):
    """How many copies each user has in each folder, kept with every change, so that a page
    of a 100,000-message folder does not count 100,000 rows for its `total`."""

    __tablename__ = "folder_counts"
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    folder: Mapped[str] = mapped_column(String(16), primary_key=True)
    total: Mapped[int] = mapped_column(Integer, default=0)


# Address completion (pen_server/addresses.py): words kept lower-case and compared by byte
# order, so that a prefix is a range scan of the index on SQLite and PostgreSQL alike.
WORD_LENGTH = 100
_Word = String(WORD_LENGTH).with_variant(String(WORD_LENGTH, collation="C"), "postgresql")


class AddressWord(Base):
    """One word of a person on a user's own messages (the whole address, the whole name and
    each word of the name), with the name last seen for that address."""

    __tablename__ = "address_words"
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    word: Mapped[str] = mapped_column(_Word, primary_key=True)
    email: Mapped[str] = mapped_column(String(320), primary_key=True)
    name: Mapped[str | None] = mapped_column(String(200), nullable=True)


class MemberWord(Base):
    """One word of a PEN member (role member or admin): its address, its name and each word
    of its name; the name itself is read from `users`."""

    __tablename__ = "member_words"
    word: Mapped[str] = mapped_column(_Word, primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)


class Blob(Base):
    """File content, addressed by its sha256: identical files share one blob."""

    __tablename__ = "blobs"
    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Attachment(Base):
    """An upload; it becomes an attachment when a message names it."""

    __tablename__ = "attachments"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    owner_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    message_id: Mapped[str | None] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"), nullable=True,
                                                   index=True)
    position: Mapped[int] = mapped_column(Integer, default=0)
    filename: Mapped[str] = mapped_column(Text)
    content_type: Mapped[str] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(ForeignKey("blobs.sha256"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    message: Mapped[Message | None] = relationship(back_populates="attachments")


class IdempotencyKey(Base):
    __tablename__ = "idempotency_keys"
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    message_id: Mapped[str] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Notification(Base):
    """The transactional outbox: one row per recipient, written with the message."""

    __tablename__ = "notifications"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    message_id: Mapped[str] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer, default=0)
    recipient_email: Mapped[str] = mapped_column(String(320))
    recipient_name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    recipient_user_id: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), nullable=True)
    kind: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(10), default="queued")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    lease_owner: Mapped[str | None] = mapped_column(String(32), nullable=True)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    smtp_message_id: Mapped[str] = mapped_column(String(255))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    token_expires_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (Index("ix_notification_due", "status", "next_attempt_at"),)


class Suppression(Base):
    """An address that bounced permanently: notifications to it are not sent (status
    `suppressed`) until an administrator takes it off the list (suppression.py)."""

    __tablename__ = "suppressions"
    email: Mapped[str] = mapped_column(String(320), primary_key=True)
    reason: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # The notification whose bounce put the address here.
    notification_id: Mapped[str | None] = mapped_column(String(32), nullable=True)


class WebSession(Base):
    """A browser's sign-in to the web pages: the cookie carries a random token, the row keeps
    only its sha256. Deleting the row ends the sign-in at once (sign-out, password change)."""

    __tablename__ = "web_sessions"
    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Event(Base):
    """What `GET /events` streams: one row per event for one user, with an id that only grows
    (AUTOINCREMENT on SQLite, so an emptied table never hands an old id out again), written
    by the process that made it and read by every process that has a stream open for that
    user. Kept `events_keep_hours` (events.py prunes)."""

    __tablename__ = "events"
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
                                    autoincrement=True)
    user_id: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(32))
    payload: Mapped[dict] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (Index("ix_event_user", "user_id", "id"), Index("ix_event_created", "created_at"),
                      {"sqlite_autoincrement": True})


class SignInCount(Base):
    """The sign-in limiter's counts (ratelimit.py), shared by every server process: one row
    per counted key, named by a sha256 of the key (no address or e-mail in clear). `kind`
    is own, address, account or known (an address the account signed in from)."""

    __tablename__ = "signin_counts"
    key_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(8))
    failures: Mapped[int] = mapped_column(Integer, default=0)
    pending: Mapped[int] = mapped_column(Integer, default=0)
    last_at: Mapped[float] = mapped_column(Float)      # epoch seconds of the last failure (or success, known)
    pending_at: Mapped[float] = mapped_column(Float)   # epoch seconds of the last reserved try
    version: Mapped[int] = mapped_column(Integer, default=0)

    __table_args__ = (Index("ix_signin_last", "last_at"),)


class AuditRow(Base):
    """One thing done with a message (pen_server/audit.py): append-only, ids 1, 2, 3... with no
    gap, each row's `hash` a sha256 over its own fields and the `hash` of the row before, so
    a row changed, removed or put in later breaks the chain. No foreign keys: the trail
    outlives the messages and accounts it names. Never a body, a subject or a password."""

    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
                                    autoincrement=False)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    action: Mapped[str] = mapped_column(String(16))
    actor_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    actor: Mapped[str | None] = mapped_column(String(320), nullable=True)  # the e-mail address
    recipient: Mapped[str | None] = mapped_column(String(320), nullable=True)
    message_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    attachment_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    channel: Mapped[str] = mapped_column(String(16))
    client: Mapped[str | None] = mapped_column(String(64), nullable=True)
    detail: Mapped[str | None] = mapped_column(Text, nullable=True)  # canonical JSON
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))

    __table_args__ = (Index("ix_audit_message", "message_id", "id"), Index("ix_audit_actor", "actor", "id"),
                      Index("ix_audit_recipient", "recipient", "id"), Index("ix_audit_at", "at"))


class AuditHead(Base):
    """The one row (id 1) that says where the chain ends: its last id and hash. Every append
    updates it first, which takes the lock that orders writers (SQLite's write lock, a row
    lock on PostgreSQL), so rows of several processes never fork the chain."""

    __tablename__ = "audit_head"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    last_id: Mapped[int] = mapped_column(BigInteger)
    last_hash: Mapped[str] = mapped_column(String(64))
class BlocklistState(Base):
    """The blocklist watch (deliverability.py), one row (id 1) that every process shares: a
    process takes a check upon itself by moving `claimed_at` with a conditional UPDATE, so
    several processes make one check each period; `checked_at`, what was asked and what
    did not answer describe the last finished check."""

    __tablename__ = "blocklist_state"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    claimed_by: Mapped[str | None] = mapped_column(String(32), nullable=True)
    checked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    asked: Mapped[dict | None] = mapped_column(JSON, nullable=True)  # {"zones": [...], "subjects": [...]}
    unanswered: Mapped[list | None] = mapped_column(JSON, nullable=True)  # [{"zone", "subject", "reason"}]


class BlocklistListing(Base):
    """A sending address (or the sending domain) that a blocklist zone lists now; the row
    goes when a check finds it no longer listed. `since` is the first check that found it."""

    __tablename__ = "blocklist_listings"
    zone: Mapped[str] = mapped_column(String(255), primary_key=True)
    subject: Mapped[str] = mapped_column(String(255), primary_key=True)
    answer: Mapped[str] = mapped_column(String(255))
    since: Mapped[datetime] = mapped_column(UTCDateTime)
    seen_at: Mapped[datetime] = mapped_column(UTCDateTime)


class SearchSlot(Base):
    """A search running now (search_run.py): at most `searches_per_user` rows per user, shared
    by every server process. A row whose process died stops counting after its `started_at`
    is older than the time limit and a margin."""

    __tablename__ = "search_slots"
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    slot: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    holder: Mapped[str] = mapped_column(String(32))
    started_at: Mapped[float] = mapped_column(Float)  # epoch seconds
