"""A remembered sign-in with no system keyring (keyring's fail backend, as over SSH):
`penmail login` keeps the refresh token in a private file in the state folder, other
processes (line mode, the TUI's quiet sign-in) use and rotate it under the refresh lock, and
`penmail logout` ends it on the server and removes the file. Real subprocesses, the real PEN."""

from __future__ import annotations

import asyncio
import stat
from urllib.parse import urlsplit

import pytest

from tests.client.test_line_mode import Line, whoami_at_once
from tests.conftest import PASSWORD


@pytest.fixture
def line(tmp_path, pen) -> Line:
    return Line(tmp_path, pen)


def token_files(line: Line, who: str = "ann") -> list:
    return sorted((line.tmp / f"state-{who}").glob("signin-*.token"))


def refused(pen, token: str) -> bool:
    with pen.client() as c:
        return c.post("/auth/refresh", json={"refresh_token": token}).status_code == 401


def test_login_keeps_the_sign_in_in_a_private_file_list_uses_it_logout_ends_it(line, pen):
    done = line("login", password=None, stdin=PASSWORD + "\n")
    assert done.code == 0, done.err
    [path] = token_files(line)
    assert done.lines == [f"Signed in to {urlsplit(pen.process.url).netloc} as Ann Lee <ann@abc.example>.",
                          f"No system keyring is available, so the sign-in is kept in {path}, which only you "
                          f"can read; `penmail logout` ends it."]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "@" not in path.name  # the account does not show in the name
    first = path.read_text()

    # Another process, no password anywhere: the file's sign-in, rotated and kept.
    done = line("list", password=None)
    assert done.code == 0, done.err
    assert path.read_text() != first  # (not presented again: a used token would revoke the sign-in)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600

    # Four at once share it (each refresh under the lock, none with a used token).
    whoami_at_once(line.env("ann", None, None, None))

    last = path.read_text()
    done = line("logout", password=None)
    assert done.code == 0, done.err
    assert done.lines == [f"Signed out of {urlsplit(pen.process.url).netloc}; the remembered sign-in was revoked "
                          f"and removed."]
    assert token_files(line) == []
    assert refused(pen, last)
    done = line("list", password=None)
    assert done.code == 3


def test_login_json_names_the_file_and_the_tui_signs_in_with_it(line, pen, monkeypatch):
    doc = line("login", "--json", password=None, stdin=PASSWORD + "\n").json()
    [path] = token_files(line)
    assert doc["remembered"] is True and doc["token_file"] == str(path) and doc["notice"] is None

    # The TUI's quiet sign-in (no password, no keyring) resumes from the file.
    from keyring.backends import fail

    from tests.tui_helpers import using_keyring
    from tui.config import load_config
    from tui.signin.session import sign_in_quietly

    monkeypatch.setenv("PENMAIL_STATE_DIR", str(line.tmp / "state-ann"))
    monkeypatch.delenv("PENMAIL_PASSWORD", raising=False)
    config = load_config(line.config("ann"))

    async def quietly():
        session, outcome = await sign_in_quietly(config, env={})
        try:
            assert outcome.client is not None and outcome.error is None and outcome.notice is None
            assert (await outcome.client.me()).email == "ann@abc.example"
            await session.settle()
        finally:
            await session.client.aclose()

    with using_keyring(fail.Keyring()):
        asyncio.run(quietly())
    assert line("logout", "--json", password=None).json()["signed_out"] is True
    assert token_files(line) == []


def test_no_remember_keeps_no_file(line, pen):
    doc = line("login", "--json", "--no-remember", password=None, stdin=PASSWORD + "\n").json()
    assert doc["remembered"] is False and doc["token_file"] is None
    assert token_files(line) == []
