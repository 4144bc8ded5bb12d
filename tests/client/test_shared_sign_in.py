"""One remembered sign-in, shared through the keyring by several penmail processes.

The server rotates the refresh token on every use and revokes the whole sign-in when a
dead one comes back. A process that remembers its sign-in therefore refreshes under the
account's lock (tui.signin.credentials.RefreshLock) with the token the keyring holds, not a copy
that another process may have rotated meanwhile. Against the real PEN over TLS, with real
keyring backends (in memory, and a file shared with subprocesses)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import keyring
import pytest

from tests.client.file_keyring import FileKeyring
from tests.client.test_credentials import MemoryKeyring
from tests.conftest import PASSWORD, USERS
from tests.tui_helpers import using_keyring
from tui.signin.credentials import SERVICE, RefreshLock
from tui.signin.session import Session

REPO = Path(__file__).resolve().parents[2]
ANN = USERS["ann"][0]
EXPIRED = "an-access-token-the-server-does-not-know"  # answered 401, as an expired one is


@pytest.fixture
def state(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "state"
    monkeypatch.setenv("PENMAIL_STATE_DIR", str(folder))
    monkeypatch.delenv("PENMAIL_PASSWORD", raising=False)
    return folder


class CountingKeyring(MemoryKeyring):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def get_password(self, service, username):
        self.calls += 1
        return super().get_password(service, username)

    def set_password(self, service, username, password):
        self.calls += 1
        super().set_password(service, username, password)

    def delete_password(self, service, username):
        self.calls += 1
        super().delete_password(service, username)


@pytest.fixture
def memory_keyring():
    with using_keyring(CountingKeyring()) as backend:
        yield backend


@pytest.fixture
def file_keyring(tmp_path, monkeypatch):
    path = tmp_path / "keyring.json"
    monkeypatch.setenv("PENMAIL_TEST_KEYRING", str(path))
    with using_keyring(FileKeyring()):
        yield path


def session(pen, **kw) -> Session:
    return Session(pen.process.url, ANN, pen.ca_file, keyring_timeout=10, **kw)


async def signed_in(pen, **kw) -> Session:
    """A session signed in by password, its token stored."""
    s = session(pen, **kw)
    try:
        await s.login(PASSWORD)
        await s.settle()
    except BaseException:
        await s.client.aclose()
        raise
    return s


def stored(pen) -> str | None:
    return keyring.get_password(SERVICE, f"{pen.process.url}|{ANN}")


def expire(s: Session) -> None:
    s.client._access = EXPIRED


def record_presented(*sessions: Session) -> list[str]:
    """Every refresh token the sessions present to the server, in order."""
    presented: list[str] = []
    for s in sessions:
        def spy(client=s.client, real=s.client._refresh_now):
            presented.append(client.refresh_token)
            return real()
        s.client._refresh_now = spy  # type: ignore[method-assign]
    return presented


async def close(*sessions: Session) -> None:
    for s in sessions:
        await s.settle()
        await s.client.aclose()


# ---------------------------------------------------------------- two sessions, one process


async def test_a_token_rotated_by_another_process_is_not_presented_again(pen, state, memory_keyring):
    a, b = session(pen), session(pen)  # as the TUI and a line command would
    presented = record_presented(a, b)
    try:
        await a.login(PASSWORD)
        await a.settle()
        first = stored(pen)
        assert first == a.client.refresh_token

        assert await b.resume()  # B refreshes: the server rotates the token, B stores the new one
        await b.settle()
        assert stored(pen) == b.client.refresh_token != first
        assert a.client.refresh_token == first  # A's copy is dead now

        expire(a)  # A's access token expires: A refreshes with the keyring's token, not its own
        await a.client.me()
        assert a.client.refresh_token == stored(pen) != b.client.refresh_token

        expire(b)  # and B, whose copy A has rotated meanwhile
        await b.client.me()
        assert b.client.refresh_token == stored(pen)

        # Both stay signed in; the sign-in was never revoked, so a third process resumes it.
        assert (await a.client.me()).email == (await b.client.me()).email == ANN
        assert len(presented) == len(set(presented)) == 3  # no token was presented twice
        c = session(pen)
        try:
            assert await c.resume()
            assert (await c.client.me()).email == ANN
        finally:
            await close(c)
    finally:
        await close(a, b)
    assert (state / RefreshLock(a.store.username).name).exists()


async def test_two_sessions_refreshing_at_once_take_turns(pen, state, memory_keyring):
    await close(await signed_in(pen))
    sessions = [session(pen) for _ in range(3)]
    presented = record_presented(*sessions)
    try:
        # All three read the same token before any refreshes; the lock and the second read
        # under it make each use the token the one before stored.
        assert await asyncio.gather(*(s.resume() for s in sessions)) == [True, True, True]
        for _ in range(2):
            for s in sessions:
                expire(s)
            await asyncio.gather(*(s.client.me() for s in sessions))
        assert all(s.client.signed_in for s in sessions)
        # One chain of tokens: each refresh used the one the refresh before it stored.
        assert len(presented) == len(set(presented)) == 9
        assert stored(pen) in {s.client.refresh_token for s in sessions}
    finally:
        await close(*sessions)
    again = session(pen)
    try:
        assert await again.resume()
    finally:
        await close(again)


async def test_the_wait_for_the_lock_leaves_the_event_loop_free_and_ends(pen, state, memory_keyring):
    s = await signed_in(pen, refresh_lock_timeout=0.6)
    other = RefreshLock(s.store.username)
    try:
        held = other.acquire()  # another process holds the lock and never lets go
        assert held is not None
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        tick = asyncio.create_task(ticker())
        try:
            expire(s)
            started = time.monotonic()
            await s.client.me()  # refreshes unguarded after the timeout rather than hang
            waited = time.monotonic() - started
        finally:
            tick.cancel()
            RefreshLock.release(held)
        assert waited >= 0.5
        assert ticks >= 20  # the loop ran all along
        assert stored(pen) == s.client.refresh_token

        # A holder that lets go: the refresh goes on at once, well before the timeout.
        s.refresh_lock.timeout = 30
        held = other.acquire()
        asyncio.get_running_loop().call_later(0.2, RefreshLock.release, held)
        expire(s)
        started = time.monotonic()
        await s.client.me()
        assert 0.15 < time.monotonic() - started < 10
    finally:
        await close(s)


async def test_a_cancelled_refresh_lets_go_of_the_lock(pen, state, memory_keyring):
    s = await signed_in(pen, refresh_lock_timeout=30)
    other = RefreshLock(s.store.username)
    try:
        held = other.acquire()
        expire(s)
        call = asyncio.create_task(s.client.me())
        await asyncio.sleep(0.2)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        RefreshLock.release(held)
        # The abandoned wait takes the lock, sees it was cancelled, and lets go at once.
        deadline = time.monotonic() + 5
        while (fd := RefreshLock(s.store.username, timeout=0).acquire()) is None:
            assert time.monotonic() < deadline, "the cancelled wait kept the lock"
            await asyncio.sleep(0.05)
        RefreshLock.release(fd)
        assert (await s.client.me()).email == ANN
    finally:
        await close(s)


# ---------------------------------------------------------------- without the keyring


@pytest.mark.parametrize("how", ["use_keyring=False", "remember=False"])
async def test_without_the_keyring_nothing_changes(pen, state, memory_keyring, how):
    kw = {"use_keyring": False} if how == "use_keyring=False" else {"remember": False}
    a, b = session(pen, **kw), session(pen, **kw)
    try:
        await a.login(PASSWORD)
        await b.login(PASSWORD)  # two sign-ins of their own
        calls = memory_keyring.calls
        for s in (a, b, a, b):
            before = s.client.refresh_token
            expire(s)
            assert (await s.client.me()).email == ANN
            assert s.client.refresh_token != before  # each rotates its own token
        await a.settle()
        await b.settle()
        assert memory_keyring.calls == calls  # the keyring is not read before a refresh
        assert stored(pen) is None
        assert not list(state.glob("refresh-*.lock"))  # and no lock is taken
    finally:
        await close(a, b)


async def test_a_keyring_that_fails_falls_back_to_the_own_token(pen, state):
    from keyring.backends import fail

    with using_keyring(fail.Keyring()):
        s = session(pen)
        try:
            await s.login(PASSWORD)
            await s.settle()
            assert s.store.problem  # the keyring failed once and is not used any more
            for _ in range(2):
                expire(s)
                assert (await s.client.me()).email == ANN
        finally:
            await close(s)


# ---------------------------------------------------------------- real processes

WORKER = textwrap.dedent("""
    import asyncio, sys, time
    from tui.signin.session import Session

    async def main(server, email, ca_file, rounds):
        s = Session(server, email, ca_file, keyring_timeout=10)
        print("ready", flush=True)
        sys.stdin.readline()  # every worker goes at the same moment, once all are ready
        try:
            if not await s.resume():
                print("not resumed")
                return 3
            for _ in range(rounds):
                s.client._access = "expired"  # 401, as an expired access token is
                await s.client.list_messages(limit=1)
            await s.settle()
            print("ok")
            return 0
        finally:
            await s.client.aclose()

    a = sys.argv
    sys.exit(asyncio.run(main(a[1], a[2], a[3], int(a[4]))))
