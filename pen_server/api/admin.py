"""Administration: the PEN's name, address, footer and SMTP relay; membership packages; the
accounts (members.py) and the suppression list (suppression.py); the audit trail; the blocklist
watch and the delivery report."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Response
from sqlalchemy import select

from pen_server import audit, deliverability, effective_settings, members, suppression
from pen_server.api.deps import AdminDep, ServicesDep, SessionDep
from pen_server.errors import ApiError, not_found, validation
from pen_server.models import Package, User
from pen_server.schemas import (
    NO_CONTROL,
    AccountOut,
    AccountPatchIn,
    AccountsOut,
    AuditPageOut,
    DeliverabilityOut,
    PackageIn,
    PackageOut,
    PackagesOut,
    PenIn,
    PenOut,
    ReportOut,
    SuppressionsOut,
)
from pen_server.text import BASE_URL_PATTERN, NO_CONTROL_PATTERN, has_control

router = APIRouter(prefix="/admin", tags=["admin"])
_PACKAGE = Path(min_length=1, max_length=64, json_schema_extra=NO_CONTROL)
# The lists' parameters: q any text without control characters, cursors as the lists give them out.
_Q = Query(None, max_length=320, pattern=NO_CONTROL_PATTERN, description="Only those whose address (or, for "
           "accounts, name) holds this text, ignoring case.")
_CURSOR = Query(None, max_length=512, pattern="^[A-Za-z0-9_-]*$", description="`next_cursor` of the page before.")


@dataclass(frozen=True)
class ListPage:
    """One page of an administrator's list by address (paging.by_key): its filter, the cursor
    of the page before and its size, as the query gives them."""
    q: str | None
    cursor: str | None
    limit: int


def list_page(q: str | None = _Q, cursor: str | None = _CURSOR, limit: int = Query(50, ge=1, le=200)) -> ListPage:
    return ListPage(q or None, cursor or None, limit)


ListPageDep = Annotated[ListPage, Depends(list_page)]


def _pen_out(session, settings) -> dict:
    conf = effective_settings.effective(session, settings)
    smtp = conf.smtp
    return {"name": conf.name, "base_url": conf.base_url, "footer": conf.footer,
            "max_upload_bytes": settings.max_upload_bytes,
            "smtp": {"host": smtp.host, "port": smtp.port, "security": smtp.security,
                     "username": smtp.username, "from_address": smtp.from_address}}


@router.get("/pen", response_model=PenOut)
def get_pen(_: AdminDep, session: SessionDep, pen: ServicesDep):
    return _pen_out(session, pen.settings)


@router.put("/pen", response_model=PenOut)
def put_pen(body: PenIn, _: AdminDep, session: SessionDep, pen: ServicesDep):
    fields = {}
    if has_control(body.name):
        fields["name"] = "no line breaks or control characters"
    if not re.fullmatch(BASE_URL_PATTERN, body.base_url):
        fields["base_url"] = "an https:// address: a host name, maybe a port and a path, no query"
    if has_control(body.footer.replace("\n", "")):
        fields["footer"] = "no control characters"
    if body.smtp and (
        has_control(body.smtp.host) or has_control(body.smtp.from_address) or "@" not in body.smtp.from_address
    ):
        fields["smtp"] = "a host name and a from_address without control characters"
    if fields:
        raise validation(fields)
    effective_settings.store(session, "name", body.name)
    effective_settings.store(session, "base_url", body.base_url.rstrip("/"))
    effective_settings.store(session, "footer", body.footer)
    if body.smtp is not None:
        old = effective_settings.stored(session).get("smtp") or {}
        smtp = body.smtp.model_dump()
        if smtp.get("password") is None:  # write-only: leaving it out keeps the stored one
            smtp["password"] = old.get("password")
        effective_settings.store(session, "smtp", smtp)
    session.flush()
    return _pen_out(session, pen.settings)


@router.get("/packages", response_model=PackagesOut)
def list_packages(_: AdminDep, session: SessionDep):
    return {"items": [_package_out(p) for p in session.scalars(select(Package).order_by(Package.name))]}


def _package_out(package: Package) -> dict:
    return {"name": package.name, "disclaimer": package.disclaimer, "subject": package.subject_policy or "keep",
            "expire_days": package.expire_days}


@router.put("/packages/{name}", response_model=PackageOut)
def put_package(body: PackageIn, _: AdminDep, session: SessionDep, name: str = _PACKAGE):
    if not (1 <= len(name) <= 64) or has_control(name):
        raise not_found("That package")
    package = session.get(Package, name)
    if package is None:
        package = Package(name=name, subject_policy="keep")
        session.add(package)
    package.disclaimer = body.disclaimer
    if body.subject is not None:
        package.subject_policy = body.subject
    if "expire_days" in body.model_fields_set:  # null removes the default; left out keeps it
        package.expire_days = body.expire_days
    session.flush()
    return _package_out(package)


@router.get("/audit", response_model=AuditPageOut)
def audit_rows(
    _: AdminDep,
    session: SessionDep,
    message: str | None = Query(None, max_length=64, description="A message id: its rows only."),
    user: str | None = Query(None, max_length=320, description="An e-mail address: the rows it acted in, or "
                                                               "that concern it as a recipient."),
    since: str | None = Query(None, max_length=64, pattern=audit.SINCE_PATTERN,
                              description="YYYY-MM-DD (UTC) or an RFC 3339 time: rows from then on."),
    cursor: str | None = Query(None, max_length=512, pattern="^[A-Za-z0-9_-]*$"),
    limit: int = Query(100, ge=1, le=audit.PAGE_MAX),
):
    """Every row of the audit trail, oldest first (the chain's order), keyset-paged."""
    rows, next_cursor = audit.page(session, message_id=message or None, user=user.strip().lower() if user else None,
                                   since=audit.parse_since(since) if since else None,
                                   after_id=audit.decode_cursor(cursor) if cursor else 0, limit=limit)
    return {"items": [audit.row_out(r) for r in rows], "next_cursor": next_cursor}




@router.get("/deliverability", response_model=DeliverabilityOut)
def get_deliverability(_: AdminDep, pen: ServicesDep):
    """The last blocklist check (`[deliverability]`) and the listings it found."""
    return deliverability.current(pen.db, pen.settings)


@router.get("/deliverability/report", response_model=ReportOut)
def get_report(
    _: AdminDep,
    pen: ServicesDep,
    since: str = Query("30d", max_length=20, json_schema_extra={"pattern": deliverability.SINCE_PATTERN},
                       description="How far back: minutes, hours, days or weeks, e.g. 90m, 12h, 30d, 2w."),
):
    """Notifications per recipient domain and in total, for the messages sent since then."""
    try:
        period = deliverability.parse_since(since)
    except ValueError:
        raise validation({"since": "a period such as 30d, 12h, 90m or 2w"},
                         f"since must be a period such as 30d, 12h, 90m or 2w, not {since[:40]!r}.") from None
    return deliverability.report(pen.db, period)


def _refused(exc: members.Refused) -> ApiError:
    if exc.kind == "invalid":
        return validation({exc.field or "body": exc.message}, exc.message)
    return ApiError(409, "conflict", exc.message)


@router.delete("/packages/{name}", status_code=204)
def delete_package(_: AdminDep, session: SessionDep, name: str = _PACKAGE):
    if has_control(name) or session.get(Package, name) is None:
        raise not_found("That package")
    try:
        members.remove_package(session, name)
    except members.Refused as exc:
        raise _refused(exc) from None
    return Response(status_code=204)


@router.get("/users", response_model=AccountsOut)
def list_users(_: AdminDep, session: SessionDep, page: ListPageDep):
    """Every account (members, administrators and guests) by address, keyset-paged."""
    return members.page(session, page.q, page.cursor, page.limit)


@router.patch("/users/{user_id}", response_model=AccountOut)
def patch_user(
    body: AccountPatchIn,
    who: AdminDep,
    session: SessionDep,
    pen: ServicesDep,
    user_id: str = Path(min_length=1, max_length=64, json_schema_extra=NO_CONTROL),
):
    user = None if has_control(user_id) else session.get(User, user_id)
    if user is None or user.removed_at is not None:
        raise ApiError(404, "not_found", "There is no account with that id.")
    fields = body.model_dump(exclude_unset=True)
    if user.id == who.user.id and (fields.get("disabled") or fields.get("role") == "member"):
        raise ApiError(409, "conflict", "You cannot disable your own account or give up your own administrator "
                                        "role; another administrator can.")
    try:
        events = members.change(session, user, fields)
    except members.Refused as exc:
        raise _refused(exc) from None
    session.flush()
    out = AccountOut.model_validate(members.account_out(user)).model_dump(mode="json")
    session.commit()
    pen.hub.publish_many(events)  # the account's open event streams close, in every process
    return out


@router.get("/suppressions", response_model=SuppressionsOut)
def list_suppressions(_: AdminDep, session: SessionDep, page: ListPageDep):
    """The addresses that bounced permanently, by address, keyset-paged."""
    return suppression.page(session, page.q, page.cursor, page.limit)


@router.delete("/suppressions/{email}", status_code=204)
def delete_suppression(
    _: AdminDep,
    session: SessionDep,
    email: str = Path(min_length=1, max_length=320, json_schema_extra=NO_CONTROL),
):
    """Notifications to the address are sent again from now on (earlier ones can be resent)."""
    if has_control(email) or not suppression.remove(session, email):
        raise ApiError(404, "not_found", "That address is not on the suppression list.")
    return Response(status_code=204)
