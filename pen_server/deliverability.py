"""Deliverability: the blocklist watch and the delivery report.

The watch asks each DNS blocklist zone of `[deliverability] dnsbl_zones` about each sending
address (the reversed-octet query of RFC 5782: `2.0.0.127.zen.spamhaus.org`, nibbles for
IPv6) and each `domain:` zone about the domain of `from_address` (`example.com.dbl...`), with
dnspython, all at once, each question given `query_seconds` (5). A listing is an A answer inside
127.0.0.0/8; NXDOMAIN (or a name without an A record) is clean. Anything else is reported
as unanswered, never as clean: a resolver that times out or answers SERVFAIL/REFUSED, a
zone's refusal code (127.255.255.x, as Spamhaus answers queries through public resolvers,
and DBL's 127.0.1.255), or an address outside 127.0.0.0/8 (a resolver that rewrites
NXDOMAIN). An unanswered question leaves its listing as it was.

Checks are recorded in the database (`blocklist_state`, one row, and `blocklist_listings`),
so every process and `pen-server deliverability check` agree: an API process makes a check
at start and then every `check_minutes`, and a process takes a check upon itself by moving
`claimed_at` with a conditional UPDATE, so several processes make one check a period. A new
listing, a listing that ends, and a resolver that stops or starts answering are logged once,
by the process that found it.

The report counts notifications by their status string, per recipient domain and in total,
for messages sent in a period."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
import secrets
import socket
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import and_, case, delete, func, select, update

from pen_server import effective_settings
from pen_server.models import BlocklistListing, BlocklistState, MailboxEntry, Message, Notification, utcnow
from pen_server.settings import DOMAIN_ZONE, Settings, host_port

log = logging.getLogger("pen_server.deliverability")
PARALLEL = 16  # questions in flight at once
START_GRACE = timedelta(seconds=30)  # processes that start together make one check
STATE_ID = 1
LISTED = ipaddress.ip_network("127.0.0.0/8")
REFUSAL_CODES = ipaddress.ip_network("127.255.255.0/24")
DBL_IP_REFUSED = ipaddress.ip_address("127.0.1.255")


@dataclass
class Question:
    zone: str  # as configured, without "domain:"
    subject: str  # an IP address or the sending domain
    name: str  # what is looked up


@dataclass
class Check:
    checked_at: datetime
    zones: list[str]
    subjects: list[str]
    listings: list[dict] = field(default_factory=list)  # {"zone", "subject", "answer"}
    unanswered: list[dict] = field(default_factory=list)  # {"zone", "subject", "reason"}
    clean: list[tuple[str, str]] = field(default_factory=list)


def query_name(zone: str, subject: str) -> str:
    """What a zone is asked: the address's octets (IPv4) or nibbles (IPv6) reversed, or the
    domain itself, in front of the zone."""
    try:
        ip = ipaddress.ip_address(subject)
    except ValueError:
        return f"{subject.rstrip('.')}.{zone}"
    if ip.version == 4:
        return ".".join(reversed(str(ip).split("."))) + "." + zone
    return ".".join(reversed(ip.exploded.replace(":", ""))) + "." + zone


def relay_addresses(host: str) -> list[str]:
    """The addresses the relay's host name has (the system's resolver, as the PEN uses to
    reach it)."""
    try:
        found = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return []
    return sorted({str(ipaddress.ip_address(str(info[4][0]).split("%")[0])) for info in found})


def questions(settings: Settings, relay_host: str, from_address: str) -> tuple[list[Question], list[str], str]:
    """Every question of one check, the subjects asked about, and why none can be asked."""
    conf = settings.deliverability
    ips = list(conf.sending_ips) or relay_addresses(relay_host)
    domain = from_address.rpartition("@")[2].strip().lower().strip("[]")
    try:
        ipaddress.ip_address(domain)
        domain = ""  # an IP-literal sending address has no domain to look up
    except ValueError:
        pass
    asked: list[Question] = []
    subjects: list[str] = []
    for entry in conf.dnsbl_zones:
        zone = entry.removeprefix(DOMAIN_ZONE)
        for subject in ([domain] if domain else []) if entry.startswith(DOMAIN_ZONE) else ips:
            asked.append(Question(zone, subject, query_name(zone, subject)))
            if subject not in subjects:
                subjects.append(subject)
    problem = ""
    if any(not e.startswith(DOMAIN_ZONE) for e in conf.dnsbl_zones) and not ips:
        problem = (f"the relay's host name {relay_host!r} has no address to check; set [deliverability] "
                   "sending_ips")
    return asked, subjects, problem


def _resolver(address: str):
    import dns.asyncresolver

    if not address:
        return dns.asyncresolver.Resolver()  # /etc/resolv.conf
    resolver = dns.asyncresolver.Resolver(configure=False)
    host, port = host_port(address)
    resolver.nameservers = [host]
    resolver.port = port
    return resolver


async def _ask(resolver, question: Question, where: str, seconds: float) -> tuple[str, str]:
    """("listed", the answer), ("clean", "") or ("unanswered", why), within `seconds`."""
    import dns.exception
    import dns.resolver

    try:
        answer = await resolver.resolve(question.name, "A", lifetime=seconds, search=False)
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return "clean", ""
    except dns.resolver.LifetimeTimeout:
        return "unanswered", f"the resolver {where} did not answer within {seconds:g} s"
    except dns.resolver.NoNameservers as exc:
        return "unanswered", f"the resolver {where} answered with an error ({_first_error(exc)})"
    except dns.exception.DNSException as exc:
        return "unanswered", f"the resolver {where} could not be asked ({exc})"
    addresses = sorted({ipaddress.ip_address(r.address) for r in answer})
    shown = ", ".join(str(a) for a in addresses)
    if any(a in REFUSAL_CODES or a == DBL_IP_REFUSED for a in addresses):
        return "unanswered", (f"the zone refused the question (answer {shown}); blocklists refuse questions "
                              "that come through public resolvers, so use a resolver of your own")
    if not all(a in LISTED for a in addresses):
        return "unanswered", (f"the answer {shown} is outside 127.0.0.0/8, which no blocklist gives; the resolver "
                              "may rewrite answers")
    return "listed", shown


def _first_error(exc) -> str:
    text = str(exc)
    match = re.search(r"answered (\w+)", text)
    return match.group(1) if match else text[:200]


async def run_check(settings: Settings, relay_host: str, from_address: str) -> Check:
    asked, subjects, problem = await asyncio.to_thread(questions, settings, relay_host, from_address)
    conf = settings.deliverability
    zones = [z.removeprefix(DOMAIN_ZONE) for z in conf.dnsbl_zones]
    check = Check(utcnow(), zones, subjects)
    if problem:
        check.unanswered.append({"zone": "", "subject": relay_host, "reason": problem})
    if not asked:
        return check
    where = conf.resolver or "of this system"
    try:
        resolver = _resolver(conf.resolver)
    except Exception as exc:  # no /etc/resolv.conf, or one without a nameserver
        for q in asked:
            check.unanswered.append({"zone": q.zone, "subject": q.subject,
                                     "reason": f"there is no resolver to ask ({exc}); set [deliverability] resolver"})
        return check
    gate = asyncio.Semaphore(PARALLEL)

    async def one(q: Question) -> tuple[Question, tuple[str, str]]:
        async with gate:
            return q, await _ask(resolver, q, where, conf.query_seconds)

    for q, (kind, said) in await asyncio.gather(*(one(q) for q in asked)):
        if kind == "listed":
            check.listings.append({"zone": q.zone, "subject": q.subject, "answer": said})
        elif kind == "clean":
            check.clean.append((q.zone, q.subject))
        else:
            check.unanswered.append({"zone": q.zone, "subject": q.subject, "reason": said})
    check.checked_at = utcnow()
    return check


# -- the database -----------------------------------------------------------------------------

def _state_row(session) -> None:
    """Make the one state row when it is missing (made on first use rather than by the
    migration, so that migrate-to copies it like any other row); of several processes
    making it at once, one does and the others' INSERT does nothing."""
    if session.get(BlocklistState, STATE_ID) is not None:
        return
    from sqlalchemy.dialects import postgresql, sqlite

    dialect = postgresql if session.bind.dialect.name == "postgresql" else sqlite
    session.execute(dialect.insert(BlocklistState).values(id=STATE_ID).on_conflict_do_nothing())


