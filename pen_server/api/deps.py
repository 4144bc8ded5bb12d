"""What every route needs: the app's services, a database session, the signed-in user.

Routes name these by type: `SessionDep`, `ServicesDep` (pen_server/deps.py, shared with the
web pages), `CallerDep` (the user of the bearer token), `AdminDep` (an administrator), and
`CallerWithoutSessionDep` for long requests and responses that must not hold a database
connection (uploads, downloads, the event stream)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from pen_server import accounts
from pen_server.deps import ServicesDep, SessionDep, db_session, services
from pen_server.errors import ApiError
from pen_server.models import AuthToken, User

__all__ = ["AdminDep", "BearerDep", "Caller", "CallerDep", "CallerWithoutSessionDep", "ServicesDep", "SessionDep",
           "db_session", "services"]

_bearer = HTTPBearer(auto_error=False)
BearerDep = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


@dataclass
class Caller:
    user: User
    token: AuthToken


def caller(credentials: BearerDep, session: SessionDep) -> Caller:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise ApiError(401, "unauthenticated", "You are not signed in; sign in first.",
                       headers={"WWW-Authenticate": "Bearer"})
    user, token = accounts.authenticate(session, credentials.credentials)
    return Caller(user, token)


CallerDep = Annotated[Caller, Depends(caller, scope="function")]


def admin(who: CallerDep) -> Caller:
    if who.user.role != "admin":
        raise ApiError(403, "forbidden", "Only an administrator of this PEN can do that.")
    return who


AdminDep = Annotated[Caller, Depends(admin, scope="function")]


def caller_without_session(request: Request, credentials: BearerDep) -> Caller:
    """For long-lived requests and responses (uploads, downloads, the event stream): checks
    the token and gives the database connection back at once instead of holding it."""
    with services(request).db.session() as session:
        return caller(credentials, session)


CallerWithoutSessionDep = Annotated[Caller, Depends(caller_without_session)]
