"""Sign-ins to the web pages: server-side rows (WebSession) named by a random token in a
`__Host-` cookie (Secure, HttpOnly, SameSite=Lax, path /). A row ends when the person signs
out, when the password changes (accounts.revoke_all), after IDLE without a page, and
LIFETIME after the sign-in whatever happens."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from fastapi import Request, Response
from sqlalchemy import delete, or_
from sqlalchemy.orm import Session

from pen_server import effective_settings, security
from pen_server.models import User, WebSession, utcnow


@dataclass(frozen=True)
class Who:
    id: str
    email: str
    role: str
    display_name: str


COOKIE = "__Host-pen_session"
IDLE = timedelta(minutes=60)
LIFETIME = timedelta(hours=12)
TOUCH = timedelta(seconds=60)  # last_seen_at is written at most this often: a page stays a read


def start(session: Session, user: User) -> str:
    """A new sign-in for `user`; returns the cookie's token (only its hash is stored)."""
    now = utcnow()
    session.execute(delete(WebSession).where(WebSession.user_id == user.id, or_(
        WebSession.expires_at <= now, WebSession.last_seen_at <= now - IDLE)))
    token = security.new_token()
    session.add(WebSession(token_hash=security.token_hash(token), user_id=user.id, created_at=now,
                           last_seen_at=now, expires_at=now + LIFETIME))
    return token


def set_cookie(response: Response, token: str) -> None:
    response.set_cookie(COOKIE, token, path="/", secure=True, httponly=True, samesite="lax")


def clear_cookie(response: Response) -> None:
    response.delete_cookie(COOKIE, path="/", secure=True, httponly=True, samesite="lax")


def begin(request: Request, session: Session) -> User | None:
    """What every page needs first: the PEN's name and the signed-in user, if any."""
    conf = effective_settings.effective(session, request.app.state.pen.settings)
    request.state.pen_name, request.state.pen_footer = conf.name, conf.footer
    return load(request, session)


def load(request: Request, session: Session) -> User | None:
    """The signed-in user of this request (also kept in request.state), or None."""
    token = request.cookies.get(COOKIE)
    if not token or len(token) > 100:
        return None
    row = session.get(WebSession, security.token_hash(token))
    if row is None:
        return None
    now = utcnow()
    if row.expires_at <= now or row.last_seen_at <= now - IDLE:
        session.delete(row)
        return None
    if now - row.last_seen_at > TOUCH:
        row.last_seen_at = now
    user = session.get(User, row.user_id)
    # The pages (an error page too, after a rollback) read a copy that no session can expire.
    request.state.user = Who(user.id, user.email, user.role, user.display_name)
    request.state.session_hash = row.token_hash
    return user


def end(request: Request, session: Session) -> None:
    """Sign out: the row goes, so the cookie is worth nothing even if a copy was kept."""
    binding = getattr(request.state, "session_hash", None)
    if binding:
        session.execute(delete(WebSession).where(WebSession.token_hash == binding))
