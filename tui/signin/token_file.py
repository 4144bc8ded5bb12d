"""A remembered sign-in where no system keyring works (SSH sessions, servers, CI).

``SignInStore`` is what a ``tui.signin.session.Session`` keeps its refresh token in: the system
keyring first, whenever one works (``tui.signin.credentials.CredentialStore``); else a file in
penmail's state folder that only the user can read (mode 0600, written whole and atomically,
its name a hash of the account so no address shows in it), as gh and other command-line
tools do.  Only ``penmail login`` creates the file (``may_create``); every other process
(line-mode commands, the TUI) uses it and keeps it current when it exists, under the same
``RefreshLock`` as the keyring entry, and ``logout`` removes it.
"""

from __future__ import annotations

import contextlib
import hashlib
from pathlib import Path

from tui.files import write_atomic
from tui.signin.credentials import CredentialStore

__all__ = ["SignInStore", "token_file_name"]

_MAX_TOKEN = 4096  # a refresh token is tens of bytes; anything larger is not one of ours


def token_file_name(username: str) -> str:
    return "signin-" + hashlib.sha256(username.encode("utf-8")).hexdigest()[:32] + ".token"


class SignInStore:
    """The refresh token for one account: the keyring, else a private file."""

    def __init__(self, server: str, email: str, timeout: float = 3.0, *, may_create: bool = False,
                 folder: Path | None = None) -> None:
        self.keyring = CredentialStore(server, email, timeout=timeout)
        self.username = self.keyring.username
        self.may_create = may_create
        self.folder = folder
        self.notice: str | None = None  # said once, when the file is first written
        self._file_problem: str | None = None

    # -- where

    def path(self) -> Path | None:
        if self.folder is not None:
            return self.folder / token_file_name(self.username)
        from tui.config import state_dir

        try:
            return state_dir() / token_file_name(self.username)
        except OSError:
            return None

    def _file_usable(self) -> bool:
        path = self.path()
        return path is not None and self._file_problem is None and (self.may_create or path.exists())

    @property
    def in_file(self) -> bool:
        """True when the sign-in is (to be) kept in the file, not the keyring."""
        return not self.keyring.available and self._file_usable()

    @property
    def where(self) -> str:
        return str(self.path()) if self.in_file else "the system keyring"

    @property
    def available(self) -> bool:
        """True when a token stored now would be found by the next process."""
        return self.keyring.available or self._file_usable()

    @property
    def problem(self) -> str | None:
        """Why nothing remembers the sign-in (one sentence), or None."""
        if self.keyring.available or self._file_usable():
            return None
        return self._file_problem or self.keyring.problem

    # -- the token

    def load_refresh_token(self) -> str | None:
        if self.keyring.available:
            token = self.keyring.load_refresh_token()
            if self.keyring.available:
                return token
        return self._read()

    def save_refresh_token(self, token: str) -> bool:
        if not isinstance(token, str) or not token:
            return False
        if self.keyring.available and self.keyring.save_refresh_token(token):
            self._remove()  # the keyring works (again): no copy of the sign-in stays on disk
            return True
        if not self._file_usable():
            return False
        path = self.path()
        new = not path.exists()
        try:
            write_atomic(path, token.encode("utf-8"))  # mode 0600, as mkstemp creates it
        except OSError as e:
            self._file_problem = (f"No system keyring is available and penmail could not write {path} "
                                  f"({e.strerror or type(e).__name__}), so it cannot remember your sign-in.")
            return False
        if new:
            self.notice = (f"No system keyring is available, so the sign-in is kept in {path}, which only you "
                           f"can read; `penmail logout` ends it.")
        return True

    def forget(self) -> bool:
        """Remove the token from the keyring and the file; True when none is stored afterwards."""
        ok = self.keyring.forget() if self.keyring.available else True
        return self._remove() and ok

    # -- the file

    def _read(self) -> str | None:
        path = self.path()
        if path is None:
            return None
        try:
            with open(path, "rb") as f:
                data = f.read(_MAX_TOKEN + 1)
        except OSError:
            return None
        try:
            token = data.decode("ascii").strip()
        except UnicodeDecodeError:
            return None
        return token if token and len(data) <= _MAX_TOKEN else None

    def _remove(self) -> bool:
        path = self.path()
        if path is None:
            return True
        with contextlib.suppress(FileNotFoundError):
            try:
                path.unlink()
            except OSError:
                return False
        return True
