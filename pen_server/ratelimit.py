"""Failed sign-ins as growing delays, counted three ways:

- per account and client address (`own`): the person's own mistakes; 5 free, then the next
  try waits 1, 2, 4 ... seconds, at most `signin_max_delay` (60 s);
- per client address, over all accounts (`address`): a guesser at one address is slowed
  hard; 10 free, then up to `address_max_delay` (15 minutes). Not for loopback, where every
  client of a local reverse proxy without `trusted_proxy` would arrive from;
- per account, over all addresses (`account`): guessing spread over many addresses; 20
  free, then up to `signin_max_delay`. It does not apply at an address from which this
  account has signed in (remembered for 30 days), so a stranger's failures never slow the
  person down where they usually sign in, and a new address waits at most a minute.

The counts live in the database (table `signin_counts`), so every server process and host
shares them: wrong guesses spread over several processes meet one limit. A try is reserved
BEFORE its password is hashed and counts as a failure until its outcome is known, so a burst
of simultaneous guesses gets no more answers than the limit. The reservation is one
transaction that reads the counts and writes each back only if its `version` is still the
one read (a conditional UPDATE, or an INSERT that a unique key guards), so two processes
reserving at once cannot both pass on the same count: the loser reads again. A reservation
whose process died before deciding stops counting after PENDING_SECONDS. A success clears
its own `own` count only. Refused tries write nothing. Rows are named by a sha256 of their
key, so the table holds no e-mail or address in clear; `prune()` (every minute, from the
app) drops forgotten counts and keeps the table at `max_entries`."""

from __future__ import annotations

import hashlib
import ipaddress
import math
import time
from dataclasses import dataclass

from sqlalchemy import and_, case, delete, func, select, update
from sqlalchemy.exc import IntegrityError

from pen_server.models import SignInCount
from pen_server.text import plural

KNOWN_SECONDS = 30 * 86400
PENDING_SECONDS = 120.0  # longer than any sign-in takes (hashing is bounded by its queue)
_WHY = {"own": "Too many failed sign-ins for this account",
        "account": "Too many failed sign-ins for this account from several places",
        "address": "Too many failed sign-ins from your network"}
C = SignInCount


class RateLimited(Exception):
    def __init__(self, wait: int, why: str):
        super().__init__(why)
        self.wait, self.why = wait, why


@dataclass
class Rule:
    free: int          # failures before any delay
    max_delay: float   # seconds; the delay doubles from 1 s up to this

    def delay(self, failures: int) -> float:
        """Seconds after the last failure before the next try, with `failures` on record."""
        if failures < self.free:
            return 0.0
        return float(min(self.max_delay, 2 ** min(failures - self.free, 62)))


def address_key(address: str | None) -> tuple[str | None, bool]:
    """(the key the address is counted under, is it loopback?). IPv6 clients are counted per
    /64: one host commonly holds a whole /64."""
    if not address:
        return None, False
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address, False
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.version == 6:
        return str(ipaddress.ip_network(f"{ip}/64", strict=False)), ip.is_loopback
    return str(ip), ip.is_loopback


def _key(*parts: str) -> str:
    return hashlib.sha256("\x00".join(parts).encode("utf-8", "surrogatepass")).hexdigest()


class _Raced(Exception):
    """Another process changed a count between our read and our write: read again."""


