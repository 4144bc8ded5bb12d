"""Sign-in, token refresh, sign-out, the caller's account, and guest invitations."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response
from sqlalchemy import select

from pen_server import accounts, penconf, security
from pen_server.api.deps import Caller, caller, db_session, services
from pen_server.errors import ApiError, validation
from pen_server.models import Message, Notification, User, utcnow
from pen_server.schemas import InvitationOut, LoginIn, PenInfoOut, RefreshIn, RegisterIn, TokenOut, UserOut
from pen_server.text import has_control

router = APIRouter()
BAD_LOGIN = "The e-mail address or the password is wrong."


@router.post("/auth/login", response_model=TokenOut, tags=["auth"])
def login(body: LoginIn, session=Depends(db_session, scope="function"), pen=Depends(services)):
    key = body.email.strip().lower()
    wait = pen.limiter.retry_after(key)
    if wait:  # answered before any hashing, so a flood costs us nothing
        raise ApiError(429, "rate_limited", f"Too many failed sign-ins for this account; wait {wait} seconds.",
                       headers={"Retry-After": str(wait)})
    user = session.scalar(select(User).where(User.email == key))
    if not security.verify_password(user.password_hash if user else None, body.password):
        pen.limiter.failed(key)
        raise ApiError(401, "invalid_credentials", BAD_LOGIN)
    pen.limiter.succeeded(key)
    return accounts.issue_tokens(session, pen.settings, user)


@router.post("/auth/refresh", response_model=TokenOut, tags=["auth"])
def refresh(body: RefreshIn, session=Depends(db_session, scope="function"), pen=Depends(services)):
    return accounts.refresh(session, pen.settings, body.refresh_token)


@router.post("/auth/logout", status_code=204, tags=["auth"])
def logout(who: Caller = Depends(caller, scope="function"), session=Depends(db_session, scope="function"),
           pen=Depends(services)):
    accounts.revoke_family(session, who.token.family_id)
    session.commit()
    pen.hub.end_sign_in(who.user.id, who.token.family_id)
    return Response(status_code=204)


@router.get("/me", response_model=UserOut, tags=["auth"])
def me(who: Caller = Depends(caller, scope="function")):
    return accounts.user_out(who.user)


@router.get("/pen", response_model=PenInfoOut, tags=["auth"])
def pen_info(who: Caller = Depends(caller, scope="function"), session=Depends(db_session, scope="function"),
             pen=Depends(services)):
    """What a client needs to know before it uploads: the PEN's name and its size limit."""
    return {"name": penconf.effective(session, pen.settings).name, "max_upload_bytes": pen.settings.max_upload_bytes}


def _invitation(session, token: str) -> Notification:
    if len(token) > 200:
        raise ApiError(404, "not_found", "That invitation does not exist or has expired.")
    n = session.scalar(select(Notification).where(Notification.token_hash == security.token_hash(token)))
    if n is None or n.token_expires_at <= utcnow():
        raise ApiError(404, "not_found", "That invitation does not exist or has expired.")
    return n


@router.get("/invitations/{token}", response_model=InvitationOut, tags=["auth"])
def invitation(token: str, session=Depends(db_session, scope="function"), pen=Depends(services)):
    n = _invitation(session, token)
    message = session.get(Message, n.message_id)
    user = session.get(User, n.recipient_user_id) if n.recipient_user_id else None
    return {"email": n.recipient_email, "pen_name": penconf.effective(session, pen.settings).name,
            "sender": {"email": message.from_email, "name": message.from_name}, "subject": message.subject,
            "message_id": message.id, "registered": bool(user and user.registered)}


@router.post("/invitations/{token}/register", response_model=TokenOut, status_code=201, tags=["auth"])
def register(token: str, body: RegisterIn, session=Depends(db_session, scope="function"), pen=Depends(services)):
    n = _invitation(session, token)
    name = body.display_name.strip()
    if not name or has_control(name):
        raise validation({"display_name": "a name without line breaks or control characters"},
                         "The display name cannot be empty or contain line breaks or control characters.")
    accounts.check_password_rules(body.password)
    user = session.get(User, n.recipient_user_id) if n.recipient_user_id else None
    if user is None:
        user = accounts.find_user(session, n.recipient_email)
    if user is not None and user.registered:
        raise ApiError(409, "account_exists", "That e-mail address has an account already; sign in instead.")
    if user is None:
        user = accounts.create_user(session, n.recipient_email, name, None, role="guest")
    user.display_name = name
    user.password_hash = security.hash_password(body.password)
    session.flush()
    return accounts.issue_tokens(session, pen.settings, user)

