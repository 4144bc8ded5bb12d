"""Passwords (argon2id), opaque tokens (stored as sha256), and the sign-in rate limit."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
import time

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()  # argon2id with the library's current parameters
# Verified against when the account does not exist, so both cases take as long.
_DUMMY_HASH = _hasher.hash(secrets.token_hex(16))


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(stored: str | None, password: str) -> bool:
    try:
        return _hasher.verify(stored or _DUMMY_HASH, password) and stored is not None
    except (VerificationError, InvalidHashError):
        return False


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


class LoginLimiter:
    """Failed sign-ins per account in a sliding window; checked before any hashing."""

    def __init__(self, max_failures: int = 5, window: float = 300.0):
        self.max_failures, self.window = max_failures, window
        self._failures: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> list[float]:
        stamps = [t for t in self._failures.get(key, []) if now - t < self.window]
        if stamps:
            self._failures[key] = stamps
        else:
            self._failures.pop(key, None)
        return stamps

    def retry_after(self, key: str) -> int:
        """Seconds to wait, or 0 when a try is allowed."""
        now = time.monotonic()
        with self._lock:
            stamps = self._recent(key, now)
            if len(stamps) < self.max_failures:
                return 0
            return max(1, int(self.window - (now - stamps[0])) + 1)

    def failed(self, key: str) -> None:
        with self._lock:
            self._failures.setdefault(key, []).append(time.monotonic())

    def succeeded(self, key: str) -> None:
        with self._lock:
            self._failures.pop(key, None)
