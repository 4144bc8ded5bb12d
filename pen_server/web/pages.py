"""The link of the notification e-mail, sign-up, sign-in, sign-out, the inbox and fresh
links. A GET here never uses up or changes anything that matters (a mail scanner that opens
the link leaves it working); every change is a POST from our own form."""

from __future__ import annotations

import re
from datetime import timedelta

import anyio
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from sqlalchemy import select

from pen_server import after_send, effective_settings, mailbox
from pen_server.errors import ApiError
from pen_server.models import MailboxEntry, Message, Notification, User, utcnow
from pen_server.schemas import rfc3339
from pen_server.security import token_hash
from pen_server.sending import notification_row
from pen_server.web import auth, reading, sessions
from pen_server.web.core import (
    HERE,
    MemberPageDep,
    PageDep,
    WebRoute,
    check_post,
    member,
    read_form,
    redirect,
    render,
    services,
)
from pen_server.web.limits import WindowLimit
from pen_server.web.sessions import begin

router = APIRouter(route_class=WebRoute, include_in_schema=False)
PAGE_SIZE = 40  # rows of the inbox: a page stays well under 30 KB
_NEXT = re.compile(r"^/(m/[A-Za-z0-9_-]{1,64})?$")
_STYLESHEET = (HERE / "static" / "pen.css").read_bytes()
# Fresh links: at most 3 an hour to one address and 20 an hour from one client address.
_fresh_by_address = WindowLimit(3, 3600.0)
_fresh_by_client = WindowLimit(20, 3600.0)
FRESH_SENT = ("If this link came from this PEN, a new link is on its way to the address it was sent to; "
              "it can take a few minutes to arrive.")


def signed_in(request: Request, response: Response, user: User, session) -> Response:
    """Replace any earlier sign-in of this browser by a new one for `user`."""
    sessions.end(request, session)
    sessions.set_cookie(response, sessions.start(session, user))
    return response


@router.get("/static/pen.css")
def stylesheet():
    return Response(_STYLESHEET, media_type="text/css", headers={"Cache-Control": "public, max-age=86400"})


@router.get("/m/{message_id}")
def message_or_link(message_id: str, request: Request, page: PageDep, t: str | None = Query(None, max_length=200)):
    if t is None:
        return reading.message_page(request, message_id, member(request, page))
    s, user = page.session, page.user
    n = auth.invitation(s, t)
    if n is None or n.message_id != message_id:
        return render(request, "expired.html", status=410, title="This link has expired",
                      message_id=message_id, token=t)
    if user is not None and user.id == n.recipient_user_id:
        return redirect(f"/m/{message_id}")
    message = s.get(Message, message_id)
    copy = s.scalar(select(MailboxEntry).where(MailboxEntry.message_id == message_id,
                                               MailboxEntry.user_id == n.recipient_user_id))
    shut = after_send.closed(copy) if copy is not None else None
    # Withdrawn or past its end date: the page says so; making the account still works.
    return render(request, "landing.html", status=410 if shut else 200,
                  title=after_send.Closed(*shut).title if shut else "A secure message for you",
                  message=message, subject=auth.invitation_subject(s, message), token=t,
                  message_id=message_id, closed=shut[1] if shut else None)


def _invitation_or_expired(s, message_id: str, token: str):
    n = auth.invitation(s, token)
    if n is None or n.message_id != message_id:
        raise ApiError(410, "expired", "This link has expired; open it again from the e-mail to ask for a fresh one.")
    return n


def _account_page(request: Request, s, n, status: int = 200, error: str | None = None, name: str | None = None):
    """Sign-in for an address that has an account, else sign-up."""
    user = s.get(User, n.recipient_user_id) if n.recipient_user_id else None
    if user is not None and user.registered:
        return render(request, "signin.html", status=status, title="Sign in to read it", email=n.recipient_email,
                      message_id=n.message_id, token=request.state.token, error=error)
    return render(request, "signup.html", status=status, title="Make your account to read it",
                  email=n.recipient_email, message_id=n.message_id, token=request.state.token, error=error,
                  name=name if name is not None else (n.recipient_name or ""))


async def _post(request: Request, step, *, hashing: bool = False):
    """A POST of these pages: its form read (bounded), then, in a thread, checked (CSRF,
    origin) and `step(session, form)` run. Steps that hash a password run in the sign-in
    code's own threads, so a flood of them never takes the threads other pages need."""
    form = await read_form(request)
    request.state.token = form.get("t", "")[:200]
    pen = services(request)

    def run():
        with pen.db.session() as s:
            begin(request, s)
            check_post(request, form)
            return step(s, form)

    if hashing:
        return await auth.off_routes_pool(pen, run)
    return await anyio.to_thread.run_sync(run)


