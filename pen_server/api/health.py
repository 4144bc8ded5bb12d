"""Liveness and readiness, for load balancers and service managers (no sign-in).

`GET /health`: the process answers (nothing else is looked at, so a slow database never
makes a balancer restart a healthy process). `GET /health/ready`: the database and the
attachment store answer within CHECK_SECONDS and the server is not stopping; otherwise 503
with one sentence naming what does not answer, so a balancer sends requests elsewhere."""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter
from sqlalchemy import text

from pen_server.api.deps import ServicesDep
from pen_server.errors import ApiError

log = logging.getLogger("pen_server")
router = APIRouter(tags=["meta"])
CHECK_SECONDS = 5.0


def _not_ready(why: str) -> ApiError:
    return ApiError(503, "unavailable", why, headers={"Retry-After": "5"})


@router.get("/health")
def health():
    return {"status": "ok"}


@router.get("/health/ready")
async def ready(pen: ServicesDep):
    if pen.draining:
        raise _not_ready("This server process is stopping; send requests to another one.")

    def database() -> None:
        with pen.db.session() as session:
            session.execute(text("SELECT 1"))

    # The sentences stay general (no path, host or endpoint for a caller without a sign-in);
    # the cause goes to the log, once each time the answer changes.
    try:
        await asyncio.wait_for(asyncio.to_thread(database), CHECK_SECONDS)
    except Exception as exc:
        _note(pen, "database", f"the database does not answer: {_first_line(exc)}")
        raise _not_ready("The database does not answer; check that it is running and reachable.") from None
    try:
        await asyncio.wait_for(pen.blobs.check(), CHECK_SECONDS)
    except Exception as exc:
        _note(pen, "store", f"the attachment store does not answer: {_first_line(exc)}")
        raise _not_ready("The attachment store does not answer; check that it is running and reachable.") from None
    _note(pen, None, "ready again: the database and the attachment store answer")
    return {"status": "ready"}


def _first_line(exc: Exception) -> str:
    return (str(getattr(exc, "message", "") or exc).splitlines() or [type(exc).__name__])[0][:300]


def _note(pen, failing: str | None, line: str) -> None:
    """Logs `line` when readiness changes (probes come every few seconds: no flood)."""
    if getattr(pen, "not_ready", None) != failing:
        pen.not_ready = failing
        (log.warning if failing else log.info)("readiness: %s", line)
