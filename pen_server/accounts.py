"""Accounts and sessions: users, sign-in, token rotation with reuse detection, guests."""

from __future__ import annotations

from datetime import timedelta

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from pen_server import security
from pen_server.addresses import index_member
from pen_server.errors import ApiError
from pen_server.models import AuthToken, User, WebSession, new_id, utcnow
from pen_server.settings import Settings

MIN_PASSWORD = 8


def normalize_email(raw: str) -> str:
    """The canonical form of an address, or ValueError with a sentence."""
    try:
        result = validate_email(raw.strip(), check_deliverability=False, allow_smtputf8=False,
                                test_environment=True)
    except EmailNotValidError as exc:
        raise ValueError(f"{raw!r} is not a valid e-mail address: {exc}") from None
    return result.normalized.lower()


def find_user(session: Session, email: str) -> User | None:
    return session.scalar(select(User).where(User.email == email.lower()))


def user_out(user: User) -> dict:
    return {"id": user.id, "email": user.email, "display_name": user.display_name,
            "role": user.role, "package": user.package}


def issue_tokens(session: Session, settings: Settings, user: User, family_id: str | None = None) -> dict:
    """A new access token and refresh token in the sign-in's family."""
    family_id = family_id or new_id()
    access, refresh = security.new_token(), security.new_token()
    now = utcnow()
    session.add(AuthToken(token_hash=security.token_hash(access), kind="access", family_id=family_id,
                          user_id=user.id, expires_at=now + timedelta(seconds=settings.access_token_seconds)))
    session.add(AuthToken(token_hash=security.token_hash(refresh), kind="refresh", family_id=family_id,
                          user_id=user.id, expires_at=now + timedelta(days=settings.refresh_token_days)))
    return {"access_token": access, "refresh_token": refresh, "token_type": "bearer",
            "expires_in": settings.access_token_seconds, "user": user_out(user)}


def lock_family(session: Session, family_id: str) -> None:
    """Changes to one sign-in's tokens go one at a time: on PostgreSQL a lock for the family
    until the transaction ends (SQLite has one writer anyway). Several copies of a refresh
    token used at one moment claim and revoke the same rows; each locking them in the order
    of its own scan deadlocked them, and the one PostgreSQL rolled back answered 500."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(select(func.pg_advisory_xact_lock(func.hashtextextended(family_id, 0))))


def revoke_family(session: Session, family_id: str) -> None:
    lock_family(session, family_id)
    session.execute(update(AuthToken).where(AuthToken.family_id == family_id).values(revoked=True))


def _reused(session: Session, row: AuthToken) -> None:
    """A dead refresh token came back: someone holds a copy. End the whole sign-in."""
    revoke_family(session, row.family_id)
    session.commit()
    raise ApiError(401, "unauthenticated", "That sign-in was ended for safety; sign in again.")


def refresh(session: Session, settings: Settings, token: str) -> dict:
    row = session.get(AuthToken, security.token_hash(token))
    user = session.get(User, row.user_id) if row is not None else None
    # A disabled account's tokens were revoked with it; refused as unknown, not as a copy's reuse.
    if row is None or row.kind != "refresh" or (user is not None and user.disabled):
        raise ApiError(401, "unauthenticated", "That sign-in is not valid any more; sign in again.")
    if row.revoked or row.used_at is not None:
        _reused(session, row)
    if row.expires_at <= utcnow():
        raise ApiError(401, "token_expired", "Your sign-in has expired; sign in again.")
    # Claimed in one conditional UPDATE, not read-then-write: of several refreshes with one
    # token at the same moment exactly one gets it, and the others are a copy's use.
    lock_family(session, row.family_id)
    claimed = session.execute(
        update(AuthToken)
        .where(AuthToken.token_hash == row.token_hash, AuthToken.used_at.is_(None), AuthToken.revoked.is_(False))
        .values(used_at=utcnow())
        .execution_options(synchronize_session=False)).rowcount  # type: ignore[attr-defined]
    if claimed != 1:
        _reused(session, row)
    if user is None:
        raise ApiError(401, "unauthenticated", "That account no longer exists.")
    return issue_tokens(session, settings, user, row.family_id)


def authenticate(session: Session, token: str) -> tuple[User, AuthToken]:
    # The token and its user in one query: one round trip to a database server, not two.
    found = session.execute(select(AuthToken, User).outerjoin(User, User.id == AuthToken.user_id)
                            .where(AuthToken.token_hash == security.token_hash(token))).first()
    row, user = found if found is not None else (None, None)
    if row is None or row.kind != "access" or row.revoked or (user is not None and user.disabled):
        raise ApiError(401, "unauthenticated", "You are not signed in; sign in first.",
                       headers={"WWW-Authenticate": "Bearer"})
    if row.expires_at <= utcnow():
        raise ApiError(401, "token_expired", "Your access token has expired; refresh it or sign in again.",
                       headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
    if user is None:
        raise ApiError(401, "unauthenticated", "That account no longer exists.")
    return user, row


def signed_in(session: Session, token: str) -> bool:
    try:
        authenticate(session, token)
    except ApiError:
        return False
    return True


def sign_in_stands(session: Session, token_hash: str) -> bool:
    """Whether the sign-in that gave out this access token still stands. Sign-out, a password
    change, a reused refresh token and disabling the account revoke the token with its family;
    the sign-in also ends when no token of its family is left unexpired. (A long-lived event
    stream is not cut just because its access token expires while the client refreshes.)"""
    row = session.execute(select(AuthToken.revoked, AuthToken.family_id, User.disabled_at)
                          .join(User, User.id == AuthToken.user_id).where(AuthToken.token_hash == token_hash)).first()
    if row is None or row.revoked or row.disabled_at is not None:
        return False
    live = select(AuthToken.token_hash).where(AuthToken.family_id == row.family_id, AuthToken.revoked.is_(False),
                                              AuthToken.expires_at > utcnow()).limit(1)
    return session.scalar(live) is not None


def check_password_rules(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise ApiError(422, "validation_failed", f"The password must have at least {MIN_PASSWORD} characters.",
                       fields={"password": f"at least {MIN_PASSWORD} characters"})


def create_user(session: Session, email: str, name: str, password: str | None, role: str = "member",
                package: str | None = None) -> User:
    email = normalize_email(email)
    user = User(id=new_id(), email=email, display_name=name, role=role, package=package,
                password_hash=security.hash_password(password) if password is not None else None)
    session.add(user)
    index_member(session, user)
    return user


def revoke_all(session: Session, user_id: str) -> None:
    """End every sign-in of the user: API tokens and the web pages' sessions."""
    session.execute(update(AuthToken).where(AuthToken.user_id == user_id).values(revoked=True))
    session.execute(delete(WebSession).where(WebSession.user_id == user_id))
