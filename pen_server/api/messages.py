"""Messages: the list, one message, moving and deleting, sending, notifications, events."""

from __future__ import annotations

import asyncio
import time

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from pen_server import accounts, addresses, after_send, audit, mailbox, search, search_run, sending
from pen_server.api.deps import Caller, CallerDep, CallerWithoutSessionDep, ServicesDep, SessionDep
from pen_server.events import END, EVENT_ID_HEADER, EVENT_ID_HEADER_DOC, frame, newest_id, parse_event_id
from pen_server.schemas import (
    AddressesOut,
    AuditPageOut,
    ExpiryIn,
    Folder,
    FoldersOut,
    MessageOut,
    NotificationsOut,
    Order,
    PageOut,
    PatchIn,
    ResendIn,
    RevokeIn,
    SendIn,
    SummaryOut,
    rfc3339,
)

router = APIRouter(tags=["messages"])
KEEPALIVE_SECONDS = 15.0


def _message_json(session, entry) -> dict:
    return MessageOut.model_validate(mailbox.message_out(session, entry)).model_dump(mode="json", by_alias=True)


@router.get("/messages", response_model=PageOut, responses={200: {"description": "A page of the folder.",
                                                                   "headers": EVENT_ID_HEADER_DOC}})
async def list_messages(
    request: Request,
    pen: ServicesDep,
    who: CallerDep,
    session: SessionDep,
    folder: Folder = "inbox",
    limit: int = Query(50, ge=1, le=200),
    cursor: str | None = Query(None, max_length=512, pattern="^[A-Za-z0-9_-]*$"),
    unread: bool | None = None,
    q: str | None = Query(None, max_length=500),
    order: Order = "newest",
):
    # The newest event's id is read before the page (events.newest_id), in the same thread call.
    if q and search.parse(q):  # a search: within its slot and time limit (search_run.py)
        newest = await run_in_threadpool(newest_id, session)
        page = await search_run.run(
            request, pen.search_slots, pen.settings.search_seconds, who.user.id, session,
            lambda before: mailbox.page(session, who.user, folder, limit, cursor or None, unread, q, order, before))
    else:
        newest, page = await run_in_threadpool(lambda: (
            newest_id(session), mailbox.page(session, who.user, folder, limit, cursor or None, unread, None, order)))
    # The hot path of every client: serialised directly (the model above documents it).
    for item in page["items"]:
        item["sent_at"] = rfc3339(item["sent_at"])
    return JSONResponse(page, headers={EVENT_ID_HEADER: str(newest)})


@router.get("/folders", response_model=FoldersOut, responses={200: {"description": "The caller's folders.",
                                                                    "headers": EVENT_ID_HEADER_DOC}})
def list_folders(who: CallerDep, session: SessionDep, response: Response):
    response.headers[EVENT_ID_HEADER] = str(newest_id(session))  # before the counts (events.newest_id)
    return {"items": mailbox.folders(session, who.user.id)}


@router.get("/addresses", response_model=AddressesOut)
def complete_addresses(
    who: CallerDep,
    session: SessionDep,
    prefix: str = Query(..., min_length=1, max_length=addresses.MAX_PREFIX),
    limit: int = Query(10, ge=1, le=addresses.MAX_LIMIT),
):
    """The members and the people of the caller's own messages whose address or name starts
    with `prefix` (pen_server/addresses.py)."""
    return {"items": addresses.complete(session, who.user, prefix, limit)}


@router.get("/messages/{message_id}", response_model=MessageOut,
            responses={410: {"description": "`revoked`: the sender withdrew it from the caller; `expired`: past its "
                                            "end date (the sender still reads its own copy)."}})
def get_message(message_id: str, request: Request, who: CallerDep, session: SessionDep, pen: ServicesDep):
    entry = mailbox.readable_entry(session, who.user, message_id)
    out = _message_json(session, entry)
    event = after_send.record_read(session, entry, audit.who_of(request, pen.settings, who.user))
    session.commit()
    if event is not None:
        pen.hub.publish(*event)
    return JSONResponse(out)


@router.patch("/messages/{message_id}", response_model=SummaryOut)
def patch_message(message_id: str, body: PatchIn, who: CallerDep, session: SessionDep):
    entry = mailbox.patch(session, who.user, message_id, body.unread, body.folder)
    session.flush()
    return mailbox.summary_out(entry)


@router.delete("/messages/{message_id}", status_code=204)
def delete_message(message_id: str, who: CallerDep, session: SessionDep):
    mailbox.delete(session, who.user, message_id)
    return Response(status_code=204)


@router.post("/messages", response_model=MessageOut, status_code=201)
def send_message(
    body: SendIn,
    request: Request,
    who: CallerDep,
    session: SessionDep,
    pen: ServicesDep,
    idempotency_key: str | None = Header(None, max_length=1024),
):
    entry, events = sending.send(session, pen.settings, pen.secret, who.user, body, idempotency_key,
                                 audit.who_of(request, pen.settings, who.user))
    out = _message_json(session, entry)
    session.commit()
    pen.hub.publish_many(events)
    if events:
        pen.wake_worker()
    return JSONResponse(out, status_code=201)


@router.get("/messages/{message_id}/notifications", response_model=NotificationsOut)
def notifications(message_id: str, who: CallerDep, session: SessionDep):
    sending.own_message(session, who.user, message_id)
    return {"items": mailbox.notification_items(session, message_id)}


