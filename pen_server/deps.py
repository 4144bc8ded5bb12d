"""What a route of the API or of the web pages takes from its request: the app's services
(app.py's Services) and a database session. The API's sign-in dependencies are in
api/deps.py, the web pages' in web/core.py; both build on these."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy.orm import Session


def services(request: Request) -> Any:  # app.Services; app.py imports the routes, so not named here
    return request.app.state.pen


def db_session(request: Request) -> Iterator[Session]:
    # Used with scope="function": the commit happens before the response is sent, so a
    # client that acts on the answer (a new token, a moved message) finds it stored.
    with services(request).db.session() as session:
        yield session


ServicesDep = Annotated[Any, Depends(services)]
SessionDep = Annotated[Session, Depends(db_session, scope="function")]
