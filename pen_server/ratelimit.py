"""Failed sign-ins, per account and per client address, as growing delays.

An attempt is reserved under the lock BEFORE its password is hashed, and counts as a failure
until its outcome is known, so that a burst of simultaneous guesses gets no more answers than
the limit. A stranger's failures can only slow an account down (a delay that doubles up to
`account_max_delay`, a minute by default), never lock its owner out; the guesser's own
address is slowed far harder (`address_max_delay`, fifteen minutes by default)."""

from __future__ import annotations

import ipaddress
import math
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass


class RateLimited(Exception):
    def __init__(self, wait: int, why: str):
        super().__init__(why)
        self.wait, self.why = wait, why


@dataclass
class Rule:
    free: int          # failures before any delay
    max_delay: float   # seconds; the delay doubles from 1 s up to this


@dataclass
class _Entry:
    failures: int = 0
    last: float = 0.0   # when the last failure was recorded (or the entry made)
    pending: int = 0    # attempts reserved and not yet decided


def address_key(address: str | None) -> str | None:
    """IPv6 clients are counted per /64: one host commonly holds a whole /64."""
    if not address:
        return None
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.version == 6:
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


class SignInLimiter:
    def __init__(self, account: Rule, address: Rule, forget_after: float = 900.0, max_entries: int = 50_000):
        self.rules = {"account": account, "address": address}
        self.forget_after, self.max_entries = forget_after, max_entries
        self._entries: OrderedDict[tuple[str, str], _Entry] = OrderedDict()
        self._lock = threading.Lock()

    def delay(self, kind: str, failures: int) -> float:
        """Seconds after the last failure before the next try, with `failures` on record."""
        rule = self.rules[kind]
        if failures < rule.free:
            return 0.0
        return float(min(rule.max_delay, 2 ** min(failures - rule.free, 62)))

    def _wait(self, kind: str, entry: _Entry, now: float) -> float:
        """0 when a try may start now, else seconds to wait (an undecided try counts as a
        failure, so only one try at a time runs past the free ones)."""
        rule = self.rules[kind]
        if entry.failures + entry.pending < rule.free:
            return 0.0
        if entry.pending:
            return 1.0
        return max(0.0, entry.last + self.delay(kind, entry.failures) - now)

    def _entry(self, key: tuple[str, str], now: float) -> _Entry:
        entry = self._entries.get(key)
        if entry is None or (entry.pending == 0 and now - entry.last > self.forget_after):
            entry = _Entry(last=now)
        self._entries[key] = entry
        self._entries.move_to_end(key)
        return entry

    def _prune(self, now: float) -> None:
        """Forgotten entries go, oldest first; past max_entries the oldest idle ones go too,
        so a stranger sending endless new addresses cannot grow memory without bound."""
        stale = []
        for key, entry in self._entries.items():
            crowded = len(self._entries) - len(stale) > self.max_entries
            if entry.pending:
                continue
            if not crowded and now - entry.last <= self.forget_after:
                break
            stale.append(key)
        for key in stale:
            del self._entries[key]

    def reserve(self, account: str, address: str | None) -> "Attempt":
        """Counts a try for the account and the address, or raises RateLimited."""
        now = time.monotonic()
        keys = [("account", account)] + ([("address", address_key(address))] if address else [])
        with self._lock:
            self._prune(now)
            entries = [(kind, self._entry((kind, ident), now)) for kind, ident in keys]
            waits = [(self._wait(kind, entry, now), kind) for kind, entry in entries]
            wait, kind = max(waits)
            if wait > 0:
                why = ("Too many failed sign-ins from your network" if kind == "address"
                       else "Too many failed sign-ins for this account")
                raise RateLimited(max(1, math.ceil(wait)), f"{why}; wait {max(1, math.ceil(wait))} seconds and try again.")
            for _kind, entry in entries:
                entry.pending += 1
        return Attempt(self, [entry for _kind, entry in entries])

    def _settle(self, entries: list[_Entry], failed: bool, succeeded: bool) -> None:
        now = time.monotonic()
        with self._lock:
            for i, entry in enumerate(entries):
                entry.pending -= 1
                if failed:
                    entry.failures += 1
                    entry.last = now
                elif succeeded and i == 0:  # the account's own count; never the address's
                    entry.failures = 0


class Attempt:
    """One reserved try: exactly one of failed, succeeded or cancelled must follow."""

    def __init__(self, limiter: SignInLimiter, entries: list[_Entry]):
        self._limiter, self._entries, self._open = limiter, entries, True

    def _close(self, failed: bool, succeeded: bool) -> None:
        if self._open:
            self._open = False
            self._limiter._settle(self._entries, failed, succeeded)

    def failed(self) -> None:
        self._close(True, False)

    def succeeded(self) -> None:
        self._close(False, True)

    def cancelled(self) -> None:
        """The try was not decided (the server was busy): it counts for nothing."""
        self._close(False, False)
