"""Reading: one message with its thread, its body (HTML in a sandboxed frame of its own),
its attachments, streamed by the same code as the API's downloads, and, on the sender's own
copy, who was notified (each recipient's status and the mail server's answer)."""

from __future__ import annotations

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import select

from pen_server import mailbox
from pen_server.api.attachments import attachment_response
from pen_server.models import MailboxEntry, Message
from pen_server.web import sanitize
from pen_server.web.core import WebRoute, one_line, redirect, render, services
from pen_server.web.sessions import begin

router = APIRouter(route_class=WebRoute, include_in_schema=False)
THREAD_LIMIT = 200


def _signed_in_or_login(request: Request, s, message_id: str):
    user = begin(request, s)
    if user is None:
        return None, redirect(f"/login?next=/m/{message_id}")
    return user, None


def message_page(request: Request, message_id: str):
    with services(request).db.session() as s:
        user, away = _signed_in_or_login(request, s, message_id)
        if away:
            return away
        entry = mailbox.entry_for(s, user, message_id)
        if entry.unread:
            entry.unread = False
        m = entry.message
        thread = list(s.scalars(
            select(Message).join(MailboxEntry, MailboxEntry.message_id == Message.id)
            .where(MailboxEntry.user_id == user.id, Message.thread_id == m.thread_id, Message.id != m.id)
            .order_by(Message.sent_at, Message.id).limit(THREAD_LIMIT)))
        notifications = mailbox.notifications_for(s, m.id) if entry.is_sender else []
        return render(request, "message.html", title=m.subject or "(no subject)", m=m, entry=entry,
                      bcc=m.bcc_list if entry.is_sender else [], attachments=list(m.attachments), thread=thread,
                      notifications=notifications)


@router.get("/m/{message_id}/body")
def body_frame(message_id: str, request: Request):
    with services(request).db.session() as s:
        user, away = _signed_in_or_login(request, s, message_id)
        if away:
            return away
        m = mailbox.entry_for(s, user, message_id).message
        framed = request.headers.get("sec-fetch-dest") == "iframe"
        document = sanitize.body_document(m.body_html or "", one_line(m.subject), framed)
    response = HTMLResponse(document)
    response.headers["Content-Security-Policy"] = sanitize.FRAME_CSP
    response.headers["Vary"] = "Sec-Fetch-Dest"
    return response


@router.get("/m/{message_id}/a/{attachment_id}")
async def attachment(message_id: str, attachment_id: str, request: Request):
    def who():
        with services(request).db.session() as s:
            return _signed_in_or_login(request, s, message_id)

    user, away = await anyio.to_thread.run_sync(who)
    if away:
        return away
    response = await attachment_response(services(request), user.id, message_id, attachment_id, request)
    response.headers["Content-Security-Policy"] = "default-src 'none'; sandbox"
    return response
