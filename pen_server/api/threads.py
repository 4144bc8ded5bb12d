"""Threads: a folder as conversations, and one conversation's messages."""

from __future__ import annotations

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from pen_server import threads
from pen_server.api.deps import CallerDep, SessionDep
from pen_server.events import EVENT_ID_HEADER, EVENT_ID_HEADER_DOC, newest_id
from pen_server.schemas import Folder, Order, PageOut, ThreadPageOut, rfc3339

router = APIRouter(tags=["threads"])
CURSOR = Query(None, max_length=512, pattern="^[A-Za-z0-9_-]*$")


@router.get("/threads", response_model=ThreadPageOut, responses={200: {"description": "A page of the folder's "
                                                                                     "threads.",
                                                                      "headers": EVENT_ID_HEADER_DOC}})
def list_threads(
    who: CallerDep,
    session: SessionDep,
    folder: Folder = "inbox",
    limit: int = Query(50, ge=1, le=200),
    cursor: str | None = CURSOR,
    order: Order = "newest",
):
    newest = newest_id(session)  # before the page (events.newest_id)
    page = threads.page(session, who.user, folder, limit, cursor or None, order)
    for item in page["items"]:  # serialised directly, as GET /messages is
        item["latest"]["sent_at"] = rfc3339(item["latest"]["sent_at"])
    return JSONResponse(page, headers={EVENT_ID_HEADER: str(newest)})


@router.get("/threads/{thread_id}", response_model=PageOut)
def thread_messages(
    thread_id: str,
    who: CallerDep,
    session: SessionDep,
    folder: Folder | None = None,
    limit: int = Query(50, ge=1, le=200),
    cursor: str | None = CURSOR,
    order: Order = "oldest",
):
    page = threads.messages(session, who.user, thread_id, folder, limit, cursor or None, order)
    for item in page["items"]:
        item["sent_at"] = rfc3339(item["sent_at"])
    return JSONResponse(page)
