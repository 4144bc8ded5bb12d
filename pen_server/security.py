"""Passwords (argon2id), opaque tokens (stored as sha256), and the bounded pool that every
password hash of the running server goes through."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
from concurrent.futures import ThreadPoolExecutor

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError

# argon2id at OWASP's minimum (m = 19 MiB, t = 2, p = 1) instead of the library's 64 MiB:
# a hash costs a third of the memory, so the pool below can run two at once in under
# 40 MiB, and the cost per guess (time x memory) stays at the level OWASP deems safe.
# Stored hashes with other parameters are rehashed at their owner's next sign-in.
MEMORY_KIB, TIME_COST, PARALLELISM = 19 * 1024, 2, 1
# The test cost (PEN_PASSWORD_COST=test, settings.password_cost_from_environment): argon2id
# at its smallest, 8 KiB and one pass, about a hundredth of the standard cost. For test suites
# that sign in thousands of times, as Django's test settings swap in a fast hasher; never for
# a real PEN, where a stolen hash would then cost a guesser almost nothing (`pen-server run`
# says so in its log). A hash made at one cost is rehashed at the other's next sign-in.
COSTS = {"standard": (MEMORY_KIB, TIME_COST, PARALLELISM), "test": (8, 1, 1)}


def _hasher_at(cost: str) -> PasswordHasher:
    memory, time, parallelism = COSTS[cost]
    return PasswordHasher(time_cost=time, memory_cost=memory, parallelism=parallelism, hash_len=32, salt_len=16,
                          type=Type.ID)


_cost = "standard"
_hasher = _hasher_at(_cost)
# Verified against when the account does not exist, so both cases take as long: made with
# the same parameters as every real hash, on first need (a command that hashes nothing
# never pays for it).
_dummy_hash: str | None = None


def use_cost(cost: str) -> None:
    """The process's hashing cost from now on ("standard" or "test"), set once by the command
    at start (pen_server.cli.main) or by a test harness running the app in its process."""
    global _cost, _hasher, _dummy_hash
    if cost != _cost:
        _cost, _hasher, _dummy_hash = cost, _hasher_at(cost), None


def cost() -> str:
    return _cost


def _dummy() -> str:
    global _dummy_hash
    if _dummy_hash is None:
        _dummy_hash = _hasher.hash(secrets.token_hex(16))
    return _dummy_hash


def ready() -> None:
    """Make the dummy hash now: an app calls this before it takes requests, so that the first
    sign-in to an unknown account takes no longer than any other."""
    _dummy()


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(stored: str | None, password: str) -> bool:
    try:
        return _hasher.verify(stored or _dummy(), password) and stored is not None
    except (VerificationError, InvalidHashError):
        return False


def verify_and_upgrade(stored: str | None, password: str) -> tuple[bool, str | None]:
    """(right password?, a new hash when the stored one has older parameters)."""
    if not verify_password(stored, password):
        return False, None
    return True, (_hasher.hash(password) if _hasher.check_needs_rehash(stored) else None)


class HashPoolBusy(Exception):
    """Every hashing slot and waiting place is taken."""


class HashPool:
    """At most `workers` argon2 hashes at once (so memory is workers x 19 MiB), in threads
    of their own (so the routes' thread pool stays free), and at most `queue` waiting;
    past that `run` raises HashPoolBusy at once instead of queueing without bound."""

    def __init__(self, workers: int = 2, queue: int = 8):
        self.workers, self.queue = workers, queue
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="argon2")
        self._admitted = 0
        self._lock = threading.Lock()

    def run(self, fn, *args):
        with self._lock:
            if self._admitted >= self.workers + self.queue:
                raise HashPoolBusy()
            self._admitted += 1
        try:
            return self._executor.submit(fn, *args).result()
        finally:
            with self._lock:
                self._admitted -= 1

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


def new_token() -> str:
    """256 random bits, URL-safe."""
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def derived_token(secret: bytes, purpose: str, ident: str) -> str:
    """A token that the server can make again (so a retried notification carries the same
    link) but that is only stored hashed."""
    mac = hmac.new(secret, f"{purpose}:{ident}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()