class SignInLimiter:
    def __init__(self, db, own: Rule, address: Rule, account: Rule, forget_after: float = 900.0,
                 max_entries: int = 50_000):
        self.db = db
        self.rules = {"own": own, "address": address, "account": account}
        self.forget_after, self.max_entries = forget_after, max_entries

    def _pending(self, row: SignInCount, now: float) -> int:
        return row.pending if now - row.pending_at < PENDING_SECONDS else 0

    def _forgotten(self, row: SignInCount, now: float) -> bool:
        return self._pending(row, now) == 0 and now - row.last_at > self.forget_after

    def _wait(self, kind: str, row: SignInCount | None, now: float) -> float:
        """0 when a try may start now, else seconds to wait (an undecided try counts as a
        failure, so past the free ones only one try at a time runs)."""
        if row is None or self._forgotten(row, now):
            return 0.0
        rule, pending = self.rules[kind], self._pending(row, now)
        if row.failures + pending < rule.free:
            return 0.0
        if pending:
            return 1.0
        return max(0.0, row.last_at + rule.delay(row.failures) - now)

    @staticmethod
    def _keys(account: str, address: str | None) -> tuple[list[tuple[str, str]], str | None]:
        """The (kind, key) counted for this try, and the key of 'signed in from here'."""
        where, loopback = address_key(address)
        if where is None:
            return [("account", _key("account", account))], None
        keys = [("own", _key("own", account, where))]
        if not loopback:  # every client of a local proxy arrives from loopback: not one guesser
            keys.append(("address", _key("address", where)))
        keys.append(("account", _key("account", account)))
        return keys, _key("known", account, where)

    def reserve(self, account: str, address: str | None) -> Attempt:
        """Counts a try for the account and the address, or raises RateLimited."""
        keys, known = self._keys(account, address)
        for _ in range(10):
            try:
                return Attempt(self, self._reserve(keys, known), known)
            except (_Raced, IntegrityError):
                continue
        raise RateLimited(1, "Too many sign-ins for this account at this moment; wait 1 second and try again.")

    def _reserve(self, keys: list[tuple[str, str]], known: str | None) -> list[tuple[str, str]]:
        now = time.time()
        with self.db.session() as session:
            wanted = [k for _, k in keys] + ([known] if known else [])
            rows = {r.key_hash: r for r in session.scalars(select(C).where(C.key_hash.in_(wanted)))}
            seen = rows.get(known) if known else None
            if seen is not None and now - seen.last_at <= KNOWN_SECONDS:
                keys = [(kind, k) for kind, k in keys if kind != "account"]
            # A refused try writes nothing, so refused floods cannot crowd out real counts.
            wait, kind = max((self._wait(kind, rows.get(k), now), kind) for kind, k in keys)
            if wait > 0:
                seconds = max(1, math.ceil(wait))
                raise RateLimited(seconds, f"{_WHY[kind]}; wait {plural(seconds, 'second')} and try again.")
            for kind, k in keys:
                row = rows.get(k)
                if row is None:
                    session.add(C(key_hash=k, kind=kind, failures=0, pending=1, last_at=now, pending_at=now,
                                  version=1))
                    continue
                values: dict = {"pending": self._pending(row, now) + 1, "pending_at": now,
                                "version": row.version + 1}
                if self._forgotten(row, now):
                    values.update(failures=0, last_at=now)
                done = session.execute(update(C).where(C.key_hash == k, C.version == row.version).values(**values)
                                       .execution_options(synchronize_session=False)).rowcount
                if done != 1:
                    raise _Raced
            session.flush()
        return keys

    def _settle(self, keys: list[tuple[str, str]], known: str | None, failed: bool, succeeded: bool) -> None:
        now = time.time()
        with self.db.session() as session:
            for kind, k in keys:
                values: dict = {"pending": case((C.pending > 0, C.pending - 1), else_=0), "version": C.version + 1}
                if failed:
                    values.update(failures=C.failures + 1, last_at=now)
                elif succeeded and kind == "own":
                    values["failures"] = 0
                session.execute(update(C).where(C.key_hash == k).values(**values)
                                .execution_options(synchronize_session=False))
            found = 0
            if succeeded and known:
                found = session.execute(update(C).where(C.key_hash == known).values(last_at=now)
                                        .execution_options(synchronize_session=False)).rowcount
        if succeeded and known and not found:
            try:
                with self.db.session() as session:
                    session.add(C(key_hash=known, kind="known", failures=0, pending=0, last_at=now, pending_at=0.0,
                                  version=0))
            except IntegrityError:  # another process remembered it at the same moment
                pass

    def prune(self) -> int:
        """Drops forgotten counts, then the oldest rows past `max_entries`; how many went."""
        now = time.time()
        undecided = and_(C.pending > 0, C.pending_at >= now - PENDING_SECONDS)
        with self.db.session() as session:
            gone = session.execute(delete(C).where(C.kind != "known", C.last_at < now - self.forget_after,
                                                   ~undecided)).rowcount
            gone += session.execute(delete(C).where(C.kind == "known", C.last_at < now - KNOWN_SECONDS)).rowcount
            excess = session.scalar(select(func.count()).select_from(C)) - self.max_entries
            if excess > 0:
                oldest = select(C.key_hash).where(~undecided) \
                    .order_by(C.last_at).limit(excess).scalar_subquery()
                gone += session.execute(delete(C).where(C.key_hash.in_(oldest))
                                        .execution_options(synchronize_session=False)).rowcount
        return gone


class Attempt:
    """One reserved try: exactly one of failed, succeeded or cancelled must follow."""

    def __init__(self, limiter: SignInLimiter, keys: list[tuple[str, str]], known: str | None = None):
        self._limiter, self._keys, self._known, self._open = limiter, keys, known, True

    def _close(self, failed: bool, succeeded: bool) -> None:
        if self._open:
            self._open = False
            self._limiter._settle(self._keys, self._known, failed, succeeded)

    def failed(self) -> None:
        self._close(True, False)

    def succeeded(self) -> None:
        self._close(False, True)

    def cancelled(self) -> None:
        """The try was not decided (the server was busy): it counts for nothing."""
        self._close(False, False)
