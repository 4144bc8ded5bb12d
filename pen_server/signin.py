"""Sign-in and guest sign-up, with their limits: one code for the API (api/auth.py) and the
web pages, so both answer alike and share the same counters.

Both functions may block on the password-hashing pool (security.HashPool): call them from a
worker thread, best through `off_routes_pool`, which keeps them out of the thread pool the
other routes run in. Before hashing, both end the session's transaction (a commit) so that
no database connection is held while a hash runs."""

from __future__ import annotations

import functools
import ipaddress

import anyio
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from pen_server import accounts, mailer, metrics, security
from pen_server.errors import ApiError, validation
from pen_server.models import Notification, Package, User, utcnow
from pen_server.ratelimit import RateLimited
from pen_server.text import has_control

BAD_LOGIN = "The e-mail address or the password is wrong."
MAX_PASSWORD = 1024
_GONE = "That invitation does not exist or has expired."
_EXISTS = "That e-mail address has an account already; sign in instead."


def _busy() -> ApiError:
    return ApiError(503, "unavailable", "The server is busy with other sign-ins; try again in a few seconds.",
                    headers={"Retry-After": "2"})


def _hash(pen, fn, *args):
    try:
        return pen.hashing.run(fn, *args)
    except security.HashPoolBusy:
        raise _busy() from None


def sign_in(session, pen, email: str, password: str, client_ip: str | None) -> User:
    """The account for this e-mail address and password, or ApiError: 401
    invalid_credentials (the same for an unknown address), 429 rate_limited with
    Retry-After (answered before any hashing), 503 unavailable when hashing is full."""
    key = email.strip().lower()[:320]
    try:
        attempt = pen.limiter.reserve(key, client_ip)
    except RateLimited as limited:
        raise ApiError(429, "rate_limited", limited.why, headers={"Retry-After": str(limited.wait)}) from None
    try:
        user = session.scalar(select(User).where(User.email == key))
        stored = user.password_hash if user else None
        session.commit()
        if len(password) > MAX_PASSWORD:  # no account has one so long: wrong, unhashed
            ok, upgraded = False, None
        else:
            ok, upgraded = _hash(pen, security.verify_and_upgrade, stored, password)
    except BaseException:
        attempt.cancelled()
        raise
    if not ok:
        attempt.failed()
        metrics.signin_failed()
        raise ApiError(401, "invalid_credentials", BAD_LOGIN)
    attempt.succeeded()
    if upgraded:  # parameters changed since this hash was made; unless the password changed meanwhile
        session.execute(update(User).where(User.id == user.id, User.password_hash == stored)
                        .values(password_hash=upgraded).execution_options(synchronize_session=False))
        session.refresh(user)
    return user


def invitation(session, token: str) -> Notification:
    """The notification whose link holds this token, or 404."""
    if len(token) > 200:
        raise ApiError(404, "not_found", _GONE)
    n = session.scalar(select(Notification).where(Notification.token_hash == security.token_hash(token)))
    if n is None or n.token_expires_at <= utcnow():
        raise ApiError(404, "not_found", _GONE)
    return n


def invitation_subject(session, message) -> str:
    """The subject that the link of a notification shows before anyone signs in: what the
    notification itself said (mailer.outside_subject, by the sender's package's policy)."""
    sender = session.get(User, message.sender_id)
    package = session.get(Package, sender.package) if sender is not None and sender.package else None
    return mailer.outside_subject(message, mailer.sender_terms(sender, package)[1])


def register_invitation(session, pen, token: str, display_name: str, password: str) -> User:
    """The guest account made with this invitation, or ApiError: 404 for an unknown or
    expired token, 409 account_exists when the address has an account (exactly one of
    several sign-ups at once wins), 422 for a bad name or password, 503 when hashing is full."""
    n = invitation(session, token)
    name = display_name.strip()
    if not name or len(name) > 200 or has_control(name):
        raise validation({"display_name": "a name of 1 to 200 characters without line breaks or control characters"},
                         "The display name cannot be empty, longer than 200 characters, or contain line breaks "
                         "or control characters.")
    accounts.check_password_rules(password)
    if len(password) > MAX_PASSWORD:
        raise validation({"password": f"at most {MAX_PASSWORD} characters"},
                         f"The password must have at most {MAX_PASSWORD} characters.")
    user = session.get(User, n.recipient_user_id) if n.recipient_user_id else None
    if user is None:
        user = accounts.find_user(session, n.recipient_email)
    if user is not None and user.registered:
        raise ApiError(409, "account_exists", _EXISTS)
    email = n.recipient_email
    session.commit()
    new_hash = _hash(pen, security.hash_password, password)
    if user is None:
        try:
            user = accounts.create_user(session, email, name, None, role="guest")
            user.password_hash = new_hash
            session.flush()
        except IntegrityError:  # another sign-up made it first
            session.rollback()
            raise ApiError(409, "account_exists", _EXISTS) from None
        return user
    # One conditional UPDATE: of several sign-ups at once exactly one sets the password.
    claimed = session.execute(
        update(User).where(User.id == user.id, User.password_hash.is_(None))
        .values(password_hash=new_hash, display_name=name)
        .execution_options(synchronize_session=False)).rowcount
    if claimed != 1:
        raise ApiError(409, "account_exists", _EXISTS)
    session.refresh(user)
    return user


@functools.lru_cache(maxsize=16)
def _networks(addresses: tuple[str, ...]):
    return tuple(ipaddress.ip_network(a, strict=False) for a in addresses)


def _ip(text: str):
    text = text.strip()
    if text.startswith("[") and "]" in text:  # [v6]:port
        text = text[1:text.index("]")]
    elif text.count(":") == 1:  # v4:port
        text = text.split(":")[0]
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    return (ip.version == 6 and ip.ipv4_mapped) or ip


def client_address(request, settings) -> str | None:
    """The client's IP: the socket's peer, or, when that peer is one of
    `trusted_proxy_addresses`, the last address in the `trusted_proxy` header that is not
    one of those proxies (the one the proxy itself saw; addresses further left are the
    client's own word)."""
    peer = _ip(request.client.host) if request.client else None
    if peer is None:
        return None
    header = settings.trusted_proxy
    trusted = _networks(tuple(settings.trusted_proxy_addresses))
    if not header or not any(peer in net for net in trusted):
        return str(peer)
    hops = [h for value in request.headers.getlist(header) for h in value.split(",") if h.strip()]
    found = peer
    for hop in reversed(hops):
        ip = _ip(hop)
        if ip is None:
            break
        found = ip
        if not any(ip in net for net in trusted):
            break
    return str(found)


def _threads(pen) -> anyio.CapacityLimiter:
    if getattr(pen, "signin_threads", None) is None:
        pen.signin_threads = anyio.CapacityLimiter(pen.hashing.workers + pen.hashing.queue + 2)
    return pen.signin_threads


async def off_routes_pool(pen, fn, *args):
    """Runs sign_in or register_invitation (or a function around them) in threads of their
    own, not in the pool that every other route's threads come from."""
    return await anyio.to_thread.run_sync(fn, *args, limiter=_threads(pen))
