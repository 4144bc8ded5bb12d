"""Bounces: the envelope sender of each notification is an address of its own (VERP), and
what comes back to it is read, checked and recorded.

`bounces+ID-MAC@bounce-domain`: ID is the notification id in base32, MAC 80 bits of an HMAC
of it under the server secret (`security.derived_token`), also base32, so the address
survives a relay that lowercases it, and a bounce names its notification without any
trust in its content: an address whose MAC does not match is dropped with a log line.

A bounce is an RFC 3464 delivery status notification, or one of the common non-standard
forms that flufl.bounce knows (bounce_reading.py reads it). A permanent failure makes a
`sent` notification `bounced` with the diagnostic as its `last_error`; a delay is noted in
`last_error` and the status stays.

Every notification's recipient knows its own bounce address (the Return-Path), so the port
is built to be cheap for anyone to reach, and to cost the API nothing: it runs in a process
of its own (started by the API process that holds its socket, at a lower CPU priority,
ending with it); a message is at most REPORT_LIMIT bytes, one that is not a delivery report
at most OTHER_LIMIT (a notification quoted back is a few KiB), and at most READERS are read
at once, in threads, off that process's event loop.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import email.parser
import email.policy
import hmac
import logging
import os
import re
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select, update

from pen_server import audit, metrics, security
from pen_server.bounce_reading import Verdict, classify
from pen_server.models import Message as PenMessage
from pen_server.models import Notification, utcnow

log = logging.getLogger("pen_server.bounces")

LOCAL = "bounces"
# A delivery report (multipart/report) with the notification it returns, headers and all,
# fits in 64 KiB; mail that is not one is at most 32 KiB: a notification quoted back is a
# few KiB. More is not a bounce of ours, and is refused before anything reads it.
REPORT_LIMIT = 64 << 10
OTHER_LIMIT = 32 << 10
CUT_OFF = REPORT_LIMIT + (16 << 10)  # a message this far over the limit ends its connection at once
READERS = 2  # messages read at once (threads of the bounce port's process)
WAIT_SECONDS = 20.0  # to be read, waiting included, before the relay is asked to come back later
NO_WORDS = "the recipient's mail server gave no reason"  # of a delay, where a bounce said nothing more
_VERP = re.compile(rf"{LOCAL}\+([a-z2-7]+)-([a-z2-7]{{16}})@([a-z0-9.-]+)", re.I)


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
            values = {"status": "bounced", "last_error": verdict.diagnostic or None}
        else:
            if row.status != "sent":
                return Outcome(False)
            values = {"last_error": f"delayed: {verdict.diagnostic or NO_WORDS}"}
        if all(getattr(row, k) == v for k, v in values.items()):
            return Outcome(False)  # the same bounce again (a relay's retry): nothing new
        session.execute(update(Notification).where(Notification.id == row.id, Notification.status == row.status)
                        .values(updated_at=now, **values).execution_options(synchronize_session=False))
        audit.append(session, [audit.Entry("bounce", audit.SMTP, row.message_id, recipient=row.recipient_email,
                                           detail={"notification": row.id, "kind": verdict.kind})])
        sender = session.scalar(select(PenMessage.sender_id).where(PenMessage.id == row.message_id))
        event = {"message_id": row.message_id,
                 "recipient": {"email": row.recipient_email, "name": row.recipient_name},
                 "status": values.get("status", row.status)}
    log.info("notification %s: %s bounce recorded (%s)", notification_id, verdict.kind,
             verdict.diagnostic[:200] or "no reason given")
    return Outcome(True, sender_id=sender, event=event)


def too_big(data: bytes) -> str | None:
    """Why `data` is refused unread (too big for a bounce of ours), or None."""
    if len(data) > REPORT_LIMIT:
        return f"a bounce here is at most {REPORT_LIMIT} bytes"
    if len(data) > OTHER_LIMIT and \
            email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(data).get_content_type() \
            != "multipart/report":
        return f"mail that is not a delivery report is at most {OTHER_LIMIT} bytes here"
    return None


def _addressed(secret: bytes, recipients: list[str]) -> str | None:
    """The notification that the first valid bounce address among `recipients` names."""
    ident = next((i for i in (notification_of(secret, r) for r in recipients) if i), None)
    if ident is None:
        log.warning("dropped a bounce for %s: not a bounce address of this PEN, or a forged one",
                    ", ".join(r[:100] for r in recipients[:3]) or "no address")
        metrics.bounce("refused")
    return ident


def settle(db, ident: str, verdict: Verdict, hub=None) -> Outcome:
    """Record what a bounce for notification `ident` says, and tell its sender. Raises on a
    database error (the caller answers with a temporary failure, so the relay keeps it)."""
    metrics.bounce("ignored" if verdict.kind == "none" else verdict.kind)
    if verdict.kind == "none":
        log.info("ignored mail to the bounce address of notification %s: %s", ident, verdict.diagnostic or
                 "not a bounce")
        return Outcome(False)
    outcome = record(db, ident, verdict)
    if outcome.recorded and hub is not None and outcome.sender_id:
        hub.publish(outcome.sender_id, "notification.updated", outcome.event)
    return outcome


def receive(db, secret: bytes, recipients: list[str], data: bytes, hub=None) -> Outcome:
    """One message that arrived for `recipients` (bounce addresses), read in this process
    (`pen-server bounce`, an MTA's pipe, is a process of its own): classify it and record it
    for the notification that the first valid address names."""
    ident = _addressed(secret, recipients)
    if ident is None:
        return Outcome(False)
    if why := too_big(data):
        log.warning("dropped mail of %d bytes to the bounce address of notification %s: %s", len(data), ident, why)
        return Outcome(False)
    return settle(db, ident, classify(data), hub)


# -- the bounce port: a process of its own ----------------------------------------------------

class _Handler:
    """aiosmtpd handler: only this PEN's bounce addresses are accepted, and a bounce is
    answered 250 only after it is committed, so a server killed meanwhile never took it
    and the relay tries again."""

    def __init__(self, db, secret: bytes, hub=None):
        self.db, self.secret, self.hub = db, secret, hub
        self.reading = ThreadPoolExecutor(READERS, thread_name_prefix="bounce-reading")

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if notification_of(self.secret, address) is None:
            log.warning("refused mail for %r at the bounce port: not a bounce address of this PEN, "
                        "or a forged one", address[:100])
            metrics.bounce("refused")
            return "550 5.1.1 No such bounce address here"
        if len(envelope.rcpt_tos) >= 10:
            return "452 4.5.3 Too many recipients"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        data = envelope.original_content or envelope.content or b""
        ident = _addressed(self.secret, list(envelope.rcpt_tos))  # each was checked at RCPT
        if ident is None:
            return "554 5.1.1 No such bounce address here"
        if why := too_big(data):
            log.warning("refused mail of %d bytes to the bounce address of notification %s: %s", len(data), ident,
                        why)
            return f"552 5.3.4 Too big: {why}"
        try:
            verdict = await asyncio.wait_for(
                asyncio.get_running_loop().run_in_executor(self.reading, classify, data), WAIT_SECONDS)
        except TimeoutError:
            return "451 4.3.2 Too many bounces at once; try again later"
        except Exception:
            log.exception("mail to the bounce address of notification %s could not be read", ident)
            return "554 5.6.0 This message could not be read as a bounce"
        try:
            outcome = await asyncio.to_thread(settle, self.db, ident, verdict, self.hub)
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


async def serve_port(db, secret: bytes, hub, sock, max_connections: int = 50) -> None:
    """Take bounces on the listening socket `sock` (from listen()) until cancelled.
    Each connection has a 30 s idle limit, each message REPORT_LIMIT bytes (advertised as
    SIZE; more is answered 552 and never kept, and past CUT_OFF the connection is closed
    too), and at most `max_connections` are open at once (more are closed at once)."""
    from aiosmtpd.smtp import SMTP

    handler = _Handler(db, secret, hub)
    open_now = [0]

    class Limited(SMTP):
        _counted = False
        _message_bytes = -1  # of the message being received; -1 outside DATA

        async def smtp_DATA(self, arg):
            self._message_bytes = 0
            try:
                await super().smtp_DATA(arg)
            finally:
                self._message_bytes = -1

        def data_received(self, data):
            if self._message_bytes >= 0:
                self._message_bytes += len(data)
                if self._message_bytes > CUT_OFF:
                    # aiosmtpd would read the rest line by line, only to answer 552 at its
                    # end: a sender that ignored SIZE is answered now.
                    log.warning("refused mail of more than %d bytes at the bounce port; connection closed",
                                CUT_OFF)
                    self._message_bytes = -1
                    self.transport.write(b"552 5.3.4 Too big for a bounce; closing the connection\r\n")
                    self.transport.close()
                    return
            super().data_received(data)

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
        return Limited(handler, data_size_limit=REPORT_LIMIT, timeout=30, hostname="pen-bounces",
                       ident="pen-server bounces", decode_data=False)

    server = await asyncio.get_running_loop().create_server(factory, sock=sock)
    try:
        async with server:
            await server.serve_forever()
    finally:
        handler.reading.shutdown(wait=False, cancel_futures=True)


def main(argv: list[str] | None = None) -> int:
    """The bounce port's process (`python -m pen_server.bounces`), started by the API
    process that holds the port's socket (BouncePort): it takes the socket as `--fd`, reads
    and records bounces, and ends with that process."""
    import argparse
    import signal
    import socket

    from pen_server.children import die_with
    from pen_server.cli import LOG_FORMAT
    from pen_server.db import Database
    from pen_server.events import EventHub
    from pen_server.settings import load_settings

    parser = argparse.ArgumentParser(prog="python -m pen_server.bounces")
    parser.add_argument("--data", required=True)
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--parent", type=int, required=True)
    parser.add_argument("--log", help="the API process's log file (else standard error)")
    args = parser.parse_args(argv)
    die_with(args.parent)  # a server killed with -9 leaves no port that answers 250 for it
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # ctrl-c in a terminal: the API process stops this one
    handler = logging.FileHandler(args.log, encoding="utf-8") if args.log else logging.StreamHandler()
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT, handlers=[handler])
    logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd's every command
    settings = load_settings(args.data)
    metrics.setup(settings)  # pen_bounces_total counts what this process reads too
    db = Database(settings.database_url)
    try:
        secret = bytes.fromhex((settings.data_dir / "secret.key").read_text().strip())  # as app.read_secret
        asyncio.run(serve_port(db, secret, EventHub(db), socket.socket(fileno=args.fd)))
    finally:
        db.dispose()
    return 0


class BouncePort:
    """In the API process: the bounce port's process on the listening socket `sock`, started
    again when it ends (after a pause that grows while it keeps ending), until stop()."""

    def __init__(self, data_dir: Path, sock) -> None:
        self.data_dir, self.sock = data_dir, sock
        self.proc: asyncio.subprocess.Process | None = None
        self.task = asyncio.create_task(self._keep())

    async def _keep(self) -> None:
        loop = asyncio.get_running_loop()
        pause = 1.0
        while True:
            log_file = next((h.baseFilename for h in logging.getLogger().handlers
                             if isinstance(h, logging.FileHandler)), None)
            fd = self.sock.fileno()
            started = loop.time()
            try:
                self.proc = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "pen_server.bounces", "--data", str(self.data_dir), "--fd", str(fd),
                    "--parent", str(os.getpid()), *(["--log", log_file] if log_file else []),
                    stdin=asyncio.subprocess.DEVNULL, pass_fds=(fd,))
            except OSError as exc:
                ended = f"could not start ({exc})"
            else:
                # Background work: the API's requests go first when the CPUs are busy (set
                # here, not in the process, which would first spend its start-up at full priority).
                with contextlib.suppress(OSError):
                    os.setpriority(os.PRIO_PROCESS, self.proc.pid, os.getpriority(os.PRIO_PROCESS, 0) + 10)
                ended = f"ended (exit {await self.proc.wait()})"
            pause = 1.0 if loop.time() - started > 60 else min(pause * 2, 60.0)
            log.error("the bounce port's process %s; it starts again in %.0f s", ended, pause)
            await asyncio.sleep(pause)

    async def stop(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        proc, self.proc = self.proc, None
        if proc is not None and proc.returncode is None:
            proc.kill()  # a bounce it was recording was not answered 250: its relay sends it again
            await proc.wait()


if __name__ == "__main__":
    sys.exit(main())
