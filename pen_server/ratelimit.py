"""Failed sign-ins as growing delays, counted three ways:

- per account and client address (`own`): the person's own mistakes; 5 free, then the next
  try waits 1, 2, 4 ... seconds, at most `signin_max_delay` (60 s);
- per client address, over all accounts (`address`): a guesser at one address is slowed
  hard; 10 free, then up to `address_max_delay` (15 minutes). Not for loopback, where every
  client of a local reverse proxy without `trusted_proxy` would arrive from;
- per account, over all addresses (`account`): guessing spread over many addresses; 20
  free, then up to `signin_max_delay`. It does not apply at an address from which this
  account has signed in (remembered for 30 days in memory), so a stranger's failures never
  slow the person down where they usually sign in, and a new address waits at most a minute.

A try is reserved under the lock BEFORE its password is hashed and counts as a failure
until its outcome is known, so a burst of simultaneous guesses gets no more answers than
the limit. A success clears its own `own` count only."""

from __future__ import annotations

import ipaddress
import math
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

from pen_server.text import plural

KNOWN_SECONDS = 30 * 86400
_WHY = {"own": "Too many failed sign-ins for this account",
        "account": "Too many failed sign-ins for this account from several places",
        "address": "Too many failed sign-ins from your network"}


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


@dataclass
class _Entry:
    failures: int = 0
    last: float = 0.0   # when the last failure was recorded (or the entry made)
    pending: int = 0    # tries reserved and not yet decided


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


def _evict(table: OrderedDict, max_entries: int, stale) -> None:
    """Drops entries from the oldest end while they are stale or the table is over size."""
    doomed: list = []
    for key, value in table.items():
        crowded = len(table) - len(doomed) > max_entries
        if isinstance(value, _Entry) and value.pending:
            continue
        if not crowded and not stale(value):
            break
        doomed.append(key)
    for key in doomed:
        del table[key]


class SignInLimiter:
    def __init__(self, own: Rule, address: Rule, account: Rule, forget_after: float = 900.0,
                 max_entries: int = 50_000):
        self.rules = {"own": own, "address": address, "account": account}
        self.forget_after, self.max_entries = forget_after, max_entries
        self._entries: OrderedDict[tuple, _Entry] = OrderedDict()
        self._known: OrderedDict[tuple[str, str], float] = OrderedDict()  # (account, address) -> last success
        self._lock = threading.Lock()

    def _wait(self, kind: str, entry: _Entry, now: float) -> float:
        """0 when a try may start now, else seconds to wait (an undecided try counts as a
        failure, so past the free ones only one try at a time runs)."""
        rule = self.rules[kind]
        if entry.failures + entry.pending < rule.free:
            return 0.0
        if entry.pending:
            return 1.0
        return max(0.0, entry.last + rule.delay(entry.failures) - now)

    def _current(self, key: tuple, now: float) -> _Entry | None:
        entry = self._entries.get(key)
        if entry is None or (entry.pending == 0 and now - entry.last > self.forget_after):
            return None
        return entry

    def _entry(self, key: tuple, now: float) -> _Entry:
        entry = self._current(key, now) or _Entry(last=now)
        self._entries[key] = entry
        self._entries.move_to_end(key)
        return entry

    def _keys(self, account: str, address: str | None, now: float) -> list[tuple]:
        where, loopback = address_key(address)
        if where is None:
            return [("account", account)]
        keys: list[tuple] = [("own", account, where)]
        if not loopback:  # every client of a local proxy arrives from loopback: not one guesser
            keys.append(("address", where))
        seen = self._known.get((account, where))
        if seen is None or now - seen > KNOWN_SECONDS:
            keys.append(("account", account))
        return keys

    def reserve(self, account: str, address: str | None) -> Attempt:
        """Counts a try for the account and the address, or raises RateLimited."""
        now = time.monotonic()
        with self._lock:
            _evict(self._entries, self.max_entries, lambda e: now - e.last > self.forget_after)
            _evict(self._known, self.max_entries, lambda seen: now - seen > KNOWN_SECONDS)
            keys = self._keys(account, address, now)
            # A refused try stores nothing, so refused floods cannot crowd out real counts.
            wait, kind = max((self._wait(key[0], self._current(key, now) or _Entry(), now), key[0]) for key in keys)
            if wait > 0:
                seconds = max(1, math.ceil(wait))
                raise RateLimited(seconds, f"{_WHY[kind]}; wait {plural(seconds, 'second')} and try again.")
            entries = [self._entry(key, now) for key in keys]
            for entry in entries:
                entry.pending += 1
        return Attempt(self, keys, entries)

    def _settle(self, keys: list[tuple], entries: list[_Entry], failed: bool, succeeded: bool) -> None:
        now = time.monotonic()
        with self._lock:
            for key, entry in zip(keys, entries):
                entry.pending -= 1
                if failed:
                    entry.failures += 1
                    entry.last = now
                elif succeeded and key[0] == "own":
                    entry.failures = 0
                    self._known[key[1:]] = now
                    self._known.move_to_end(key[1:])


class Attempt:
    """One reserved try: exactly one of failed, succeeded or cancelled must follow."""

    def __init__(self, limiter: SignInLimiter, keys: list[tuple], entries: list[_Entry]):
        self._limiter, self._keys, self._entries, self._open = limiter, keys, entries, True

    def _close(self, failed: bool, succeeded: bool) -> None:
        if self._open:
            self._open = False
            self._limiter._settle(self._keys, self._entries, failed, succeeded)

    def failed(self) -> None:
        self._close(True, False)

    def succeeded(self) -> None:
        self._close(False, True)

    def cancelled(self) -> None:
        """The try was not decided (the server was busy): it counts for nothing."""
        self._close(False, False)
