"""Sign-in and sign-up for the web pages, with the API's guessing limits.

This is the one place the pages call for either. `pen_server.signin` (shared with the API)
is used when it exists; until then the same steps as the API's /auth/login and
/invitations/{token}/register run here, on the same limiter (`Services.limiter`)."""

from __future__ import annotations

from fastapi import Request
from sqlalchemy import select
from sqlalchemy.orm import Session

from pen_server import accounts, security
from pen_server.errors import ApiError, validation
from pen_server.models import Notification, User, utcnow
from pen_server.text import has_control

try:  # the shared module, once it is on this branch
    from pen_server import signin as _shared
except ImportError:
    _shared = None

BAD_LOGIN = "The e-mail address or the password is wrong."


def client_address(request: Request, settings) -> str:
    if _shared is not None:
        return _shared.client_address(request, settings)
    return request.client.host if request.client else ""


def sign_in(session: Session, pen, email: str, password: str, client_ip: str) -> User:
    if _shared is not None:
        return _shared.sign_in(session, pen, email, password, client_ip)
    key = email.strip().lower()
    wait = pen.limiter.retry_after(key)
    if wait:  # answered before any hashing, so a flood costs us nothing
        raise ApiError(429, "rate_limited", f"Too many failed sign-ins for this account; wait {wait} seconds.",
                       headers={"Retry-After": str(wait)})
    user = session.scalar(select(User).where(User.email == key))
    if not security.verify_password(user.password_hash if user else None, password):
        pen.limiter.failed(key)
        raise ApiError(401, "invalid_credentials", BAD_LOGIN)
    pen.limiter.succeeded(key)
    return user


def invitation(session: Session, token: str) -> Notification | None:
    """The notification whose link carries `token`, while the link is valid."""
    if not token or len(token) > 200:
        return None
    n = session.scalar(select(Notification).where(Notification.token_hash == security.token_hash(token)))
    if n is None or n.token_expires_at <= utcnow():
        return None
    return n


def register_invitation(session: Session, pen, token: str, display_name: str, password: str) -> User:
    if _shared is not None:
        return _shared.register_invitation(session, pen, token, display_name, password)
    n = invitation(session, token)
    if n is None:
        raise ApiError(404, "not_found", "That invitation does not exist or has expired.")
    name = display_name.strip()
    if not name or has_control(name) or len(name) > 200:
        raise validation({"display_name": "a name without line breaks or control characters"},
                         "Your name cannot be empty, longer than 200 characters, or contain line breaks.")
    accounts.check_password_rules(password)
    user = session.get(User, n.recipient_user_id) if n.recipient_user_id else None
    if user is None:
        user = accounts.find_user(session, n.recipient_email)
    if user is not None and user.registered:
        raise ApiError(409, "account_exists", "That e-mail address has an account already; sign in instead.")
    if user is None:
        user = accounts.create_user(session, n.recipient_email, name, None, role="guest")
    user.display_name = name
    user.password_hash = security.hash_password(password)
    session.flush()
    return user
