"""Signing in without a screen where possible: a remembered refresh token from the keyring,
then `password_command`, then `PENMAIL_PASSWORD`; otherwise the caller shows the sign-in
screen. No Textual here."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from dataclasses import dataclass

from tui.config import Config
from tui.credentials import CredentialError, CredentialStore, import_keyring, password_from_fallbacks
from tui.pen_client import NotSignedIn, PenClient, PenError


@dataclass
class Outcome:
    client: PenClient | None  # signed in, or None: show the sign-in screen
    notice: str | None = None  # one sentence worth telling once (keyring missing, ...)
    error: str | None = None  # why the automatic sign-in failed


class Session:
    """One account on one PEN, and where its sign-in is remembered."""

    def __init__(self, server: str, email: str, ca_file=None, *, remember: bool = True,
                 use_keyring: bool = True, keyring_timeout: float = 3.0):
        self.server, self.email, self.ca_file, self.remember = server, email, ca_file, remember
        self.use_keyring = use_keyring
        self.store = CredentialStore(server, email, timeout=keyring_timeout)
        self.client = PenClient(server, ca_file=ca_file, on_refresh_token=self._token_changed)
        self._pending: set[asyncio.Future] = set()

    def _token_changed(self, token: str | None) -> None:
        # The keyring may be slow: store from a thread, never on the event loop.
        if not self.use_keyring:
            return
        if token is None:
            call = self.store.forget
            args: tuple = ()
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
