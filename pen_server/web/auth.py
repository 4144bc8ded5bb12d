"""Sign-in and sign-up for the web pages: the API's own code (pen_server.signin), so both
share the guessing limits and the password-hashing pool. Here only what the pages add:
the link's invitation looked up without an error (a GET shows a page either way)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from pen_server import security
from pen_server.models import Notification, utcnow
from pen_server.signin import client_address, invitation_subject, off_routes_pool, register_invitation, sign_in

__all__ = ["client_address", "invitation", "invitation_subject", "off_routes_pool", "register_invitation",
           "sign_in"]


def invitation(session: Session, token: str) -> Notification | None:
    """The notification whose link carries `token`, while the link is valid; else None."""
    if not token or len(token) > 200:
        return None
    n = session.scalar(select(Notification).where(Notification.token_hash == security.token_hash(token)))
    if n is None or n.token_expires_at <= utcnow():
        return None
    return n
