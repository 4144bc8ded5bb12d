"""Bounces: the envelope sender of each notification is an address of its own (VERP), and
what comes back to it is read, checked and recorded.

`bounces+ID-MAC@bounce-domain`: ID is the notification id in base32, MAC 80 bits of an HMAC
of it under the server secret (`security.derived_token`), also base32, so the address
survives a relay that lowercases it, and a bounce names its notification without any
trust in its content: an address whose MAC does not match is dropped with a log line.

A bounce is an RFC 3464 delivery status notification, or one of the common non-standard
forms that flufl.bounce knows. A permanent failure makes a `sent` notification `bounced`
with the diagnostic as its `last_error`; a delay is noted in `last_error` and the status
stays. Auto-replies (RFC 3834 `Auto-Submitted`, "out of office") are not bounces.
"""

from __future__ import annotations

import base64
import binascii
import email
import email.policy
import hmac
import logging
import re
from dataclasses import dataclass
from email.message import Message
from typing import Any

from sqlalchemy import select, update

from pen_server import security, suppression
from pen_server.mailer import clean_line
from pen_server.models import Message as PenMessage
from pen_server.models import Notification, utcnow

log = logging.getLogger("pen_server.bounces")

LOCAL = "bounces"
MAX_BYTES = 2 << 20  # a bounce quotes at most our small notification; more is not one of ours
DIAGNOSTIC_LIMIT = 1000
_VERP = re.compile(rf"{LOCAL}\+([a-z2-7]+)-([a-z2-7]{{16}})@([a-z0-9.-]+)", re.I)
_AUTO_SUBJECT = re.compile(r"^\s*(auto(matic)?[ -]?(reply|response|antwort)|auto:|out of (the )?office|"
                           r"abwesenheit|absence|vacation|away from)", re.I)
_SMTP_LINE = re.compile(r"\b[45]\d\d[ -]\S.*|\b[45]\.\d{1,3}\.\d{1,3}\b.*")


def _b32(data: bytes) -> str:
    return base64.b32encode(data).decode("ascii").rstrip("=").lower()


def _unb32(text: str) -> bytes:
    return base64.b32decode(text.upper() + "=" * (-len(text) % 8))


def _mac(secret: bytes, notification_id: str) -> str:
    token = security.derived_token(secret, "bounce", notification_id)
    return _b32(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))[:10])


def verp_address(secret: bytes, notification_id: str, domain: str) -> str | None:
    """The envelope sender for one notification, or None when the id is too long for an
    address's local part (64 characters; ids the PEN makes have 22)."""
    local = f"{LOCAL}+{_b32(notification_id.encode('utf-8'))}-{_mac(secret, notification_id)}"
    return f"{local}@{domain}" if len(local) <= 64 else None


def notification_of(secret: bytes, address: str) -> str | None:
    """The notification id that a VERP address names, or None when it is not one of ours
    (unknown form, or a MAC that does not match: forged or mangled)."""
    match = _VERP.fullmatch((address or "").strip().strip("<>"))
    if not match:
        return None
    try:
        ident = _unb32(match.group(1).lower()).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    if not hmac.compare_digest(_mac(secret, ident), match.group(2).lower()):
        return None
    return ident


# -- reading a bounce ------------------------------------------------------------------------

@dataclass
class Verdict:
    kind: str  # "permanent", "delayed", or "none" (not a bounce: an auto-reply or other mail)
    diagnostic: str


def _short(text: str) -> str:
    return clean_line(" ".join((text or "").split()))[:DIAGNOSTIC_LIMIT]


