"""Sign-in, token refresh, sign-out, the caller's account, and guest invitations."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from pen_server import accounts, effective_settings, signin
from pen_server.api.deps import CallerDep, ServicesDep, SessionDep
from pen_server.models import Message, User
from pen_server.schemas import InvitationOut, LoginIn, PenInfoOut, RefreshIn, RegisterIn, TokenOut, UserOut

router = APIRouter()


@router.post("/auth/login", response_model=TokenOut, tags=["auth"])
async def login(body: LoginIn, request: Request, session: SessionDep, pen: ServicesDep):
    # Async, with the work in threads of its own: password hashes never take the threads
    # that the other routes run in.
    ip = signin.client_address(request, pen.settings)
    return await signin.off_routes_pool(pen, _login, session, pen, body, ip)


def _login(session, pen, body: LoginIn, ip: str | None) -> dict:
    user = signin.sign_in(session, pen, body.email, body.password, ip)
    return accounts.issue_tokens(session, pen.settings, user)


@router.post("/auth/refresh", response_model=TokenOut, tags=["auth"])
def refresh(body: RefreshIn, session: SessionDep, pen: ServicesDep):
    return accounts.refresh(session, pen.settings, body.refresh_token)


@router.post("/auth/logout", status_code=204, tags=["auth"])
def logout(who: CallerDep, session: SessionDep, pen: ServicesDep):
    accounts.revoke_family(session, who.token.family_id)
    session.commit()
    pen.hub.end_sign_in(who.user.id, who.token.family_id)
    return Response(status_code=204)


@router.get("/me", response_model=UserOut, tags=["auth"])
def me(who: CallerDep):
    return accounts.user_out(who.user)


@router.get("/pen", response_model=PenInfoOut, tags=["auth"])
def pen_info(who: CallerDep, session: SessionDep, pen: ServicesDep):
    """What a client needs to know before it uploads: the PEN's name and its size limit."""
    return {
        "name": effective_settings.effective(session, pen.settings).name,
        "max_upload_bytes": pen.settings.max_upload_bytes,
    }


@router.get("/invitations/{token}", response_model=InvitationOut, tags=["auth"])
def invitation(token: str, session: SessionDep, pen: ServicesDep):
    n = signin.invitation(session, token)
    message = session.get(Message, n.message_id)
    user = session.get(User, n.recipient_user_id) if n.recipient_user_id else None
    return {
        "email": n.recipient_email,
        "pen_name": effective_settings.effective(session, pen.settings).name,
        "sender": {"email": message.from_email, "name": message.from_name},
        "subject": signin.invitation_subject(session, message),
        "message_id": message.id,
        "registered": bool(user and user.registered),
    }


@router.post("/invitations/{token}/register", response_model=TokenOut, status_code=201, tags=["auth"])
async def register(token: str, body: RegisterIn, session: SessionDep, pen: ServicesDep):
    return await signin.off_routes_pool(pen, _register, session, pen, token, body)


def _register(session, pen, token: str, body: RegisterIn) -> dict:
    user = signin.register_invitation(session, pen, token, body.display_name, body.password)
    return accounts.issue_tokens(session, pen.settings, user)
