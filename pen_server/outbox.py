"""The delivery worker: drains the notification outbox (Notification rows) over SMTP.

It owns claiming due rows under a lease, the SMTP connections (reused for many e-mails,
a few in parallel), retry timing, and recording each outcome with a `notification.updated`
event to the sender. What an e-mail says is `mailer.py`'s business.

Delivery is at least once: a row is marked sent only after the relay accepted it, so a
server killed between the relay's "250" and our commit sends that one e-mail again when its
lease runs out (with the same Message-ID, so mail programs can tell). A clean `stop()`
finishes and records every send in flight and hands the untouched rows back, so a clean
restart sends nothing twice.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import random
import secrets
import ssl
from collections import deque
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import aiosmtplib
from sqlalchemy import and_, case, or_, select, update
from sqlalchemy.orm import aliased, lazyload

from pen_server import after_send, audit, bounces, dkim, effective_settings, mailer
from pen_server.events import EventHub
from pen_server.models import MailboxEntry, Message, Notification, Package, User, utcnow
from pen_server.settings import Settings, SmtpSettings

log = logging.getLogger("pen_server.outbox")
STOP_SECONDS = 15.0  # how long a stopping worker may take to finish its sends
N = Notification


@dataclass
class _Job:
    """One claimed row, with its e-mail already built (or the reason it cannot be)."""
    id: str
    message_id: str
    sender_id: str | None
    recipient: dict
    attempts: int  # including this try
    rcpt: str = ""
    mail_from: str = ""  # the envelope sender: this notification's own bounce address
    data: bytes = b""
    error: str | None = None
    retry: bool = False  # the error is the PEN's setup, not the recipient's: defer, not fail
    cancelled: bool = False  # withdrawn from this recipient after the row was claimed: never sent


class _Relay:
    """The SMTP connections of one busy stretch, one slot per parallel lane."""

    def __init__(self, smtp: SmtpSettings, helo: str):
        self.smtp, self.helo = smtp, helo
        self.slots: list[aiosmtplib.SMTP | None] = []
        self._tls: ssl.SSLContext | None = None

    def client(self) -> aiosmtplib.SMTP:
        s = self.smtp
        if s.security != "none" and self._tls is None:
            # The relay's certificate is always checked: against ca_file, else the system's CAs.
            self._tls = ssl.create_default_context(cafile=s.ca_file)
        return aiosmtplib.SMTP(
            hostname=s.host, port=s.port, use_tls=s.security == "tls",
            start_tls=True if s.security == "starttls" else False,
            tls_context=self._tls, username=s.username, password=s.password,
            timeout=s.timeout, local_hostname=self.helo)

    async def close(self) -> None:
        slots, self.slots = self.slots, []
        for client in slots:
            await _quit(client)


async def _quit(client: aiosmtplib.SMTP | None) -> None:
    if client is None or not client.is_connected:
        return
    try:
        await asyncio.wait_for(client.quit(), 5)
    except Exception:  # the relay went away first: nothing to tidy
        client.close()


def _helo_name(host: str) -> str:
    try:
        return f"[{ipaddress.ip_address(host)}]"
    except ValueError:
        return host or "localhost"


def _reply(exc: aiosmtplib.SMTPResponseException) -> str:
    return f"{exc.code} {exc.message}".strip()


class _Outcomes:
    """Records outcomes as they come: one writer, so quick sends share a transaction (and
    SQLite's single write lock is taken far less often than once per e-mail)."""

    def __init__(self, worker: DeliveryWorker):
        self.worker = worker
        self.pending: list[tuple[_Job, str, str | None]] = []
        self.kick = asyncio.Event()
        self.closing = False
        self.task = asyncio.create_task(self._write())

    def add(self, job: _Job, status: str, error: str | None) -> None:
        self.pending.append((job, status, error))
        self.kick.set()

    async def close(self) -> None:
        self.closing = True
        self.kick.set()
        await asyncio.shield(self.task)

    async def _write(self) -> None:
        while True:
            await self.kick.wait()
            if not self.closing:
                await asyncio.sleep(0.05)  # let a few more sends finish: fewer, larger writes
            self.kick.clear()
            batch, self.pending = self.pending, []
            if batch:
                try:
                    finals = await asyncio.to_thread(self.worker._record, batch)
                except Exception:
                    log.exception("recording %d notification outcomes failed; their leases will run out",
                                  len(batch))
                else:
                    for (job, _, _), status in zip(batch, finals):
                        domain = job.rcpt.rpartition("@")[2] or "-"
                        log.info("delivery %s to %s: %s", job.id, domain, status,
                                 extra={"fields": {"event": "delivery", "notification": job.id, "domain": domain,
                                                   "status": status, "attempt": job.attempts}})
                    await self.worker._publish([(job, status) for (job, _, _), status in zip(batch, finals)])
            if self.closing and not self.pending:
                return


class DeliveryWorker:
    poll_interval = 1.0  # seconds between looks at the outbox when idle

    def __init__(self, db, settings: Settings, secret: bytes, hub: EventHub | None = None):
        self.db, self.settings, self.secret, self.hub = db, settings, secret, hub
        self.owner = secrets.token_hex(16)  # this worker's lease name, new on every start
        self._wake = asyncio.Event()
        self._stopped = asyncio.Event()
        self._pass_lock = asyncio.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = False
        self._running = False
        self._relay: _Relay | None = None
        self.signer = dkim.Signer(settings.data_dir)

    # -- control ---------------------------------------------------------------------------

    def wake(self) -> None:
        """Start a pass now. Safe from any thread (API handlers run in a thread pool)."""
        loop = self._loop
        if loop is None:
            return  # not running yet: its first pass comes at once anyway
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._wake.set()
        else:
            try:
                loop.call_soon_threadsafe(self._wake.set)
            except RuntimeError:  # the loop is closed: the server is going down
                pass

    async def run(self) -> None:
        """Deliver until stop(): pass after pass while there is work, then wait for wake()."""
        self._loop = asyncio.get_running_loop()
        self._running = True
        try:
            while not self._stopping:
                self._wake.clear()  # before the pass, so a wake() during it is not lost
                try:
                    done = await self.deliver_due()
                except Exception:  # a database hiccup must not end delivery
                    log.exception("a delivery pass failed")
                    done = 0
                if done == 0 and not self._stopping:
                    try:
                        await asyncio.wait_for(self._wake.wait(), self.poll_interval)
                    except TimeoutError:
                        pass
        finally:
            await self._close_relay()
            self._running = False
            self._stopped.set()

    async def stop(self) -> None:
        """Finish the sends in flight, record them, hand back the rest, and return."""
        self._stopping = True
        self.wake()
        if self._running:
            await self._stopped.wait()
        else:
            async with self._pass_lock:
                await self._close_relay()

    async def stop_within(self, seconds: float | None = None) -> None:
        """stop(), but give up after `seconds` (STOP_SECONDS): the sends still in flight are
        then left leased, and another worker takes them when the lease runs out (at least
        once, as after a crash)."""
        try:
            await asyncio.wait_for(self.stop(), STOP_SECONDS if seconds is None else seconds)
        except TimeoutError:
            log.warning("delivery did not finish within %s s of the stop; its claimed notifications wait for "
                        "their lease to run out", STOP_SECONDS if seconds is None else seconds)

    # -- one pass ------------------------------------------------------------------------------

    async def deliver_due(self) -> int:
        """Claim the due rows (at most worker_batch), send them, record the outcomes.
        Returns how many rows were claimed (0: nothing was due)."""
        self._loop = asyncio.get_running_loop()
        async with self._pass_lock:
            if self._stopping:
                return 0
            claimed = await asyncio.to_thread(self._claim)
            if claimed is None:
                await self._close_relay()  # idle: do not hold the relay's connections
                return 0
            conf, jobs = claimed
            await self._publish([(job, "sending") for job in jobs])
            heartbeat = asyncio.create_task(self._keep_lease())
            try:
                await self._send_all(conf, jobs)
            finally:
                heartbeat.cancel()
            return len(jobs)

    def _claim(self) -> tuple[effective_settings.PenConf, list[_Job]] | None:
        """Lease due rows to this worker (one UPDATE), then read them back by owner. On
        PostgreSQL the rows are picked with SELECT ... FOR UPDATE SKIP LOCKED, so workers
        of several processes each take rows no other is taking, without waiting on one
        another; SQLite has no FOR UPDATE (its one writer at a time serializes the claims).
        Either way the UPDATE repeats the due test, and the lease brings back the rows of a
        worker that died."""
        s = self.settings
        now = utcnow()

        def due(t):  # a "sending" row is due only when its lease ran out (its worker died)
            return and_(or_(t.lease_until.is_(None), t.lease_until < now),
                        or_(and_(t.status.in_(("queued", "deferred")), t.next_attempt_at <= now),
                            t.status == "sending"))

        # An alias, so that the subquery reads the table itself instead of being correlated
        # with the UPDATE's row.
        t = aliased(N)
        pick = (select(t.id).where(due(t))
                .order_by(t.next_attempt_at, t.message_id, t.position).limit(s.worker_batch))
        if self.db.engine.dialect.name == "postgresql":
            # Picked once, in a CTE: as a plain IN (subquery) PostgreSQL may run the locking
            # subquery again for each row, and each run skips the rows just taken, so the
            # LIMIT would hold for none of them.
            pick = select(pick.with_for_update(skip_locked=True).cte("pick").prefix_with("MATERIALIZED").c.id)
        with self.db.session() as session:
            # The settings first: when they cannot be read, nothing is claimed to sit leased.
            conf = effective_settings.effective(session, s)
        with self.db.session() as session:
            session.execute(
                update(N).where(N.id.in_(pick), due(N))
                .values(status="sending", attempts=N.attempts + 1, lease_owner=self.owner,
                        lease_until=now + timedelta(seconds=s.lease_seconds), updated_at=now)
                .execution_options(synchronize_session=False))
        with self.db.session() as session:
            rows = list(session.scalars(select(N).where(N.lease_owner == self.owner,
                                                        N.status == "sending")))
            if not rows:
                return None
            return conf, self._jobs(session, conf, rows)

    def _jobs(self, session, conf: effective_settings.PenConf, rows: list[Notification]) -> list[_Job]:
        """Load what the e-mails need in a few queries and build each one."""
        messages = {m.id: m for m in session.scalars(
            select(Message).where(Message.id.in_({r.message_id for r in rows}))
            .options(lazyload(Message.attachments)))}
        senders = {u.id: u for u in session.scalars(
            select(User).where(User.id.in_({m.sender_id for m in messages.values()})))}
        packages = {p.name: p for p in session.scalars(
            select(Package).where(Package.name.in_({u.package for u in senders.values() if u.package})))}
        parents: dict[tuple[str, str], str] = {}
        parent_ids = {m.in_reply_to for m in messages.values() if m.in_reply_to}
        if parent_ids:
            for mid, email, smtp_id in session.execute(
                    select(N.message_id, N.recipient_email, N.smtp_message_id)
                    .where(N.message_id.in_(parent_ids))):
                parents[(mid, email.lower())] = smtp_id
        withdrawn = {(mid, uid) for mid, uid in session.execute(
            select(MailboxEntry.message_id, MailboxEntry.user_id).where(
                MailboxEntry.message_id.in_({r.message_id for r in rows}),
                MailboxEntry.user_id.in_({r.recipient_user_id for r in rows if r.recipient_user_id}),
                MailboxEntry.revoked_at.is_not(None)))}
        try:
            from_ok: str | None = mailer.checked_address(conf.smtp.from_address)
        except mailer.AddressError:
            from_ok = None

        headers: dict[str, dict[str, str] | Exception] = {}  # per message: To and Cc, folded once

        def address_headers(message: Message) -> dict[str, str]:
            if message.id not in headers:
                try:
                    headers[message.id] = mailer.address_headers(message)
                except mailer.AddressError as exc:
                    headers[message.id] = exc
            found = headers[message.id]
            if isinstance(found, Exception):
                raise found
            return found

        jobs = []
        for row in rows:
            message = messages.get(row.message_id)
            job = _Job(id=row.id, message_id=row.message_id,
                       sender_id=message.sender_id if message else None,
                       recipient={"email": row.recipient_email, "name": row.recipient_name},
                       attempts=row.attempts)
            jobs.append(job)
            if (row.message_id, row.recipient_user_id) in withdrawn:
                job.cancelled = True
                continue
            if row.attempts > self.settings.max_attempts:
                # Claimed again and again without an outcome (each try killed the server).
                job.error = f"gave up after {row.attempts - 1} attempts"
                continue
            if message is None:
                job.error = "the message is gone"
                continue
            if from_ok is None:
                job.error = f"the PEN's from_address {conf.smtp.from_address!r} is not a valid address"
                job.retry = True
                continue
            sender = senders.get(message.sender_id)
            package = packages.get(sender.package) if sender is not None and sender.package else None
            disclaimer, subject_policy = mailer.sender_terms(sender, package)
            parent = parents.get((message.in_reply_to, row.recipient_email.lower())) \
                if message.in_reply_to else None
            try:
                email = mailer.build_notification(row, message, conf=conf, secret=self.secret,
                                                  disclaimer=disclaimer, parent_message_id=parent,
                                                  guest=sender is not None and sender.role == "guest",
                                                  headers=address_headers(message),
                                                  subject_policy=subject_policy)
                job.rcpt = mailer.checked_address(row.recipient_email)
                job.mail_from = bounces.verp_address(
                    self.secret, row.id, self.settings.bounce_domain or from_ok.rpartition("@")[2]) or from_ok
                # Signed last: nothing may change the e-mail after this.
                job.data = self.signer.sign(email.as_bytes(), from_ok)
            except Exception as exc:  # one row that cannot be built fails alone
                log.warning("notification %s cannot be built: %s", row.id, exc)
                job.error = f"cannot build the notification: {exc}"
        return jobs

    async def _send_all(self, conf: effective_settings.PenConf, jobs: list[_Job]) -> None:
        queue = deque(jobs)
        relay = self._relay
        if relay is None or relay.smtp != conf.smtp:  # first pass, or the admin changed SMTP
            await self._close_relay()
            relay = self._relay = _Relay(conf.smtp, _helo_name(conf.host))
        lanes = max(1, min(self.settings.worker_concurrency, len(jobs)))
        relay.slots += [None] * (lanes - len(relay.slots))
        down: list[str] = []  # set when the relay cannot be reached: the rest wait for later
        outcomes = _Outcomes(self)
        try:
            await asyncio.gather(*(self._lane(relay, i, queue, down, outcomes) for i in range(lanes)))
        finally:
            await outcomes.close()  # every send that was made is recorded before we go on
        if queue:  # stopping: hand back the rows not tried
            await asyncio.to_thread(self._release, [job.id for job in queue])
            await self._publish([(job, "queued" if job.attempts <= 1 else "deferred") for job in queue])

    async def _lane(self, relay: _Relay, slot: int, queue: deque, down: list[str],
                    outcomes: _Outcomes) -> None:
        while queue and not self._stopping:
            job = queue.popleft()
            try:
                if job.cancelled:
                    status, error = "cancelled", None
                elif job.error:
                    status, error = ("deferred" if job.retry else "failed"), job.error
                elif down:
                    status, error = "deferred", down[0]
                else:
                    status, error = await self._send_one(relay, slot, job, down)
            except Exception as exc:  # never let one row end the lane
                log.exception("sending notification %s failed", job.id)
                status, error = "deferred", f"internal error: {exc}"
            outcomes.add(job, status, error)

    async def _send_one(self, relay: _Relay, slot: int, job: _Job, down: list[str]) -> tuple[str, str | None]:
        client = relay.slots[slot]
        if client is None or not client.is_connected:
            relay.slots[slot] = None
            client = None
            try:
                client = relay.client()
                await client.connect()
            except Exception as exc:
                # Refused, timed out, TLS or AUTH trouble: the relay's state, not this
                # recipient's, so nothing in this pass is failed for it.
                if client is not None:
                    client.close()
                reason = _reply(exc) if isinstance(exc, aiosmtplib.SMTPResponseException) else \
                    f"cannot reach the SMTP relay {relay.smtp.host}:{relay.smtp.port}: {exc or type(exc).__name__}"
                down.append(reason)
                return "deferred", reason
            relay.slots[slot] = client
        try:
            await client.sendmail(job.mail_from, [job.rcpt], job.data)
            return "sent", None
        except aiosmtplib.SMTPRecipientsRefused as exc:
            refused = exc.recipients[0]
            return self._by_code(refused.code, _reply(refused))
        except aiosmtplib.SMTPResponseException as exc:
            if exc.code == 421 or exc.code < 0:  # the relay closes this connection
                relay.slots[slot] = None
                client.close()
            return self._by_code(exc.code, _reply(exc))
        except Exception as exc:  # lost connection, timeout: try again later
            relay.slots[slot] = None
            client.close()
            return "deferred", f"the connection to the SMTP relay was lost: {exc or type(exc).__name__}"

    @staticmethod
    def _by_code(code: int, reply: str) -> tuple[str, str]:
        return ("failed" if 500 <= code <= 599 else "deferred"), reply

    # -- database writes -----------------------------------------------------------------------

    def _record(self, outcomes: list[tuple[_Job, str, str | None]]) -> list[str]:
        """Write outcomes in one transaction; returns each row's final status."""
        s = self.settings
        now = utcnow()
        finals: list[str] = []
        sent: list[_Job] = []
        with self.db.session() as session:
            for job, status, error in outcomes:
                values: dict[str, Any] = {"status": status, "last_error": error, "updated_at": now,
                                          "lease_owner": None, "lease_until": None}
                if status == "deferred":
                    if job.attempts >= s.max_attempts:
                        values.update(status="failed",
                                      last_error=f"gave up after {job.attempts} attempts: {error}")
                    else:
                        delay = min(s.retry_max_seconds, s.retry_base_seconds * 2 ** (job.attempts - 1))
                        # A little jitter, so rows deferred together do not all return together.
                        values["next_attempt_at"] = now + timedelta(seconds=delay * random.uniform(0.9, 1.0))
                done = session.execute(update(N).where(N.id == job.id, N.lease_owner == self.owner)
                                       .values(**values).execution_options(synchronize_session=False))
                if done.rowcount == 0:
                    log.warning("notification %s was taken over by another worker while sending", job.id)
                elif values["status"] == "sent":
                    sent.append(job)
                finals.append(str(values["status"]))
            # Withdrawn while this worker was sending (a dead relay, say): what is left to try
            # is cancelled now, so it never goes out when the relay comes back.
            waiting = [job.id for (job, _, _), final in zip(outcomes, finals) if final in after_send.UNSENT]
            if waiting:
                session.execute(update(N).where(N.id.in_(waiting), N.status.in_(after_send.UNSENT),
                                                after_send.revoked_recipient(N.recipient_user_id, N.message_id))
                                .values(status="cancelled", updated_at=now)
                                .execution_options(synchronize_session=False))
                gone = set(session.scalars(select(N.id).where(N.id.in_(waiting), N.status == "cancelled")))
                finals = ["cancelled" if job.id in gone else final for (job, _, _), final in zip(outcomes, finals)]
            audit.append(session, [audit.Entry("notified", audit.SMTP, job.message_id, recipient=job.recipient["email"],
                                               detail={"notification": job.id}) for job in sent])
        return finals

    def _release(self, ids: list[str]) -> None:
        """Rows claimed but not tried: back to waiting, the try not counted."""
        with self.db.session() as session:
            session.execute(
                update(N).where(N.id.in_(ids), N.lease_owner == self.owner).values(
                    status=case((N.attempts > 1, "deferred"), else_="queued"),
                    attempts=N.attempts - 1, lease_owner=None, lease_until=None, updated_at=utcnow())
                .execution_options(synchronize_session=False))

    def _renew(self) -> None:
        with self.db.session() as session:
            session.execute(
                update(N).where(N.lease_owner == self.owner, N.status == "sending")
                .values(lease_until=utcnow() + timedelta(seconds=self.settings.lease_seconds))
                .execution_options(synchronize_session=False))

    async def _keep_lease(self) -> None:
        """While a slow relay takes its time, keep our rows from looking abandoned."""
        while True:
            await asyncio.sleep(max(1.0, self.settings.lease_seconds / 3))
            try:
                await asyncio.to_thread(self._renew)
            except Exception:
                log.exception("renewing the delivery lease failed")

    async def _close_relay(self) -> None:
        relay, self._relay = self._relay, None
        if relay is not None:
            await relay.close()

    async def _publish(self, changes: list[tuple[_Job, str]]) -> None:
        """`notification.updated` to each sender (written to the events table, in a thread)."""
        items = [(job.sender_id, "notification.updated",
                  {"message_id": job.message_id, "recipient": job.recipient, "status": status})
                 for job, status in changes if job.sender_id is not None]
        if self.hub is None or not items:
            return
        try:
            await asyncio.to_thread(self.hub.publish_many, items)
        except Exception:
            log.exception("publishing %d notification events failed", len(items))
