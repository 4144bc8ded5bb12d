"""Reading: one message with its thread, its body (HTML in a sandboxed frame of its own),
its attachments, streamed by the same code as the API's downloads, and, on the sender's own
copy, who was notified (each recipient's status and the mail server's answer)."""

from __future__ import annotations

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import select

from pen_server import after_send, audit, mailbox, sending
from pen_server.attachments import attachment_response
from pen_server.models import MailboxEntry, Message
from pen_server.web import sanitize
from pen_server.web.core import (
    FormDep,
    MemberDep,
    MemberPageDep,
    Page,
    WebRoute,
    check_post,
    one_line,
    redirect,
    render,
    services,
)

router = APIRouter(route_class=WebRoute, include_in_schema=False)
THREAD_LIMIT = 200


def message_page(request: Request, message_id: str, page: Page):
    """GET /m/{message_id} without a link's token (pages.message_or_link), for a member."""
    pen = services(request)
    s, user = page.session, page.user
    entry = mailbox.readable_entry(s, user, message_id)
    if entry.unread:
        entry.unread = False
    m = entry.message
    thread = [(t, after_send.closed(copy)) for t, copy in s.execute(
        select(Message, MailboxEntry).join(MailboxEntry, MailboxEntry.message_id == Message.id)
        .where(MailboxEntry.user_id == user.id, Message.thread_id == m.thread_id, Message.id != m.id)
        .order_by(Message.sent_at, Message.id).limit(THREAD_LIMIT)).tuples()]
    recipients = mailbox.notification_items(s, m.id) if entry.is_sender else []
    response = render(request, "message.html", title=m.subject or "(no subject)", m=m, entry=entry,
                      bcc=m.bcc_list if entry.is_sender else [], attachments=list(m.attachments), thread=thread,
                      recipients=recipients, withdrawable=list({  # a fresh link is a second row: once each
                          r["recipient"]["email"]: r for r in recipients if r["revoked_at"] is None}.values()),
                      notice=request.query_params.get("done", "")[:20])
    event = after_send.record_read(s, entry, audit.who_of(request, pen.settings, user, web=True))
    s.commit()  # before the event goes out, so whoever it reaches finds the read stored
    if event is not None:
        pen.hub.publish(*event)
    return response


@router.get("/m/{message_id}/body")
def body_frame(message_id: str, request: Request, page: MemberPageDep):
    m = mailbox.readable_entry(page.session, page.user, message_id).message
    framed = request.headers.get("sec-fetch-dest") == "iframe"
    document = sanitize.body_document(m.body_html or "", one_line(m.subject), framed)
    response = HTMLResponse(document)
    response.headers["Content-Security-Policy"] = sanitize.FRAME_CSP
    response.headers["Vary"] = "Sec-Fetch-Dest"
    return response


@router.get("/m/{message_id}/a/{attachment_id}")
async def attachment(message_id: str, attachment_id: str, request: Request, user: MemberDep):
    response = await attachment_response(services(request), user, message_id, attachment_id, request, web=True)
    response.headers["Content-Security-Policy"] = "default-src 'none'; sandbox"
    return response


@router.post("/m/{message_id}/revoke")
async def revoke(message_id: str, request: Request, form: FormDep, page: MemberPageDep):
    """The sender's withdraw form: the recipients ticked, or everyone (`everyone=1`). The
    form is read before the page's session opens (FormDep comes first)."""
    pen = services(request)

    def step():
        s, user = page.session, page.user
        check_post(request, form)
        message = sending.own_message(s, user, message_id)
        chosen = None if form.get("everyone") == "1" else [
            v for k, v in form.items() if k.startswith("r") and k[1:].isdigit()]
        if chosen == []:
            return redirect(f"/m/{message_id}?done=none")
        after_send.revoke(s, message, chosen, audit.who_of(request, pen.settings, user, web=True))
        return redirect(f"/m/{message_id}?done=withdrawn")

    return await anyio.to_thread.run_sync(step)
