"""Signing in without a screen where possible: a remembered refresh token from the keyring,
then `password_command`, then `PENMAIL_PASSWORD`; otherwise the caller shows the sign-in
screen. No Textual here.

A session that remembers its sign-in shares the keyring entry with every other penmail
process of the same account (a TUI, line-mode commands, another TUI). Each refresh
therefore runs under that account's ``RefreshLock`` (across processes; waited for in a
thread): re-read the keyring, refresh with the token stored there when it differs from ours
(another process rotated it, so ours is dead and would revoke the whole sign-in), store the
new token, release. Where no keyring works, the same holds for the private token file that
`penmail login` keeps instead (tui.signin.token_file.SignInStore). Without either (none, switched
off, or "remember me" off) a session refreshes with its own token, as before."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass

from tui.config import Config
from tui.pen_client import NotSignedIn, PenClient, PenError
from tui.signin.credentials import (
    REFRESH_LOCK_TIMEOUT,
    CredentialError,
    RefreshLock,
    import_keyring,
    password_from_fallbacks,
)
from tui.signin.token_file import SignInStore


@dataclass
class Outcome:
    client: PenClient | None  # signed in, or None: show the sign-in screen
    notice: str | None = None  # one sentence worth telling once (keyring missing, ...)
    error: str | None = None  # why the automatic sign-in failed


class Session:
    """One account on one PEN, and where its sign-in is remembered."""

    def __init__(self, server: str, email: str, ca_file=None, *, remember: bool = True,
                 use_keyring: bool = True, keyring_timeout: float = 3.0,
                 refresh_lock_timeout: float = REFRESH_LOCK_TIMEOUT, may_create_file: bool = False):
        self.server, self.email, self.ca_file, self.remember = server, email, ca_file, remember
        self.use_keyring = use_keyring
        # The keyring, else a private file (which only `penmail login` creates: may_create_file).
        self.store = SignInStore(server, email, timeout=keyring_timeout, may_create=may_create_file)
        self.refresh_lock = RefreshLock(self.store.username, timeout=refresh_lock_timeout)
        self.client = PenClient(server, ca_file=ca_file, on_refresh_token=self._token_changed,
                                refresh_guard=self._refresh_guard)
        self._pending: set[asyncio.Future] = set()
        self._refreshing_with: str | None = None  # the token of the refresh under way, if shared

    @property
    def shares_keyring(self) -> bool:
        """True when the sign-in lives in the keyring (or the file kept when there is none),
        where other processes use it too."""
        return self.use_keyring and self.remember and self.store.available

    @contextlib.asynccontextmanager
    async def _refresh_guard(self, ours: str) -> AsyncIterator[str | None]:
        """PenClient's refresh_guard: under the account's lock, the freshest token."""
        if not self.shares_keyring:
            yield ours
            return
        fd = await self._lock()
        try:
            stored = await asyncio.to_thread(self.store.load_refresh_token)
            # A different stored token: another process rotated ours (or signed in anew).
            # None (forgotten, or the keyring failed just now): ours is all there is.
            token = stored or ours
            self._refreshing_with = token
            yield token
        finally:
            self._refreshing_with = None
            await self._unlock_after_stores(fd)

    async def _lock(self) -> int | None:
        """The refresh lock, waited for in a thread; a cancelled wait lets go of it."""
        cancelled = threading.Event()
        future = asyncio.get_running_loop().run_in_executor(None, self.refresh_lock.acquire, cancelled)
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            cancelled.set()
            future.add_done_callback(
                lambda f: None if f.cancelled() or f.exception() else RefreshLock.release(f.result()))
            raise

    async def _unlock_after_stores(self, fd: int | None) -> None:
        """Release once the new token is in the keyring (also when we are cancelled), so
        the next process to take the lock reads it."""
        if fd is None:
            return
        if not self._pending:
            RefreshLock.release(fd)
            return
        stored = asyncio.gather(*self._pending, return_exceptions=True)
        stored.add_done_callback(lambda _: RefreshLock.release(fd))
        await asyncio.shield(stored)

    def _forget_unless_replaced(self, dead: str) -> bool:
        # The refresh failed: forget the stored token only if it is the one that failed, not
        # one another process has stored meanwhile.
        if self.store.load_refresh_token() in (dead, None):
            return self.store.forget()
        return False

    def _token_changed(self, token: str | None) -> None:
        # The keyring may be slow: store from a thread, never on the event loop.
        if not self.use_keyring:
            return
        args: tuple = ()
        call: Callable[..., object]
        if token is None and self._refreshing_with is not None:
            call, args = self._forget_unless_replaced, (self._refreshing_with,)
        elif token is None:
            call = self.store.forget
        elif self.remember:
            call, args = self.store.save_refresh_token, (token,)
        else:
            return
        try:
            future = asyncio.get_running_loop().run_in_executor(None, call, *args)
        except RuntimeError:
            call(*args)
            return
        self._pending.add(future)
        future.add_done_callback(self._pending.discard)

    async def settle(self) -> None:
        """Wait until the keyring has what it should (before quitting)."""
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)

    async def login(self, password: str) -> None:
        await self.client.login(self.email, password)

    async def resume(self) -> bool:
        if not self.use_keyring:
            return False
        import_keyring()
        token = await asyncio.to_thread(self.store.load_refresh_token)
        if not token:
            return False
        try:
            await self.client.resume(token)
            return True
        except NotSignedIn:
            return False

    async def sign_out(self) -> None:
        await self.settle()  # a rotated token still being stored must land before we forget
        await self.client.logout()
        await self.settle()
        if self.use_keyring:
            await asyncio.to_thread(self.store.forget)


def open_session(config: Config, use_keyring: bool = True) -> Session:
    """The session for the configured account, not signed in yet (no network). Raises
    PenError when the configuration cannot make one (a CA file that cannot be read, ...)."""
    return Session(config.server, config.email, config.ca_file, use_keyring=use_keyring, remember=use_keyring)


async def sign_in_quietly(config: Config, env: Mapping[str, str] | None = None,
                          use_keyring: bool = True, session: Session | None = None
                          ) -> tuple[Session | None, Outcome]:
    """Try every way that needs no screen, in order (with `session`, if given, else a new one)."""
    env = os.environ if env is None else env
    if not config.server or not config.email:
        return None, Outcome(None)
    if session is None:
        try:
            session = open_session(config, use_keyring)
        except PenError as exc:
            return None, Outcome(None, error=exc.message)
    try:
        if await session.resume():
            return session, Outcome(session.client, notice=session.store.problem)
        password = await asyncio.to_thread(password_from_fallbacks, config, env)
        if password:
            await session.login(password)
            return session, Outcome(session.client, notice=session.store.problem)
    except CredentialError as exc:
        return session, Outcome(None, notice=session.store.problem, error=str(exc))
    except PenError as exc:
        return session, Outcome(None, notice=session.store.problem, error=exc.message)
    return session, Outcome(None, notice=session.store.problem)