def _dsn(msg: Message) -> Verdict | None:
    """An RFC 3464 report: the first failed, else the first delayed, recipient block."""
    if msg.get_content_type() != "multipart/report":
        return None
    found: dict[str, str] = {}
    for part in msg.walk():
        if part.get_content_type() != "message/delivery-status" or not part.is_multipart():
            continue
        blocks: Any = part.get_payload()  # a multipart part: a list of header blocks
        for block in blocks[1:] or blocks:
            action = str(block.get("Action", "")).strip().lower()
            kind = "permanent" if action.startswith(("fail", "error")) else \
                "delayed" if action.startswith("delay") else None
            if kind is None or kind in found:
                continue
            code = str(block.get("Diagnostic-Code", "")).partition(";")[2] or str(block.get("Diagnostic-Code", ""))
            status = str(block.get("Status", "")).strip()
            recipient = str(block.get("Final-Recipient", "")).partition(";")[2].strip()
            text = _short(code) or ("the recipient's mail server reported a permanent failure"
                                    if kind == "permanent" else "delivery is delayed")
            if status and status not in text:
                text += f" (status {status})"
            if recipient and recipient.lower() not in text.lower():
                text = f"{recipient}: {text}"
            found[kind] = _short(text)
    if "permanent" in found:
        return Verdict("permanent", found["permanent"])
    if "delayed" in found:
        return Verdict("delayed", found["delayed"])
    # A report that says "delivered" or "relayed": not a failure at all.
    return Verdict("none", "a delivery report without a failure")


def is_auto_reply(msg: Message) -> bool:
    auto = str(msg.get("Auto-Submitted", "no")).strip().lower()
    if auto and not auto.startswith("no"):
        return True
    if any(msg.get(h) for h in ("X-Autoreply", "X-Autorespond", "X-Autoresponder")):
        return True
    if str(msg.get("Precedence", "")).strip().lower() == "auto_reply":
        return True
    return bool(_AUTO_SUBJECT.search(str(msg.get("Subject", ""))))


def _non_standard(msg: Message) -> Verdict:
    from flufl.bounce import all_failures

    try:
        temporary, permanent = all_failures(msg)
    except Exception:  # a detector that trips over odd mail: not a bounce we can read
        log.exception("reading a bounce failed")
        return Verdict("none", "")
    if not temporary and not permanent:
        return Verdict("none", "")
    lines: list[str] = []
    for part in msg.walk():
        if part.get_content_type() == "text/plain":
            raw: Any = part.get_payload(decode=True) or b""
            try:
                lines += raw.decode(part.get_content_charset() or "utf-8", "replace").splitlines()
            except LookupError:
                lines += raw.decode("utf-8", "replace").splitlines()
    said = next((m.group(0) for line in lines for m in [_SMTP_LINE.search(line)] if m), "")
    who = b", ".join(sorted(permanent or temporary)).decode("ascii", "replace")
    kind = "permanent" if permanent else "delayed"
    text = said or ("the recipient's mail server returned the notification as undeliverable"
                    if permanent else "delivery is delayed")
    return Verdict(kind, _short(f"{who}: {text}" if who and who.lower() not in text.lower() else text))


def classify(data: bytes) -> Verdict:
    """What a message that came back to a bounce address says."""
    msg = email.message_from_bytes(data[:MAX_BYTES], policy=email.policy.compat32)
    verdict = _dsn(msg)
    if verdict is not None:
        return verdict
    if is_auto_reply(msg):
        return Verdict("none", "an auto-reply")
    return _non_standard(msg)


# -- recording it ----------------------------------------------------------------------------

@dataclass
class Outcome:
    recorded: bool
    retry: bool = False  # the notification is being sent right now: ask the relay to come back
    sender_id: str | None = None
    event: dict | None = None


def record(db, notification_id: str, verdict: Verdict) -> Outcome:
    """Write what a bounce says about one notification, in one transaction."""
    if verdict.kind not in ("permanent", "delayed"):
        return Outcome(False)
    now = utcnow()
    with db.session() as session:
        row = session.get(Notification, notification_id)
        if row is None:
            log.warning("dropped a bounce for notification %s, which does not exist (any more)", notification_id)
            return Outcome(False)
        if row.status == "sending":
            return Outcome(False, retry=True)
        if verdict.kind == "permanent":
            if row.status not in ("sent", "bounced"):
                log.info("a bounce for notification %s, which is %s now, changes nothing", row.id, row.status)
                return Outcome(False)
            values = {"status": "bounced", "last_error": verdict.diagnostic}
        else:
            if row.status != "sent":
                return Outcome(False)
            values = {"last_error": f"delayed: {verdict.diagnostic}"}
        if all(getattr(row, k) == v for k, v in values.items()):
            return Outcome(False)  # the same bounce again (a relay's retry): nothing new
        session.execute(update(Notification).where(Notification.id == row.id, Notification.status == row.status)
                        .values(updated_at=now, **values).execution_options(synchronize_session=False))
        if verdict.kind == "permanent":  # no later notification goes to that address
            suppression.add(session, row.recipient_email, verdict.diagnostic, row.id)
        sender = session.scalar(select(PenMessage.sender_id).where(PenMessage.id == row.message_id))
        event = {"message_id": row.message_id,
                 "recipient": {"email": row.recipient_email, "name": row.recipient_name},
                 "status": values.get("status", row.status)}
    log.info("notification %s: %s bounce recorded (%s)", notification_id, verdict.kind, verdict.diagnostic[:200])
    return Outcome(True, sender_id=sender, event=event)


