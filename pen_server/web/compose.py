"""Replying (reply, reply all) and, for members, a new message: a form with attachments,
sent through the same code as POST /messages (sending.send), with an idempotency key in the
form so a double submit sends once. A refused message comes back as the form, filled in,
with one sentence; files already uploaded stay attached."""

from __future__ import annotations

import re
from collections.abc import Sequence
from email.utils import getaddresses

import anyio
from fastapi import APIRouter, Query, Request
from pydantic import ValidationError
from sqlalchemy import select

from pen_rules import replies
from pen_server import audit, mailbox, sending
from pen_server.errors import ApiError
from pen_server.models import Attachment, IdempotencyKey, new_id
from pen_server.schemas import SendIn
from pen_server.text import html_text
from pen_server.web.core import MemberDep, MemberPageDep, WebRoute, check_post, redirect, render, services
from pen_server.web.uploads import StreamedForm, read_multipart

router = APIRouter(route_class=WebRoute, include_in_schema=False)
_SPLIT = re.compile(r"[;\n]")
NO_KEY = ("This form came without the hidden key that keeps a message from going out twice (an old or changed "
          "page), so nothing was sent. Check the message below and press Send again.")


def _addresses(raw: str) -> list[dict]:
    pairs = getaddresses([_SPLIT.sub(",", raw)])
    return [{"email": email.strip()} for _name, email in pairs if email.strip()]


def _reply_fields(user, m, everyone: bool) -> dict:
    """The reply form's fields for message `m`: recipients and subject by the rule that the
    terminal client follows too (pen_rules.replies; docs/pen-api.md, "Replying and forwarding")."""
    to, cc = replies.reply_recipients(m.from_email, [a["email"] for a in m.to_list], [a["email"] for a in m.cc_list],
                                      [user.email], reply_all=everyone, email_of=str)
    return {"to": ", ".join(to), "cc": ", ".join(cc), "subject": replies.reply_subject(m.subject), "body": ""}


ANSWERED_OPEN_LINES = 15  # the message answered shows open up to this; a longer one is folded


def _answered(m) -> dict:
    """The message a reply answers, as the form shows it: who, when, and its text."""
    text = m.body_text or (html_text(m.body_html) if m.body_html else "")
    return {"from_email": m.from_email, "from_name": m.from_name, "sent_at": m.sent_at, "subject": m.subject,
            "text": text, "open": text.count("\n") < ANSWERED_OPEN_LINES}


def _form_page(request: Request, *, action: str, fields: dict, key: str, status: int = 200,
               error: str | None = None, kept: Sequence[dict] = (), replying_to=None, answered=None):
    if replying_to and answered is None:
        with services(request).db.session() as s:
            user = getattr(request.state, "user", None)
            answered = _answered(mailbox.entry_for(s, user, replying_to).message) if user else None
    return render(request, "compose.html", status=status, title="Reply" if replying_to else "New message",
                  action=action, fields=fields, key=key, error=error, kept=list(kept), replying_to=replying_to,
                  answered=answered, limit=services(request).settings.max_upload_bytes)


@router.get("/m/{message_id}/reply")
def reply_form(message_id: str, request: Request, me: MemberPageDep, all: int = Query(0, ge=0, le=1)):
    m = mailbox.readable_entry(me.session, me.user, message_id).message
    return _form_page(request, action=f"/m/{message_id}/reply", fields=_reply_fields(me.user, m, bool(all)),
                      key=new_id(), replying_to=message_id, answered=_answered(m))


@router.get("/new")
def new_form(request: Request, _: MemberPageDep):
    return _form_page(request, action="/new", fields={"to": "", "cc": "", "subject": "", "body": ""}, key=new_id())


@router.post("/m/{message_id}/reply")
async def reply(message_id: str, request: Request, user: MemberDep):
    def readable():
        with services(request).db.session() as s:
            mailbox.readable_entry(s, user, message_id)

    await anyio.to_thread.run_sync(readable)  # 404 or 410 before a byte of the form is read
    return await _send(request, user, message_id)


@router.post("/new")
async def new(request: Request, user: MemberDep):
    return await _send(request, user, None)


async def _send(request: Request, user, in_reply_to: str | None):
    """The form streamed in (read_multipart) and sent: the signed-in member checked by the
    route's MemberDep in a session of its own, so none is held while files arrive."""
    pen = services(request)
    action = f"/m/{in_reply_to}/reply" if in_reply_to else "/new"

    def checks(form: StreamedForm) -> None:
        check_post(request, {"csrf": form.first("csrf")})

    form = await read_multipart(request, pen, user.id, checks)
    if not form.checked:
        checks(form)
    key = form.first("key")[:255]
    try:
        sending.valid_idempotency_key(key)
    except ApiError:
        key = ""  # nothing is sent without one; the form comes back with a new one
    fields = {name: form.first(name) for name in ("to", "cc", "subject", "body")}
    upload_ids = [i for i in form.fields.get("upload", []) if i][:50] + [u["id"] for u in form.uploads]

    def send():
        with pen.db.session() as s:
            done = s.get(IdempotencyKey, (user.id, key)) if key else None
            if done is not None:  # sent already (a double submit): show what was sent
                return done.message_id, None, []
            kept = [mailbox.attachment_out(a) for a in s.scalars(select(Attachment).where(
                Attachment.id.in_(upload_ids), Attachment.owner_id == user.id, Attachment.message_id.is_(None)))]
            if not key:
                return None, NO_KEY, kept
            if form.too_large:
                return None, (f"{form.too_large[0]} is larger than this PEN takes (at most "
                              f"{pen.settings.max_upload_bytes} bytes a file); choose a smaller file."), kept
            try:
                body = SendIn(to=_addresses(fields["to"]), cc=_addresses(fields["cc"]), subject=fields["subject"],
                              body_text=fields["body"], in_reply_to=in_reply_to, attachments=[a["id"] for a in kept])
            except ValidationError:
                return None, "The subject is too long or there are too many recipients; shorten them.", kept
            try:
                entry, events = sending.send(s, pen.settings, pen.secret, s.merge(user), body, key,
                                             audit.who_of(request, pen.settings, user, web=True))
            except ApiError as exc:
                if exc.status >= 500:
                    raise
                s.rollback()
                if exc.code in ("conflict", "idempotency_key_reused"):  # a double submit raced this one
                    done = s.get(IdempotencyKey, (user.id, key))
                    if done is not None:
                        return done.message_id, None, []
                return None, exc.message, kept
            s.commit()
        pen.hub.publish_many(events)
        if events:
            pen.wake_worker()
        return entry.message_id, None, []

    sent_id, error, kept = await anyio.to_thread.run_sync(send)
    if sent_id:
        return redirect(f"/m/{sent_id}?done=sent")
    return _form_page(request, action=action, fields=fields, key=key or new_id(), status=422, error=error,
                      kept=kept, replying_to=in_reply_to)
