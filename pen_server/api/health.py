"""Liveness and readiness, for load balancers and service managers (no sign-in).

`GET /health`: the process answers (nothing else is looked at, so a slow database never
makes a balancer restart a healthy process). `GET /health/ready`: the database and the
attachment store answer within CHECK_SECONDS and the server is not stopping; otherwise 503
with one sentence naming what does not answer, so a balancer sends requests elsewhere."""

from __future__ import annotations

import asyncio
import os

from fastapi import APIRouter, Depends
from sqlalchemy import text

from pen_server.api.deps import services
from pen_server.errors import ApiError

router = APIRouter(tags=["meta"])
CHECK_SECONDS = 5.0


def _not_ready(why: str) -> ApiError:
    return ApiError(503, "unavailable", why, headers={"Retry-After": "5"})


@router.get("/health")
def health():
    return {"status": "ok"}


@router.get("/health/ready")
async def ready(pen=Depends(services)):
    if pen.draining:
        raise _not_ready("This server process is stopping; send requests to another one.")

    def database() -> None:
        with pen.db.session() as session:
            session.execute(text("SELECT 1"))

    try:
        await asyncio.wait_for(asyncio.to_thread(database), CHECK_SECONDS)
    except Exception:
        raise _not_ready("The database does not answer; check that it is running and reachable.") from None
    try:
        await asyncio.wait_for(_store_answers(pen.blobs), CHECK_SECONDS)
    except Exception:
        raise _not_ready("The attachment store does not answer; check that it is running and reachable.") from None
    return {"status": "ready"}


async def _store_answers(blobs) -> None:
    root = blobs.root
    if not await asyncio.to_thread(lambda: root.is_dir() and os.access(root, os.W_OK | os.X_OK)):
        raise OSError(f"{root} cannot be written")
