"""Remembering a sign-in, and finding a password without asking.

Owns two things:

* ``CredentialStore`` keeps the *refresh token* (never the password, never in a plain
  file) in the system keyring through ``keyring``, under service "penmail" and user name
  ``"<server>|<email>"``.  On SSH sessions there is usually no keyring at all (keyring
  falls back to a backend that raises), and sometimes a locked one whose unlock prompt
  nobody can see, so a call would hang.  Every keyring call therefore runs in a daemon
  thread with a timeout; a call that does not come back is abandoned, and the store then
  stops using the keyring and explains why in ``problem`` -- one sentence for the person.
* ``password_from_fallbacks`` runs the configured ``password_command`` (no shell) or
  reads ``PENMAIL_PASSWORD``; None means "show the sign-in screen".

Several processes share one keyring entry (the TUI, line-mode commands in another
terminal, a second TUI).  The server rotates the refresh token on every use, and a dead
one presented again revokes the whole sign-in, so a process must never refresh with a token
another process has already used.  ``RefreshLock`` is an advisory lock across processes
(``fcntl.flock`` on ``refresh-<hash of the user name>.lock`` in penmail's state folder,
given up after a timeout, skipped where there is no fcntl); ``tui.signin.session.Session`` holds
it while it re-reads the keyring, refreshes with the token found there when another
process has rotated it, and stores the new token.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import subprocess
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tui.files import lock_within

try:  # POSIX
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

# keyring is imported when first needed (~40 ms, importlib_metadata on Python 3.11): a
# start-up that shows the sign-in screen, or runs without a keyring, does not pay for it.

__all__ = ["CredentialError", "CredentialStore", "RefreshLock", "SERVICE", "password_from_fallbacks"]

SERVICE = "penmail"
PASSWORD_COMMAND_TIMEOUT = 10.0
REFRESH_LOCK_TIMEOUT = 30.0
_FALLBACK = "so penmail cannot remember your sign-in; it will use password_command, PENMAIL_PASSWORD or ask each time."
NO_KEYRING = f"No system keyring is available, {_FALLBACK}"
LOCKED = f"The system keyring is locked, {_FALLBACK}"


def import_keyring() -> None:
    """Import keyring now, on the calling thread. Call it on the event loop before the first
    keyring call: a first import inside the keyring thread, while the UI lays out its first
    screen, fights the UI for the GIL at every file it reads and took four times as long."""
    import keyring  # noqa: F401


class CredentialError(Exception):
    """A password source failed; ``str(error)`` is one sentence for the person."""


class _Unusable(Exception):
    """The configured backend cannot store anything (fail, null or an empty chain)."""


def _unusable(backend: Any) -> bool:
    from keyring.backends import chainer, fail, null

    if isinstance(backend, (fail.Keyring, null.Keyring)):
        return True
    # An empty chain answers None to everything and stores nothing, like null.
    return isinstance(backend, chainer.ChainerBackend) and not backend.backends


class CredentialStore:
    """The refresh token for one account on one server, in the system keyring."""

    def __init__(self, server: str, email: str, timeout: float = 3.0) -> None:
        self.service = SERVICE
        # Normalised so "https://pen.example/" and "Ann@..." find the same entry.
        self.username = f"{server.strip().rstrip('/')}|{email.strip().lower()}"
        self.timeout = timeout
        self._problem: str | None = None
        self._lock = threading.Lock()

    @property
    def problem(self) -> str | None:
        """Why the keyring is not being used, once a call has failed; else None."""
        return self._problem

    @property
    def available(self) -> bool:
        """False once a keyring call has failed; later calls then return at once."""
        return self._problem is None

    def load_refresh_token(self) -> str | None:
        ok, value = self._call("get_password")
        return value if ok and isinstance(value, str) and value else None

    def save_refresh_token(self, token: str) -> bool:
        if not isinstance(token, str) or not token:
            return False
        ok, _ = self._call("set_password", token)
        return ok

    def forget(self) -> bool:
        """Remove the stored token; True when none is stored afterwards (as far as we know)."""
        ok, _ = self._call("delete_password")
        return ok

    def _fail(self, sentence: str) -> None:
        with self._lock:
            if self._problem is None:
                self._problem = sentence

    def _call(self, method: str, *args: str) -> tuple[bool, Any]:
        if self._problem is not None:
            return False, None
        box: dict[str, Any] = {}
        done = threading.Event()

        def work() -> None:
            try:
                import keyring

                backend = keyring.get_keyring()  # discovery itself may be slow or hang (D-Bus)
                if _unusable(backend):
                    raise _Unusable
                box["value"] = getattr(backend, method)(self.service, self.username, *args)
            except BaseException as e:
                box["error"] = e
            finally:
                done.set()

        # A daemon thread, not an executor: executor threads are joined at exit, so one
        # stuck in a keyring prompt would stop penmail from quitting.
        threading.Thread(target=work, name="penmail-keyring", daemon=True).start()
        if not done.wait(self.timeout):
            self._fail(
                f"The system keyring did not answer within {self.timeout:g} seconds (it may be locked), {_FALLBACK}"
            )
            return False, None
        error = box.get("error")
        if error is None:
            return True, box.get("value")
        import keyring.errors  # already imported by the thread, which got this far

        if method == "delete_password" and isinstance(error, keyring.errors.PasswordDeleteError):
            return True, None  # nothing was stored: forgetting succeeded
        if isinstance(error, (_Unusable, keyring.errors.NoKeyringError)):
            self._fail(NO_KEYRING)
        elif isinstance(error, keyring.errors.KeyringLocked):
            self._fail(LOCKED)
        else:
            # The class name only: a backend's message may be long, technical or odd.
            self._fail(f"The system keyring reported an error ({type(error).__name__}), {_FALLBACK}")
        return False, None


class RefreshLock:
    """One account's refresh, one process at a time: an advisory ``flock`` on a file of its
    own in the state folder (its name a hash of the keyring user name, so no address or
    e-mail shows in it).  ``acquire`` blocks (call it in a thread) until the lock is held,
    the timeout passes or ``cancelled`` is set; it returns the open file to hand to
    ``release``, or None when it goes on without the lock: no fcntl, no state folder, a
    file system without locks, or a holder that did not let go in time (better to refresh
    unguarded than to hang)."""

    def __init__(self, username: str, timeout: float = REFRESH_LOCK_TIMEOUT,
                 folder: Path | None = None) -> None:
        self.name = "refresh-" + hashlib.sha256(username.encode("utf-8")).hexdigest()[:32] + ".lock"
        self.timeout = timeout
        self.folder = folder

    def path(self) -> Path | None:
        if self.folder is not None:
            return self.folder / self.name
        from tui.config import state_dir

        try:
            return state_dir() / self.name
        except OSError:
            return None

    def acquire(self, cancelled: threading.Event | None = None) -> int | None:
        if fcntl is None:
            return None
        path = self.path()
        if path is None:
            return None
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
        except OSError:
            return None
        if lock_within(fd, self.timeout, stop=cancelled, poll=0.02):
            return fd
        os.close(fd)
        return None

    @staticmethod
    def release(fd: int | None) -> None:
        if fd is not None:
            os.close(fd)  # closing the only descriptor of the open file releases the flock


def password_from_fallbacks(config: Any, env: Mapping[str, str] | None = None) -> str | None:
    """The password from ``config.password_command``, else ``$PENMAIL_PASSWORD``, else None.

    The command is split with ``shlex`` and run without a shell, with no input, for at
    most 10 seconds; the first line it prints is the password.  Run this before the
    full-screen app starts if the command may prompt on the terminal (gpg, pass).
    """
    env = os.environ if env is None else env
    command = getattr(config, "password_command", None)
    if command:
        return _run_password_command(command)
    password = env.get("PENMAIL_PASSWORD")
    return password or None


def _run_password_command(command: str) -> str:
    try:
        argv = shlex.split(command)
    except ValueError:
        raise CredentialError("The password_command cannot be split into words; check its quotes.") from None
    if not argv:
        raise CredentialError("The password_command is empty.")
    try:
        done = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=PASSWORD_COMMAND_TIMEOUT,
            check=False,
        )
    except FileNotFoundError:
        raise CredentialError(f"The password_command program {argv[0]!r} was not found.") from None
    except PermissionError:
        raise CredentialError(f"The password_command program {argv[0]!r} cannot be run (permission denied).") from None
    except subprocess.TimeoutExpired:
        raise CredentialError(
            f"The password_command did not finish within {PASSWORD_COMMAND_TIMEOUT:g} seconds."
        ) from None
    except OSError as e:
        raise CredentialError(f"The password_command could not be started ({e.strerror or e}).") from None
    if done.returncode != 0:
        # Its stderr is not shown: it may echo parts of a secret store's contents.
        raise CredentialError(f"The password_command failed with exit status {done.returncode}.")
    try:
        out = done.stdout.decode("utf-8")
    except UnicodeDecodeError:
        raise CredentialError("The password_command printed something that is not UTF-8 text.") from None
    # Only "\n" ends the line (str.splitlines would also split on rarer separators).
    password = out.split("\n", 1)[0].removesuffix("\r")
    if not password:
        raise CredentialError("The password_command printed no password on its first line.")
    return password
