"""What every route needs: the app's services, a database session, the signed-in user."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from pen_server import accounts
from pen_server.errors import ApiError
from pen_server.models import AuthToken, User

_bearer = HTTPBearer(auto_error=False)


def services(request: Request):
    return request.app.state.pen


def db_session(request: Request):
    # Used with scope="function": the commit happens before the response is sent, so a
    # client that acts on the answer (a new token, a moved message) finds it stored.
    with request.app.state.pen.db.session() as session:
        yield session


@dataclass
class Caller:
    user: User
    token: AuthToken


def caller(credentials: HTTPAuthorizationCredentials | None = Depends(_bearer),
           session=Depends(db_session, scope="function")) -> Caller:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise ApiError(401, "unauthenticated", "You are not signed in; sign in first.",
                       headers={"WWW-Authenticate": "Bearer"})
    user, token = accounts.authenticate(session, credentials.credentials)
    return Caller(user, token)


def admin(who: Caller = Depends(caller, scope="function")) -> Caller:
    if who.user.role != "admin":
        raise ApiError(403, "forbidden", "Only an administrator of this PEN can do that.")
    return who


def caller_without_session(request: Request,
                           credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> Caller:
    """For long-lived responses (the event stream): checks the token and gives the
    database connection back at once instead of holding it for the stream's life."""
    with request.app.state.pen.db.session() as session:
        return caller(credentials, session)
