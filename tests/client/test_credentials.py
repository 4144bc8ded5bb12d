"""tui.signin.credentials: the refresh token in the keyring, and no hang or crash without one."""

from __future__ import annotations

import shlex
import sys
import threading
import time
from collections.abc import Iterator

import keyring
import keyring.errors
import pytest
from keyring.backend import KeyringBackend
from keyring.backends import fail, null

import tui.signin.credentials as credentials
from tui.config import Config
from tui.signin.credentials import (
    LOCKED,
    NO_KEYRING,
    CredentialError,
    CredentialStore,
    password_from_fallbacks,
)

SERVER = "https://pen.example:8443"
EMAIL = "ann@pen.example"


class MemoryKeyring(KeyringBackend):
    """A real, working backend that keeps everything in a dict."""

    priority = 1  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self.entries: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.entries.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.entries[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        try:
            del self.entries[(service, username)]
        except KeyError:
            raise keyring.errors.PasswordDeleteError("not found") from None


class HangingKeyring(MemoryKeyring):
    """Like a locked keyring whose unlock prompt nobody can see."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def get_password(self, service: str, username: str) -> str | None:
        self.calls += 1
        time.sleep(10)
        return None


class LockedKeyring(MemoryKeyring):
    def get_password(self, service: str, username: str) -> str | None:
        raise keyring.errors.KeyringLocked("locked")


class BrokenKeyring(MemoryKeyring):
    def set_password(self, service: str, username: str, password: str) -> None:
        raise RuntimeError("\x1b[2J something odd")


@pytest.fixture(autouse=True)
def restore_keyring() -> Iterator[None]:
    previous = keyring.get_keyring()
    yield
    keyring.set_keyring(previous)


def test_round_trip_in_a_working_keyring() -> None:
    backend = MemoryKeyring()
    keyring.set_keyring(backend)
    store = CredentialStore(SERVER + "/", "Ann@Pen.Example")
    assert store.load_refresh_token() is None
    assert store.save_refresh_token("rt-1") is True
    assert backend.entries == {("penmail", f"{SERVER}|{EMAIL}"): "rt-1"}
    assert CredentialStore(SERVER, EMAIL).load_refresh_token() == "rt-1"
    assert store.save_refresh_token("rt-2") is True  # rotation replaces it
    assert store.load_refresh_token() == "rt-2"
    assert store.forget() is True
    assert store.load_refresh_token() is None
    assert store.forget() is True  # nothing stored is not a failure
    assert store.problem is None and store.available


def test_accounts_do_not_share_entries() -> None:
    keyring.set_keyring(MemoryKeyring())
    CredentialStore(SERVER, EMAIL).save_refresh_token("ann")
    assert CredentialStore(SERVER, "bob@pen.example").load_refresh_token() is None
    assert CredentialStore("https://other.example", EMAIL).load_refresh_token() is None


def test_empty_token_is_not_saved() -> None:
    backend = MemoryKeyring()
    keyring.set_keyring(backend)
    assert CredentialStore(SERVER, EMAIL).save_refresh_token("") is False
    assert backend.entries == {}


@pytest.mark.parametrize("backend", [fail.Keyring(), null.Keyring()], ids=["fail", "null"])
def test_no_keyring_is_explained_once(backend: KeyringBackend) -> None:
    keyring.set_keyring(backend)
    store = CredentialStore(SERVER, EMAIL)
    started = time.monotonic()
    assert store.load_refresh_token() is None
    assert store.save_refresh_token("rt") is False
    assert store.forget() is False
    assert time.monotonic() - started < 2
    assert store.problem == NO_KEYRING
    assert store.problem.count(".") == 1 and store.problem.endswith(".")
    assert not store.available


def test_a_hung_keyring_is_abandoned_within_the_timeout() -> None:
    backend = HangingKeyring()
    keyring.set_keyring(backend)
    store = CredentialStore(SERVER, EMAIL, timeout=0.5)
    started = time.monotonic()
    assert store.load_refresh_token() is None
    assert time.monotonic() - started < 1.5
    assert store.problem is not None and "did not answer within 0.5 seconds" in store.problem
    # Later calls do not start more stuck threads and return at once.
    started = time.monotonic()
    assert store.save_refresh_token("rt") is False
    assert store.load_refresh_token() is None
    assert time.monotonic() - started < 0.1
    assert backend.calls == 1
    stuck = [t for t in threading.enumerate() if t.name == "penmail-keyring"]
    assert stuck and all(t.daemon for t in stuck)  # cannot keep penmail from quitting


def test_locked_keyring() -> None:
    keyring.set_keyring(LockedKeyring())
    store = CredentialStore(SERVER, EMAIL)
    assert store.load_refresh_token() is None
    assert store.problem == LOCKED


def test_other_errors_are_one_plain_sentence() -> None:
    keyring.set_keyring(BrokenKeyring())
    store = CredentialStore(SERVER, EMAIL)
    assert store.save_refresh_token("rt") is False
    assert store.problem is not None
    assert "RuntimeError" in store.problem and "\x1b" not in store.problem


def test_problem_is_set_once() -> None:
    keyring.set_keyring(fail.Keyring())
    store = CredentialStore(SERVER, EMAIL)
    store.load_refresh_token()
    keyring.set_keyring(LockedKeyring())
    store.load_refresh_token()
    assert store.problem == NO_KEYRING


def command(code: str) -> str:
    return shlex.join([sys.executable, "-c", code])


def test_password_command_first_line() -> None:
    config = Config(password_command=command("print('s3cret pw '); print('second line')"))
    assert password_from_fallbacks(config, {"PENMAIL_PASSWORD": "from-env"}) == "s3cret pw "


def test_password_command_runs_without_a_shell() -> None:
    config = Config(password_command=command("import sys; print(sys.argv[1:])") + " '$HOME;' 'rm' '-rf' 'x'")
    assert password_from_fallbacks(config, {}) == "['$HOME;', 'rm', '-rf', 'x']"
    assert password_from_fallbacks(Config(password_command="echo $HOME; echo hi"), {}) == "$HOME; echo hi"


def test_password_command_crlf() -> None:
    config = Config(password_command=command("import sys; sys.stdout.buffer.write(b'pw\\r\\n')"))
    assert password_from_fallbacks(config, {}) == "pw"


@pytest.mark.parametrize(
    ("cmd", "message"),
    [
        (command("import sys; sys.exit(3)"), "The password_command failed with exit status 3."),
        ("/nonexistent/penmail-pass", "The password_command program '/nonexistent/penmail-pass' was not found."),
        (command("pass"), "The password_command printed no password on its first line."),
        (command("import sys; sys.stdout.buffer.write(b'\\xff')"), "not UTF-8"),
        ("pass 'unbalanced", "cannot be split into words"),
    ],
)
def test_password_command_failures(cmd: str, message: str) -> None:
    with pytest.raises(CredentialError) as info:
        password_from_fallbacks(Config(password_command=cmd), {"PENMAIL_PASSWORD": "unused"})
    assert message in str(info.value)


def test_password_command_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(credentials, "PASSWORD_COMMAND_TIMEOUT", 0.5)
    started = time.monotonic()
    with pytest.raises(CredentialError, match="did not finish within 0.5 seconds"):
        password_from_fallbacks(Config(password_command=command("import time; time.sleep(5)")), {})
    assert time.monotonic() - started < 3


def test_env_and_nothing() -> None:
    assert password_from_fallbacks(Config(), {"PENMAIL_PASSWORD": "pw"}) == "pw"
    assert password_from_fallbacks(Config(), {"PENMAIL_PASSWORD": ""}) is None
    assert password_from_fallbacks(Config(), {}) is None
    assert password_from_fallbacks(object(), {}) is None