""")


def worker_env(state: Path, keyring_file: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PENMAIL_")}
    env.update(PENMAIL_STATE_DIR=str(state), PENMAIL_TEST_KEYRING=str(keyring_file),
               PYTHON_KEYRING_BACKEND="tests.client.file_keyring.FileKeyring", PYTHONPATH=str(REPO))
    return env


async def test_processes_started_at_once_all_stay_signed_in(pen, state, file_keyring):
    await close(await signed_in(pen))
    token = stored(pen)
    assert token

    workers = [await asyncio.create_subprocess_exec(
                   sys.executable, "-c", WORKER, pen.process.url, ANN, pen.ca_file, "4",
                   cwd=REPO, env=worker_env(state, file_keyring),
                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
               for _ in range(3)]
    for w in workers:  # every interpreter has started
        assert await asyncio.wait_for(w.stdout.readline(), 120) == b"ready\n"
    for w in workers:
        w.stdin.write(b"go\n")
    await asyncio.gather(*(w.stdin.drain() for w in workers))
    results = []
    for w in workers:
        out, err = await asyncio.wait_for(w.communicate(), 120)
        results.append((w.returncode, out.decode(), err.decode()))
    for code, out, err in results:
        assert code == 0 and out.strip() == "ok", (code, out, err)

    assert stored(pen) not in (None, token)
    third = session(pen)  # the sign-in survived: another process resumes it from the keyring
    try:
        assert await third.resume()
        assert (await third.client.me()).email == ANN
    finally:
        await close(third)


async def test_a_line_command_beside_a_running_tui(pen, state, file_keyring, tmp_path):
    """The reported case: `penmail list` in another terminal rotates the token the TUI holds."""
    config = tmp_path / "config.toml"
    config.write_text(f'server = "{pen.process.url}"\nca_file = "{pen.ca_file}"\nemail = "{ANN}"\n')
    env = {**worker_env(state, file_keyring), "PENMAIL_CONFIG": str(config)}

    async def penmail(*args: str) -> subprocess.CompletedProcess:
        return await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "tui.cli", *args], cwd=REPO,
                                       env=env, capture_output=True, timeout=60, stdin=subprocess.DEVNULL,
                                       check=False)

    tui = await signed_in(pen)  # the running TUI's session
    try:
        held = tui.client.refresh_token
        done = await penmail("list", "--json")
        assert done.returncode == 0, done.stderr.decode()
        assert stored(pen) != held  # the line command rotated it

        expire(tui)
        assert (await tui.client.me()).email == ANN  # the TUI stays signed in
        done = await penmail("whoami", "--json")  # and so does the next line command
        assert done.returncode == 0, done.stderr.decode()
        assert ANN in done.stdout.decode()
        expire(tui)
        await tui.client.list_messages(limit=1)
    finally:
        await close(tui)
