"""Administration: the PEN's name, address, footer and SMTP relay; membership packages; the blocklist
watch and the delivery report."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from fastapi import APIRouter, Depends, Path, Query
from sqlalchemy import select

from pen_server import audit, deliverability, effective_settings
from pen_server.api.deps import admin, db_session, services
from pen_server.errors import not_found, validation
from pen_server.models import Package
from pen_server.schemas import (
    NO_CONTROL,
    AuditPageOut,
    DeliverabilityOut,
    PackageIn,
    PackageOut,
    PackagesOut,
    PenIn,
    PenOut,
    ReportOut,
)
from pen_server.text import BASE_URL_PATTERN, has_control

router = APIRouter(prefix="/admin", tags=["admin"])
SINCE_PATTERN = (r"^[0-9]{4}-[0-9]{2}-[0-9]{2}"
                 r"([Tt ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]+)?)?([Zz]|[+-][0-9]{2}:[0-9]{2})?)?$")


def _pen_out(session, settings) -> dict:
    conf = effective_settings.effective(session, settings)
    smtp = conf.smtp
    return {"name": conf.name, "base_url": conf.base_url, "footer": conf.footer,
            "max_upload_bytes": settings.max_upload_bytes,
            "smtp": {"host": smtp.host, "port": smtp.port, "security": smtp.security,
                     "username": smtp.username, "from_address": smtp.from_address}}


@router.get("/pen", response_model=PenOut)
def get_pen(_=Depends(admin, scope="function"), session=Depends(db_session, scope="function"), pen=Depends(services)):
    return _pen_out(session, pen.settings)


@router.put("/pen", response_model=PenOut)
def put_pen(
    body: PenIn,
    _=Depends(admin, scope="function"),
    session=Depends(db_session, scope="function"),
    pen=Depends(services),
):
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
def list_packages(_=Depends(admin, scope="function"), session=Depends(db_session, scope="function")):
    return {"items": [_package_out(p) for p in session.scalars(select(Package).order_by(Package.name))]}


def _package_out(package: Package) -> dict:
    return {"name": package.name, "disclaimer": package.disclaimer, "subject": package.subject_policy or "keep",
            "expire_days": package.expire_days}


@router.put("/packages/{name}", response_model=PackageOut)
def put_package(
    body: PackageIn,
    name: str = Path(min_length=1, max_length=64, json_schema_extra=NO_CONTROL),
    _=Depends(admin, scope="function"),
    session=Depends(db_session, scope="function"),
):
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
    message: str | None = Query(None, max_length=64, description="A message id: its rows only."),
    user: str | None = Query(None, max_length=320, description="An e-mail address: the rows it acted in, or "
                                                               "that concern it as a recipient."),
    since: str | None = Query(None, max_length=64, pattern=SINCE_PATTERN,
                              description="YYYY-MM-DD (UTC) or an RFC 3339 time: rows from then on."),
    cursor: str | None = Query(None, max_length=512, pattern="^[A-Za-z0-9_-]*$"),
    limit: int = Query(100, ge=1, le=audit.PAGE_MAX),
    _=Depends(admin, scope="function"),
    session=Depends(db_session, scope="function"),
):
    """Every row of the audit trail, oldest first (the chain's order), keyset-paged."""
    rows, next_cursor = audit.page(session, message_id=message or None, user=user.strip().lower() if user else None,
                                   since=parse_since(since) if since else None,
                                   after_id=audit.decode_cursor(cursor) if cursor else 0, limit=limit)
    return {"items": [audit.row_out(r) for r in rows], "next_cursor": next_cursor}


def parse_since(value: str) -> datetime:
    """YYYY-MM-DD (the day's start, UTC) or an RFC 3339 time; else 422."""
    try:
        parsed = datetime.fromisoformat(value.strip().replace("z", "Z"))
    except ValueError:
        raise validation({"since": "YYYY-MM-DD or an RFC 3339 time"},
                         f"since {value[:40]!r} is not a date (YYYY-MM-DD) or an RFC 3339 time.") from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
@router.get("/deliverability", response_model=DeliverabilityOut)
def get_deliverability(_=Depends(admin, scope="function"), pen=Depends(services)):
    """The last blocklist check (`[deliverability]`) and the listings it found."""
    return deliverability.current(pen.db, pen.settings)


@router.get("/deliverability/report", response_model=ReportOut)
def get_report(
    since: str = Query("30d", max_length=20, json_schema_extra={"pattern": deliverability.SINCE_PATTERN},
                       description="How far back: minutes, hours, days or weeks, e.g. 90m, 12h, 30d, 2w."),
    _=Depends(admin, scope="function"),
    pen=Depends(services),
):
    """Notifications per recipient domain and in total, for the messages sent since then."""
    try:
        period = deliverability.parse_since(since)
    except ValueError:
        raise validation({"since": "a period such as 30d, 12h, 90m or 2w"},
                         f"since must be a period such as 30d, 12h, 90m or 2w, not {since[:40]!r}.") from None
    return deliverability.report(pen.db, period)