def receive(db, secret: bytes, recipients: list[str], data: bytes, hub=None) -> Outcome:
    """One message that arrived for `recipients` (bounce addresses): classify it and record
    it for the notification that the first valid address names. Raises on a database error
    (the caller answers with a temporary failure, so the relay keeps it)."""
    ident = next((i for i in (notification_of(secret, r) for r in recipients) if i), None)
    if ident is None:
        log.warning("dropped a bounce for %s: not a bounce address of this PEN, or a forged one",
                    ", ".join(r[:100] for r in recipients[:3]) or "no address")
        return Outcome(False)
    verdict = classify(data)
    if verdict.kind == "none":
        log.info("ignored mail to the bounce address of notification %s: %s", ident, verdict.diagnostic or
                 "not a bounce")
        return Outcome(False)
    outcome = record(db, ident, verdict)
    if outcome.recorded and hub is not None and outcome.sender_id:
        hub.publish(outcome.sender_id, "notification.updated", outcome.event)
    return outcome


# -- the bounce port ---------------------------------------------------------------------------

class _Handler:
    """aiosmtpd handler: only this PEN's bounce addresses are accepted, and a bounce is
    answered 250 only after it is committed, so a server killed meanwhile never took it
    and the relay tries again."""

    def __init__(self, db, secret: bytes, hub=None):
        self.db, self.secret, self.hub = db, secret, hub

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if notification_of(self.secret, address) is None:
            log.warning("refused mail for %r at the bounce port: not a bounce address of this PEN, "
                        "or a forged one", address[:100])
            return "550 5.1.1 No such bounce address here"
        if len(envelope.rcpt_tos) >= 10:
            return "452 4.5.3 Too many recipients"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        import asyncio

        data = envelope.original_content or envelope.content or b""
        try:
            outcome = await asyncio.to_thread(receive, self.db, self.secret, list(envelope.rcpt_tos), data, self.hub)
        except Exception:
            log.exception("recording a bounce failed; the relay will try again")
            return "451 4.3.0 The bounce could not be recorded; try again later"
        if outcome.retry:
            return "451 4.2.0 That notification is being sent right now; try again later"
        return "250 OK"


def listen(host: str, port: int):
    """The bounce port's listening socket; raises OSError when it cannot be had."""
    import socket

    return socket.create_server((host, port), backlog=50)


async def start_server(db, secret: bytes, hub, sock, max_connections: int = 50):
    """Take bounces on the listening socket `sock` (from listen()); returns the asyncio
    server (close() it to stop).
    Each connection has a 30 s idle limit, each message MAX_BYTES, and at most
    `max_connections` are open at once (more are closed at once)."""
    import asyncio

    from aiosmtpd.smtp import SMTP

    handler = _Handler(db, secret, hub)
    open_now = [0]

    class Limited(SMTP):
        _counted = False

        def connection_made(self, transport):
            if open_now[0] >= max_connections:
                transport.close()
                return
            open_now[0] += 1
            self._counted = True
            super().connection_made(transport)

        def connection_lost(self, exc):
            if self._counted:
                open_now[0] -= 1
                self._counted = False
                super().connection_lost(exc)

    def factory():
        return Limited(handler, data_size_limit=MAX_BYTES, timeout=30, hostname="pen-bounces",
                       ident="pen-server bounces", decode_data=False)

    return await asyncio.get_running_loop().create_server(factory, sock=sock)