@router.post("/messages/{message_id}/notifications/resend", response_model=NotificationsOut, status_code=202)
def resend(message_id: str, who: CallerDep, session: SessionDep, pen: ServicesDep, body: ResendIn | None = None):
    sending.resend(session, who.user, message_id, body.recipients if body else None)
    out = {"items": mailbox.notification_items(session, message_id)}
    session.commit()
    pen.wake_worker()
    return out


@router.post("/messages/{message_id}/revoke", response_model=MessageOut)
def revoke(
    message_id: str,
    request: Request,
    who: CallerDep,
    session: SessionDep,
    pen: ServicesDep,
    body: RevokeIn | None = None,
):
    """Withdraw the message from the recipients named (all when left out): from then on they
    get 410 `revoked`, and their notifications not yet sent are `cancelled`. Only the sender
    (404 for anyone else); withdrawing again changes nothing."""
    message = sending.own_message(session, who.user, message_id)
    cancelled = after_send.revoke(session, message, body.recipients if body else None,
                                  audit.who_of(request, pen.settings, who.user))
    return _own_copy_answer(session, who, message_id, pen, [
        (who.user.id, "notification.updated", {"message_id": message_id, "status": "cancelled",
                                               "recipient": mailbox.address(n.recipient_email, n.recipient_name)})
        for n in cancelled])


@router.put("/messages/{message_id}/expiry", response_model=MessageOut)
def set_expiry(message_id: str, body: ExpiryIn, request: Request, who: CallerDep, session: SessionDep,
               pen: ServicesDep):
    """Move the end date (RFC 3339, in the future) or remove it (null). Only the sender."""
    message = sending.own_message(session, who.user, message_id)
    after_send.set_expiry(session, message, after_send.parse_expiry(body.expires_at),
                          audit.who_of(request, pen.settings, who.user))
    return _own_copy_answer(session, who, message_id, pen, [])


def _own_copy_answer(session, who: Caller, message_id: str, pen, events: list) -> JSONResponse:
    """The sender's Message after a change, committed, then the change's events."""
    entry = mailbox.entry_for(session, who.user, message_id)
    session.refresh(entry)
    out = _message_json(session, entry)
    session.commit()
    if events:
        pen.hub.publish_many(events)
    return JSONResponse(out)


@router.get("/messages/{message_id}/audit", response_model=AuditPageOut)
def message_audit(
    message_id: str,
    who: CallerDep,
    session: SessionDep,
    limit: int = Query(100, ge=1, le=audit.PAGE_MAX),
    cursor: str | None = Query(None, max_length=512, pattern="^[A-Za-z0-9_-]*$"),
):
    """The audit rows of the caller's own sent message, oldest first (404 for anyone else).
    Client addresses are left out here (null): they are the administrator's to see."""
    sending.own_message(session, who.user, message_id)
    rows, next_cursor = audit.page(session, message_id=message_id, after_id=audit.decode_cursor(cursor)
                                   if cursor else 0, limit=limit)
    return {"items": [audit.row_out(r, with_client=False) for r in rows], "next_cursor": next_cursor}


@router.get(
    "/events",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "Server-sent events, each with an `id:`: `message.new` per new message, "
                           "`notification.updated`, `resync` when missed events cannot be replayed; "
                           "a comment every 15 s.",
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        }
    },
)
async def events(
    request: Request,
    who: CallerWithoutSessionDep,
    pen: ServicesDep,
    last_event_id: str | None = Header(None, alias="Last-Event-ID", max_length=100,
                                       description="The id of the last event the client has; what "
                                                   "came after it is sent first."),
):
    token_hash, check_every = who.token.token_hash, pen.settings.stream_check_seconds
    user_id = who.user.id

    def sign_in_stands() -> bool:
        with pen.db.session() as session:
            return accounts.sign_in_stands(session, token_hash)

    async def stream():
        sub = pen.hub.subscribe(user_id, who.token.family_id)
        try:
            yield ": connected\n\n"
            sent_id = 0
            if last_event_id is not None:  # subscribed first, so nothing falls between replay and live
                missed, resync = await asyncio.to_thread(pen.hub.replay, user_id, parse_event_id(last_event_id))
                for event_id, text in missed:
                    sent_id = event_id
                    yield text
                if resync is not None:
                    sent_id = resync
                    yield frame(resync, "resync", {})
            checked = sent = time.monotonic()
            while True:
                try:
                    item = await asyncio.wait_for(sub.queue.get(), min(KEEPALIVE_SECONDS, check_every))
                except TimeoutError:
                    item = False
                if item is END or await request.is_disconnected():
                    break
                if item and item[0] <= sent_id:  # already replayed
                    continue
                # The sign-in may have ended in another process (`pen-server user passwd`):
                # looked up before each event, and every few seconds while none come.
                if item or time.monotonic() - checked >= check_every:
                    if not await asyncio.to_thread(sign_in_stands):
                        break
                    checked = time.monotonic()
                if item:
                    sent_id = item[0]
                    yield item[1]
                    sent = time.monotonic()
                elif time.monotonic() - sent >= KEEPALIVE_SECONDS:
                    yield ": keep-alive\n\n"
                    sent = time.monotonic()
        finally:
            pen.hub.unsubscribe(sub)

    return StreamingResponse(
        stream(), media_type="text/event-stream", headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    )