def claim(db, owner: str, older_than: datetime) -> bool:
    """Take the next check upon this process when the last one was claimed before
    `older_than`; exactly one of several processes asking at once gets True."""
    now = utcnow()
    with db.session() as session:
        _state_row(session)
        taken = session.execute(
            update(BlocklistState)
            .where(BlocklistState.id == STATE_ID,
                   (BlocklistState.claimed_at.is_(None)) | (BlocklistState.claimed_at < older_than))
            .values(claimed_at=now, claimed_by=owner).execution_options(synchronize_session=False)).rowcount
    return taken == 1


@dataclass
class Changes:
    new: list[dict]  # listings not there before
    gone: list[dict]  # listings that ended
    unanswered_before: list


def record(db, check: Check, owner: str = "") -> Changes:
    """Write one check: its listings (a new one from now, an existing one keeps its
    `since`), the end of those now clean or no longer asked about, and the state row."""
    with db.session() as session:
        _state_row(session)
        state = session.get(BlocklistState, STATE_ID, with_for_update=True)
        before = {(row.zone, row.subject): row for row in session.scalars(select(BlocklistListing))}
        listed = {(item["zone"], item["subject"]): item for item in check.listings}
        unanswered = {(q["zone"], q["subject"]) for q in check.unanswered}
        new, gone = [], []
        for key, item in listed.items():
            row = before.get(key)
            if row is None:
                session.add(BlocklistListing(zone=key[0], subject=key[1], answer=item["answer"],
                                             since=check.checked_at, seen_at=check.checked_at))
                new.append(item)
            else:
                row.answer, row.seen_at = item["answer"], check.checked_at
        for key, row in before.items():
            if key in listed or key in unanswered:  # no answer is not an all-clear
                continue
            # Clean now, or no longer asked about (the zones or addresses changed).
            session.execute(delete(BlocklistListing).where(BlocklistListing.zone == key[0],
                                                           BlocklistListing.subject == key[1]))
            gone.append({"zone": key[0], "subject": key[1], "answer": row.answer})
        unanswered_before = list(state.unanswered or []) if state.checked_at else []
        state.checked_at = check.checked_at
        if not owner:  # a check made by hand counts as this period's
            state.claimed_at, state.claimed_by = check.checked_at, None
        state.asked = {"zones": check.zones, "subjects": check.subjects}
        state.unanswered = check.unanswered
    return Changes(new, gone, unanswered_before)