@router.post("/m/{message_id}/open")
async def open_link(message_id: str, request: Request):
    def step(s, form):
        n = _invitation_or_expired(s, message_id, request.state.token)
        user = getattr(request.state, "user", None)
        if user is not None and user.id == n.recipient_user_id:
            return redirect(f"/m/{message_id}")
        return _account_page(request, s, n)

    return await _post(request, step)


@router.post("/m/{message_id}/signup")
async def sign_up(message_id: str, request: Request):
    def step(s, form):
        n = _invitation_or_expired(s, message_id, request.state.token)
        try:
            user = auth.register_invitation(s, services(request), request.state.token, form.get("name", ""),
                                            form.get("password", ""))
        except ApiError as exc:
            if exc.status not in (409, 422):
                raise
            s.rollback()
            return _account_page(request, s, n, status=exc.status, error=exc.message, name=form.get("name", ""))
        return signed_in(request, redirect(f"/m/{message_id}"), user, s)

    return await _post(request, step, hashing=True)


@router.post("/m/{message_id}/signin")
async def sign_in_from_link(message_id: str, request: Request):
    pen = services(request)

    def step(s, form):
        n = _invitation_or_expired(s, message_id, request.state.token)
        try:
            user = auth.sign_in(s, pen, n.recipient_email, form.get("password", ""),
                                auth.client_address(request, pen.settings))
        except ApiError as exc:
            if exc.status not in (401, 429):
                raise
            return _account_page(request, s, n, status=exc.status, error=exc.message)
        return signed_in(request, redirect(f"/m/{message_id}"), user, s)

    return await _post(request, step, hashing=True)


@router.get("/login")
def login_form(request: Request, _: PageDep, next: str = Query("/", max_length=100)):
    return render(request, "login.html", title="Sign in", next=next if _NEXT.match(next) else "/", email="")


@router.post("/login")
async def login(request: Request):
    pen = services(request)

    def step(s, form):
        target = form.get("next", "/")
        target = target if _NEXT.match(target) else "/"
        email = form.get("email", "")[:320]
        try:
            user = auth.sign_in(s, pen, email, form.get("password", ""), auth.client_address(request, pen.settings))
        except ApiError as exc:
            if exc.status not in (401, 429):
                raise
            return render(request, "login.html", status=exc.status, title="Sign in", next=target, email=email,
                          error=exc.message)
        return signed_in(request, redirect(target), user, s)

    return await _post(request, step, hashing=True)


@router.post("/logout")
async def logout(request: Request):
    def step(s, form):
        sessions.end(request, s)
        response = redirect("/login?done=signed-out")
        sessions.clear_cookie(response)
        return response

    return await _post(request, step)


@router.get("/")
def inbox(request: Request, me: MemberPageDep,
          folder: str = Query("inbox", pattern="^(inbox|sent|archive|trash)$"),
          cursor: str | None = Query(None, max_length=512)):
    page = mailbox.page(me.session, me.user, folder, PAGE_SIZE, cursor or None, None, None)
    return render(request, "inbox.html", title=folder.capitalize(), folder=folder, page=page,
                  folders=mailbox.FOLDERS, cursor=cursor, now=rfc3339(utcnow()))


@router.post("/m/{message_id}/renew")
async def fresh_link(message_id: str, request: Request):
    """E-mail a fresh link for an expired one. The answer is the same whatever the token was,
    so it never tells whether an address has an account or a message exists."""
    def step(s, form):
        _queue_fresh_link(request, s, message_id, request.state.token)
        return render(request, "fresh.html", title="A new link is on its way", message=FRESH_SENT)

    response = await _post(request, step)
    services(request).wake_worker()
    return response


def _queue_fresh_link(request: Request, s, message_id: str, token: str) -> None:
    pen = services(request)
    if not _fresh_by_client.take(auth.client_address(request, pen.settings) or "?"):
        return
    old = s.scalar(select(Notification).where(Notification.token_hash == token_hash(token))) if token else None
    if old is None or old.message_id != message_id or not _fresh_by_address.take(old.recipient_email):
        return
    if s.scalar(select(MailboxEntry.id).where(MailboxEntry.message_id == message_id,
                                              MailboxEntry.user_id == old.recipient_user_id,
                                              MailboxEntry.revoked_at.is_not(None))):
        return  # withdrawn from that recipient: no new link (the answer is the same)
    now = utcnow()
    host = effective_settings.effective(s, pen.settings).host
    s.add(notification_row(pen.secret, host, now + timedelta(days=pen.settings.invitation_days), message_id,
                           old.position, {"email": old.recipient_email, "name": old.recipient_name},
                           old.recipient_user_id, old.kind, now))
