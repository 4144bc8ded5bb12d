"""Request and response bodies of the API, as the contract names them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_serializer

from pen_server.accounts import MIN_PASSWORD
from pen_server.text import BASE_URL_PATTERN, CONTROL_CLASS, NO_CONTROL_BUT_NEWLINE_PATTERN, NO_CONTROL_PATTERN

Folder = Literal["inbox", "sent", "archive", "trash"]
MovableFolder = Literal["inbox", "archive", "trash"]
Order = Literal["newest", "oldest"]  # of GET /messages


def rfc3339(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Strict(BaseModel):
    # strict: JSON's types as the schema states them (0 is not false, "5" is not 5).
    model_config = ConfigDict(extra="ignore", strict=True)


def _whole(value):
    # JSON Schema counts 25.0 as an integer; strict pydantic would not.
    return int(value) if isinstance(value, float) and value.is_integer() else value


WholeNumber = Annotated[int, BeforeValidator(_whole)]

# Rules the server checks itself (to answer with its own sentence), stated in the schema too.
NO_CONTROL: dict[str, Any] = {"pattern": NO_CONTROL_PATTERN}
# What str.strip() removes that CONTROL_CLASS does not already forbid.
_SPACES = " \xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
NOT_BLANK_NO_CONTROL: dict[str, Any] = {
    "pattern": f"^[^{CONTROL_CLASS}]*[^{CONTROL_CLASS}{_SPACES}][^{CONTROL_CLASS}]*$"}
# An e-mail address as email-validator takes it (at most 254 characters, RFC 5321).
EMAIL_MAX = 254


class AddressIn(Strict):
    email: str = Field(max_length=EMAIL_MAX, json_schema_extra={"format": "email"})
    name: str | None = Field(default=None, max_length=200, json_schema_extra=NO_CONTROL)


class Address(BaseModel):
    email: str
    name: str | None = None


class UserOut(BaseModel):
    id: str
    email: str
    display_name: str
    role: Literal["member", "guest", "admin"]
    package: str | None


class PenInfoOut(BaseModel):
    name: str
    max_upload_bytes: int


class LoginIn(Strict):
    email: str = Field(max_length=320)
    password: str = Field(max_length=1024)


class RefreshIn(Strict):
    refresh_token: str = Field(max_length=512)


class TokenOut(BaseModel):
    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int
    user: UserOut


class InvitationOut(BaseModel):
    email: str
    pen_name: str
    sender: Address
    subject: str
    message_id: str
    registered: bool


class RegisterIn(Strict):
    display_name: str = Field(min_length=1, max_length=200, json_schema_extra=NOT_BLANK_NO_CONTROL)
    password: str = Field(max_length=1024, json_schema_extra={"minLength": MIN_PASSWORD})


class AttachmentOut(BaseModel):
    id: str
    filename: str
    content_type: str
    size: int
    sha256: str


class NotificationOut(BaseModel):
    recipient: Address
    kind: Literal["to", "cc", "bcc"]
    status: Literal["queued", "sending", "sent", "deferred", "failed", "bounced", "cancelled", "suppressed"]
    attempts: int
    last_error: str | None
    updated_at: datetime
    opened_at: datetime | None = Field(description="When the recipient first read the message or downloaded one "
                                                   "of its files; null until then.")
    revoked_at: datetime | None = Field(description="When the sender withdrew the message from this recipient.")

    @field_serializer("updated_at", "opened_at", "revoked_at")
    def _ser_time(self, v: datetime | None) -> str | None:
        return rfc3339(v) if v is not None else None


class SummaryOut(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    id: str
    thread_id: str
    folder: Folder
    from_: Address = Field(alias="from", serialization_alias="from")
    to: list[Address]
    cc: list[Address]
    subject: str
    sent_at: datetime
    unread: bool
    attachment_count: int
    size: int
    snippet: str
    expires_at: datetime | None = Field(description="The end date: past it, recipients can no longer read it.")
    revoked_at: datetime | None = Field(description="A recipient's copy: when the sender withdrew it; else null.")

    @field_serializer("sent_at", "expires_at", "revoked_at")
    def _ser_time(self, v: datetime | None) -> str | None:
        return rfc3339(v) if v is not None else None


class MessageOut(SummaryOut):
    bcc: list[Address]
    body_text: str
    body_html: str | None
    attachments: list[AttachmentOut]
    in_reply_to: str | None
    notifications: list[NotificationOut]


class PageOut(BaseModel):
    items: list[SummaryOut]
    next_cursor: str | None
    total: int
    # False when a search found more than it counts (search.COUNT_LIMIT): `total` is then that many.
    total_exact: bool = True


class ThreadOut(BaseModel):
    thread_id: str
    count: int
    unread: int
    latest: SummaryOut


class ThreadPageOut(BaseModel):
    items: list[ThreadOut]
    next_cursor: str | None
    total: int


class FolderOut(BaseModel):
    name: Folder
    total: int
    unread: int


class FoldersOut(BaseModel):
    items: list[FolderOut]


class AddressesOut(BaseModel):
    items: list[Address]


class PatchIn(Strict):
    unread: bool | None = None
    folder: MovableFolder | None = None


class SendIn(Strict):
    model_config = ConfigDict(json_schema_extra={"anyOf": [  # at least one recipient
        {"required": [kind], "properties": {kind: {"minItems": 1}}} for kind in ("to", "cc", "bcc")]})
    to: list[AddressIn] = Field(default_factory=list, max_length=5000)
    cc: list[AddressIn] = Field(default_factory=list, max_length=5000)
    bcc: list[AddressIn] = Field(default_factory=list, max_length=5000)
    subject: str = Field(default="", max_length=998, json_schema_extra=NO_CONTROL)
    body_text: str = Field(default="", max_length=10_000_000)
    body_html: str | None = Field(default=None, max_length=20_000_000)
    in_reply_to: str | None = Field(default=None, max_length=64,
                                    description="The id of a message the sender can read (else 422).")
    attachments: list[str] = Field(default_factory=list, max_length=200, json_schema_extra={"uniqueItems": True},
                                   description="Ids of the sender's uploads, or of attachments of messages it can "
                                               "read; each once.")
    expires_at: str | None = Field(default=None, max_length=64, json_schema_extra={"format": "date-time"},
                                   description="The end date (RFC 3339, in the future; else 422). Left out or "
                                               "null: the sender's package default, if any.")


class RevokeIn(Strict):
    recipients: list[str] | None = Field(default=None, max_length=5000,
                                         description="E-mail addresses of recipients; left out: all of them.")


class ExpiryIn(Strict):
    expires_at: str | None = Field(max_length=64, json_schema_extra={"format": "date-time"},
                                   description="The new end date (RFC 3339, in the future), or null for none.")


AuditAction = Literal["read", "download", "reply", "forward", "revoke", "expiry", "notified", "bounce"]


class AuditRowOut(BaseModel):
    id: int
    at: str
    action: AuditAction
    actor: str | None
    recipient: str | None
    message_id: str | None
    attachment_id: str | None
    channel: Literal["api", "web", "intercept", "smtp"]
    client: str | None
    detail: dict[str, Any]
    hash: str


class AuditPageOut(BaseModel):
    items: list[AuditRowOut]
    next_cursor: str | None


class NotificationsOut(BaseModel):
    items: list[NotificationOut]


class ResendIn(Strict):
    recipients: list[str] | None = Field(default=None, max_length=5000)


class SmtpIn(Strict):
    host: str = Field(default="localhost", max_length=255, json_schema_extra=NO_CONTROL)
    port: WholeNumber = Field(default=25, ge=1, le=65535)
    security: Literal["starttls", "tls", "none"] = "none"
    username: str | None = Field(default=None, max_length=255)
    password: str | None = Field(default=None, max_length=1024)
    from_address: str = Field(default="pen@localhost", max_length=320,
                              json_schema_extra={"pattern": f"^[^{CONTROL_CLASS}]*@[^{CONTROL_CLASS}]*$"})


class SmtpOut(BaseModel):
    host: str
    port: int
    security: Literal["starttls", "tls", "none"]
    username: str | None
    from_address: str


class PenIn(Strict):
    name: str = Field(min_length=1, max_length=200, json_schema_extra=NO_CONTROL)
    base_url: str = Field(min_length=1, max_length=2000, json_schema_extra={"pattern": BASE_URL_PATTERN})
    footer: str = Field(default="", max_length=4000, json_schema_extra={"pattern": NO_CONTROL_BUT_NEWLINE_PATTERN})
    smtp: SmtpIn | None = None


class PenOut(BaseModel):
    name: str
    base_url: str
    footer: str
    smtp: SmtpOut
    max_upload_bytes: int


SubjectPolicy = Literal["keep", "generic"]


class PackageIn(Strict):
    # 10,000 characters: even as JSON's \uXXXX\uXXXX escapes (12 bytes a character) the body
    # stays under max_json_bytes (128 KiB), so no valid disclaimer is refused as too large.
    disclaimer: str | None = Field(default=None, max_length=10_000)
    subject: SubjectPolicy | None = None  # left out: unchanged ("keep" for a new package)
    expire_days: Annotated[Annotated[int, Field(ge=1, le=36500)] | None, BeforeValidator(_whole)] = Field(
        default=None, description="Days until its members' messages end, when the sender names no end date; "
                                  "null for none; left out: unchanged.")


class PackageOut(BaseModel):
    name: str
    disclaimer: str | None
    subject: SubjectPolicy
    expire_days: int | None


class PackagesOut(BaseModel):
    items: list[PackageOut]


class ListingOut(BaseModel):
    zone: str
    subject: str = Field(description="The sending address, or the sending domain, that the zone lists.")
    answer: str = Field(description="The zone's answer: its A records, in 127.0.0.0/8.")
    since: datetime = Field(description="The first check that found it.")

    @field_serializer("since")
    def _ser_time(self, v: datetime) -> str:
        return rfc3339(v)


class UnansweredOut(BaseModel):
    zone: str
    subject: str
    reason: str


class DeliverabilityOut(BaseModel):
    checked_at: datetime | None = Field(description="When the last check finished; null before the first.")
    zones: list[str]
    subjects: list[str] = Field(description="What the last check asked about: sending addresses and domain.")
    listings: list[ListingOut]
    unanswered: list[UnansweredOut] = Field(description="Questions of the last check without an answer: "
                                                        "the check is incomplete, never clean, while any is here.")

    @field_serializer("checked_at")
    def _ser_time(self, v: datetime | None) -> str | None:
        return rfc3339(v) if v is not None else None


class ReportCounts(BaseModel):
    attempted: int
    accepted: int
    deferred: int
    failed: int
    bounced: int
    suppressed: int
    opened: int | None = Field(description="null where this PEN does not record opening.")
    delivery_rate: float | None = Field(description="Accepted and not bounced, over attempted, in per cent "
                                                    "with one decimal; null when none was attempted.")


class DomainReport(ReportCounts):
    domain: str


class ReportOut(BaseModel):
    since: datetime
    until: datetime
    domains: list[DomainReport]
    total: ReportCounts

    @field_serializer("since", "until")
    def _ser_time(self, v: datetime) -> str:
        return rfc3339(v)


Role = Literal["member", "admin"]  # what an administrator may make an account


class AccountOut(BaseModel):
    """An account as the administrator sees it."""
    id: str
    email: str
    display_name: str
    role: Literal["member", "guest", "admin"]
    package: str | None
    registered: bool = Field(description="False for a guest invited by a message who has not signed up yet.")
    disabled: bool
    disabled_at: datetime | None
    created_at: datetime

    @field_serializer("disabled_at", "created_at")
    def _ser_time(self, v: datetime | None) -> str | None:
        return rfc3339(v) if v is not None else None


class AccountsOut(BaseModel):
    items: list[AccountOut]
    next_cursor: str | None


class AccountPatchIn(Strict):
    disabled: bool | None = Field(default=None, description="true: the account cannot sign in, and every sign-in "
                                                            "of it ends at once; false: it can again.")
    package: str | None = Field(default=None, min_length=1, max_length=64,
                                description="One of the PEN's packages (else 422); null: none. Left out: unchanged.")
    role: Role | None = None


class SuppressionOut(BaseModel):
    email: str
    reason: str = Field(description="The diagnostic of the permanent bounce that put the address here.")
    created_at: datetime

    @field_serializer("created_at")
    def _ser_time(self, v: datetime) -> str:
        return rfc3339(v)


class SuppressionsOut(BaseModel):
    items: list[SuppressionOut]
    next_cursor: str | None