def log_changes(changes: Changes, check: Check) -> None:
    """Each change once: the process that recorded it logs it."""
    for item in changes.new:
        log.warning("blocklist: %s is listed in %s (answer %s)", item["subject"], item["zone"], item["answer"])
    for item in changes.gone:
        log.info("blocklist: %s is no longer listed in %s", item["subject"], item["zone"])
    if check.unanswered and not changes.unanswered_before:
        first = check.unanswered[0]
        log.warning("blocklist: %d question(s) got no answer, so the check is incomplete: %s",
                    len(check.unanswered), first["reason"])
    elif changes.unanswered_before and not check.unanswered:
        log.info("blocklist: every zone answers again")


def current(db, settings: Settings) -> dict:
    """What GET /admin/deliverability answers: the last check and the listings now."""
    with db.session() as session:
        state = session.get(BlocklistState, STATE_ID)
        rows = list(session.scalars(select(BlocklistListing).order_by(BlocklistListing.zone,
                                                                      BlocklistListing.subject)))
    asked = (state.asked if state is not None else None) or {}
    return {
        "checked_at": state.checked_at if state is not None and state.checked_at else None,
        "zones": asked.get("zones", [z.removeprefix(DOMAIN_ZONE) for z in settings.deliverability.dnsbl_zones]),
        "subjects": asked.get("subjects", []),
        "listings": [{"zone": r.zone, "subject": r.subject, "answer": r.answer, "since": r.since} for r in rows],
        "unanswered": list(state.unanswered or []) if state is not None and state.checked_at else [],
    }


def _relay(db, settings: Settings) -> tuple[str, str]:
    with db.session() as session:
        conf = effective_settings.effective(session, settings)
    return conf.smtp.host, conf.smtp.from_address


async def check_now(db, settings: Settings, owner: str = "") -> tuple[Check, Changes]:
    """One check, recorded and its changes logged."""
    host, sender = await asyncio.to_thread(_relay, db, settings)
    check = await run_check(settings, host, sender)
    changes = await asyncio.to_thread(record, db, check, owner)
    log_changes(changes, check)
    return check, changes


