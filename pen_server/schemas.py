"""Request and response bodies of the API, as the contract names them."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_serializer

Folder = Literal["inbox", "sent", "archive", "trash"]
MovableFolder = Literal["inbox", "archive", "trash"]
Order = Literal["newest", "oldest"]  # of GET /messages


def rfc3339(value: datetime) -> str:
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class Strict(BaseModel):
    model_config = ConfigDict(extra="ignore")


class AddressIn(Strict):
    email: str = Field(max_length=320)
    name: str | None = Field(default=None, max_length=200)


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
    display_name: str = Field(min_length=1, max_length=200)
    password: str = Field(max_length=1024)


class AttachmentOut(BaseModel):
    id: str
    filename: str
    content_type: str
    size: int
    sha256: str


class NotificationOut(BaseModel):
    recipient: Address
    kind: Literal["to", "cc", "bcc"]
    status: Literal["queued", "sending", "sent", "deferred", "failed", "bounced"]
    attempts: int
    last_error: str | None
    updated_at: datetime

    @field_serializer("updated_at")
    def _ser_time(self, v: datetime) -> str:
        return rfc3339(v)


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

    @field_serializer("sent_at")
    def _ser_time(self, v: datetime) -> str:
        return rfc3339(v)


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


class FolderOut(BaseModel):
    name: Folder
    total: int
    unread: int


class FoldersOut(BaseModel):
    items: list[FolderOut]


class PatchIn(Strict):
    unread: bool | None = None
    folder: MovableFolder | None = None


class SendIn(Strict):
    to: list[AddressIn] = Field(default_factory=list, max_length=5000)
    cc: list[AddressIn] = Field(default_factory=list, max_length=5000)
    bcc: list[AddressIn] = Field(default_factory=list, max_length=5000)
    subject: str = Field(default="", max_length=998)
    body_text: str = Field(default="", max_length=10_000_000)
    body_html: str | None = Field(default=None, max_length=20_000_000)
    in_reply_to: str | None = Field(default=None, max_length=64)
    attachments: list[str] = Field(default_factory=list, max_length=200)


class NotificationsOut(BaseModel):
    items: list[NotificationOut]


class ResendIn(Strict):
    recipients: list[str] | None = Field(default=None, max_length=5000)


class SmtpIn(Strict):
    host: str = Field(default="localhost", max_length=255)
    port: int = Field(default=25, ge=1, le=65535)
    security: Literal["starttls", "tls", "none"] = "none"
    username: str | None = Field(default=None, max_length=255)
    password: str | None = Field(default=None, max_length=1024)
    from_address: str = Field(default="pen@localhost", max_length=320)


class SmtpOut(BaseModel):
    host: str
    port: int
    security: Literal["starttls", "tls", "none"]
    username: str | None
    from_address: str


class PenIn(Strict):
    name: str = Field(min_length=1, max_length=200)
    base_url: str = Field(min_length=1, max_length=2000)
    footer: str = Field(default="", max_length=4000)
    smtp: SmtpIn | None = None


class PenOut(BaseModel):
    name: str
    base_url: str
    footer: str
    smtp: SmtpOut
    max_upload_bytes: int


SubjectPolicy = Literal["keep", "generic"]


class PackageIn(Strict):
    disclaimer: str | None = Field(default=None, max_length=20000)
    subject: SubjectPolicy | None = None  # left out: unchanged ("keep" for a new package)


class PackageOut(BaseModel):
    name: str
    disclaimer: str | None
    subject: SubjectPolicy


class PackagesOut(BaseModel):
    items: list[PackageOut]