async def watch(db, settings: Settings) -> None:
    """An API process's part: a check at start (unless another process made one within
    START_GRACE) and then every check_minutes, whichever process claims it."""
    conf = settings.deliverability
    if not conf.dnsbl_zones:
        return
    owner = secrets.token_hex(16)
    period = timedelta(minutes=conf.check_minutes)
    first = True
    while True:
        try:
            older_than = utcnow() - (START_GRACE if first else period)
            if await asyncio.to_thread(claim, db, owner, older_than):
                await check_now(db, settings, owner)
        except Exception:  # the database or the resolver library failed: next round tries again
            log.exception("the blocklist check failed")
        first = False
        await asyncio.sleep(min(period.total_seconds(), 60.0))


# -- the delivery report ------------------------------------------------------------------------

COUNTED = ("deferred", "failed", "bounced", "suppressed")
ACCEPTED = ("sent", "bounced")  # the relay took it (a bounce comes after)
SINCE_PATTERN = "^[1-9][0-9]{0,4}[mhdw]$"  # any such period is one a datetime can go back
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_since(text: str) -> timedelta:
    """"30d", "12h", "90m", "2w" (1 to 99999 of them) as a period; ValueError otherwise."""
    if not re.fullmatch(SINCE_PATTERN, text or ""):
        raise ValueError(text)
    return timedelta(**{_UNITS[text[-1]]: int(text[:-1])})


def _empty_counts() -> dict:
    return {"attempted": 0, "accepted": 0, "deferred": 0, "failed": 0, "bounced": 0, "suppressed": 0,
            "opened": 0, "delivery_rate": None}


def _rate(counts: dict) -> None:
    tried = counts["attempted"]
    counts["delivery_rate"] = round(100.0 * (counts["accepted"] - counts["bounced"]) / tried, 1) if tried else None


def report(db, since: timedelta) -> dict:
    """Per recipient domain and in total: notifications attempted (tried at least once),
    accepted by the relay (sent, and bounced after), deferred, failed, bounced, suppressed
    and opened (the recipient's copy has its opened_at), and the delivery rate: accepted and not
    bounced, over attempted, in per cent with one decimal. Counted by status string, over
    the notifications of the messages sent since then."""
    until = utcnow()
    cutoff = until - since
    n = Notification
    # A notification is opened when the copy of the user it went to was (every recipient has a
    # user and a copy; issue 20's opened_at).
    with db.session() as session:
        at = (func.strpos if session.bind.dialect.name == "postgresql" else func.instr)(n.recipient_email, "@")
        domain = func.lower(func.substr(n.recipient_email, at + 1)).label("domain")
        keys = [domain, n.status, case((n.attempts > 0, 1), else_=0).label("tried"),
                case((MailboxEntry.opened_at.is_not(None), 1), else_=0).label("opened")]
        query = (select(n).join(Message, Message.id == n.message_id)
                 .outerjoin(MailboxEntry, and_(MailboxEntry.message_id == n.message_id,
                                               MailboxEntry.user_id == n.recipient_user_id)))
        found = session.execute(query.with_only_columns(*keys, func.count())
                                .where(Message.sent_at >= cutoff).group_by(*keys)).all()
    domains: dict[str, dict] = {}
    total = _empty_counts()
    for name, status, was_tried, was_opened, count in found:
        counts = domains.setdefault(name or "", _empty_counts())
        for into in (counts, total):
            if was_tried:
                into["attempted"] += count
            if status in ACCEPTED:
                into["accepted"] += count
            if status in COUNTED:
                into[status] += count
            if was_opened:
                into["opened"] += count
    for counts in (*domains.values(), total):
        _rate(counts)
    ordered = sorted(domains.items(), key=lambda item: (-item[1]["attempted"], item[0]))
    return {"since": cutoff, "until": until, "domains": [{"domain": d, **c} for d, c in ordered], "total": total}


def report_lines(data: dict) -> list[str]:
    """The report as a table for the command line."""
    heads = ("domain", "attempted", "accepted", "deferred", "failed", "bounced", "suppressed", "opened", "rate")

    def cells(name: str, c: dict) -> list[str]:
        rate = "-" if c["delivery_rate"] is None else f"{c['delivery_rate']:.1f}%"
        return [name, *(str(c[k]) for k in heads[1:8]), rate]

    rows = [list(heads)] + [cells(d["domain"], d) for d in data["domains"]] + [cells("total", data["total"])]
    widths = [max(len(r[i]) for r in rows) for i in range(len(heads))]
    return ["  ".join(cell.ljust(widths[0]) if i == 0 else cell.rjust(widths[i]) for i, cell in enumerate(row))
            .rstrip() for row in rows]
