"""One line-mode command's run: its options, output, sign-in and settings file, and the
printing of a message. No Textual here."""


from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import getpass
import json
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

from tui.config import Config, ConfigError, load_config, state_dir
from tui.files import lock_within, write_atomic
from tui.line import (
    EXIT_FAILED,
    EXIT_NOT_FOUND,
    EXIT_NOT_SIGNED_IN,
    EXIT_OK,
    EXIT_USAGE,
)
from tui.line.output import (
    BOLD,
    Output,
    message_json,
)
from tui.safe_text import one_line
from tui.text.format import body_text, header_rows, human_size

try:  # POSIX
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]



LOCK_TIMEOUT = 30.0
_ID = re.compile(r"^[A-Za-z0-9_-]{1,200}$")
_LINK_PATH = re.compile(r"^(?P<prefix>(?:/[^/]+)*?)/m/(?P<id>[A-Za-z0-9_-]{1,200})/?$")


class LineError(Exception):
    """A failure with its sentence, exit code and a snake_case code for --json."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILED, code: str = "failed"):
        super().__init__(message)
        self.message, self.exit_code, self.code = message, exit_code, code


def usage(message: str) -> LineError:
    return LineError(message, EXIT_USAGE, "usage")


def _sentence(text: str) -> str:
    text = one_line(text)
    return text if text.endswith((".", "!", "?")) else text + "."


def _join(first: str, then: str) -> str:
    """Two thoughts in one sentence: "First problem; what happens now."""
    return one_line(first).rstrip(".") + "; " + then

# ---------------------------------------------------------------- the run of one command


@dataclasses.dataclass
class Run:
    args: argparse.Namespace
    out: Output
    env: Mapping[str, str]
    config: Config
    use_keyring: bool = True

    @property
    def stdin_tty(self) -> bool:
        try:
            return sys.stdin is not None and sys.stdin.isatty()
        except (ValueError, OSError):
            return False

    # -- asking

    def ask(self, prompt: str) -> str:
        """One line from the person (a terminal) or from standard input (a pipe)."""
        if self.stdin_tty:
            self.out.err.write(prompt)
            self.out.err.flush()
        with _ctrl_c_stops():
            line = sys.stdin.readline() if sys.stdin is not None else ""
        return line.rstrip("\r\n")

    def ask_secret(self, prompt: str) -> str:
        with _ctrl_c_stops():
            if self.stdin_tty:
                try:
                    return getpass.getpass(prompt)
                except EOFError:
                    return ""
            line = sys.stdin.readline() if sys.stdin is not None else ""
        return line.rstrip("\r\n")

    # -- signing in

    @contextlib.contextmanager
    def token_lock(self):
        """One process at a time refreshes and stores the rotating refresh token."""
        if fcntl is None:
            yield
            return
        try:
            fd = os.open(state_dir(self.env) / "signin.lock", os.O_RDWR | os.O_CREAT, 0o600)
        except OSError:
            yield  # no state folder to lock in: go on unguarded rather than fail
            return
        try:
            lock_within(fd, LOCK_TIMEOUT)  # not had in time (a stuck holder): better to try than to wait for ever
            yield
        finally:
            os.close(fd)

    async def sign_in(self, server: str | None = None, email: str | None = None, *,
                      fallbacks: bool = True, prompt: bool = False, why: str = ""):
        """A signed-in Session: the keyring's token, then password_command/PENMAIL_PASSWORD
        (``fallbacks``), then a password typed or piped in (``prompt``).  Returns
        (session, password or None)."""
        from tui.signin.credentials import CredentialError, password_from_fallbacks
        from tui.signin.session import Session

        server = server or self.config.server
        email = email or self.config.email
        if not server or not email:
            raise LineError(self.config.not_set_up() or "No PEN is set up yet; run `penmail login` first.",
                            EXIT_NOT_SIGNED_IN, "not_configured")
        session = Session(server, email, self.config.ca_file, remember=True, use_keyring=self.use_keyring)
        try:
            with self.token_lock():
                if await session.resume():
                    await session.settle()  # the new token is stored before the next process looks
                    return session, None
            password = None
            if fallbacks:
                try:
                    password = await asyncio.to_thread(password_from_fallbacks, self.config, self.env)
                except CredentialError as exc:
                    raise LineError(str(exc), EXIT_NOT_SIGNED_IN, "password_command") from None
            if not password and prompt:
                host = urlsplit(server).netloc
                password = self.ask_secret(f"Password for {email} on {host}: ")
            if not password:
                host = urlsplit(server).netloc
                raise LineError(f"You are not signed in to {host} as {email}{why}; run `penmail login`, or set "
                                f"PENMAIL_PASSWORD or password_command.", EXIT_NOT_SIGNED_IN, "not_signed_in")
            await session.login(password)
            await session.settle()
            return session, password
        except BaseException:
            await session.client.aclose()
            raise

    @contextlib.asynccontextmanager
    async def signed_in(self, *, channel: str | None = None, **kw):
        """The signed-in client; ``channel`` names what its requests come through for the
        PEN's audit trail ("intercept")."""
        session, password = await self.sign_in(**kw)
        if channel:
            session.client.use_channel(channel)
        try:
            yield session.client
        finally:
            await self.finish(session, password)

    async def finish(self, session, password: str | None) -> None:
        """Leave the sign-in as it should be: stored in the keyring, or (when nothing could
        keep it) revoked on the server, so scripts leave no sessions behind."""
        from tui.pen_client import PenError

        try:
            await session.settle()
            if password is not None and not self.remembered(session):
                try:
                    await session.client.logout()
                except PenError:
                    pass
        finally:
            await session.client.aclose()

    @staticmethod
    def remembered(session) -> bool:
        return bool(session.use_keyring and session.remember and session.store.available)

# ---------------------------------------------------------------- settings file


def _toml_string(value: str) -> str:
    # A JSON string is a TOML basic string (the same escapes); values never hold controls.
    return json.dumps(value, ensure_ascii=False)


@contextlib.contextmanager
def _ctrl_c_stops():
    """Ctrl-C at a prompt stops the command at once (KeyboardInterrupt, exit 130).

    The prompts read standard input inside asyncio.run, whose SIGINT handler only cancels the
    main task: the blocking read is retried after the signal, so ^C showed and the next line
    typed became the answer. Python's own handler raises in the read instead."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, before)


def update_settings(path: Path, values: Mapping[str, str | None]) -> None:
    """Set top-level keys in the settings file (None removes one), keeping everything else
    as it is."""
    try:
        original = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        original = None
    lines = (original or "").splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    end = next((i for i, line in enumerate(lines) if re.match(r"\s*\[", line)), len(lines))
    top = 0
    for key, value in values.items():
        rendered = f"{key} = {_toml_string(value)}\n" if value is not None else ""
        for i in range(end):
            if re.match(rf"\s*{re.escape(key)}\s*=", lines[i]):
                lines[i] = rendered
                break
        else:
            if value is None:
                continue
            lines.insert(top, rendered)  # top-level keys go before any [table]
            top += 1
            end += 1
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_atomic(path, "".join(lines).encode("utf-8"))
    try:
        load_config(path)
    except ConfigError:
        if original is None:
            path.unlink(missing_ok=True)
        else:
            write_atomic(path, original.encode("utf-8"))
        raise


def normalise_server(text: str) -> str:
    text = (text or "").strip()
    if not text:
        raise usage("The PEN's address is empty; give it as https://pen.example.org.")
    if "://" not in text:
        text = "https://" + text
    parts = urlsplit(text)
    try:
        _ = parts.port  # raises ValueError for a bad port
    except ValueError:
        raise usage(f"{one_line(text, 80)!r} has a port that is not a number.") from None
    if parts.scheme.lower() != "https" or not parts.hostname or parts.query or parts.fragment \
            or parts.username or parts.password or any(c.isspace() for c in text):
        raise usage(f"The PEN's address must be a plain https:// URL, not {one_line(text, 80)!r}.")
    return text.rstrip("/")


def same_server(a: str | None, b: str | None) -> bool:
    if not a or not b:
        return False
    pa, pb = urlsplit(a.rstrip("/")), urlsplit(b.rstrip("/"))
    return (pa.scheme.lower(), (pa.hostname or "").lower(), pa.port or 443, pa.path) == \
        (pb.scheme.lower(), (pb.hostname or "").lower(), pb.port or 443, pb.path)

# ---------------------------------------------------------------- printing a message


def print_message(run: Run, message) -> dict:
    """`read`'s output; returns the --json document (without printing it)."""
    out = run.out
    body, links, note = body_text(message)
    if note:
        out.note(note)
    if out.json:
        return message_json(message, body, links)
    for label, value in header_rows(message, with_id=True):
        out.line(f"{out.style(label + ':', BOLD)}{' ' * max(1, 8 - len(label))}{value}")
    if message.attachments:
        out.line(out.style("Attachments:", BOLD))
        for n, a in enumerate(message.attachments, 1):
            out.line(f"  {n}. {one_line(a.filename) or '(no name)'} ({one_line(a.content_type)}, "
                     f"{human_size(a.size)})")
    out.line()
    text = body.rstrip("\n") if body.strip() else "(This message has no text.)"
    out.lines(text)
    return {}


async def mark_read(run: Run, client, message) -> bool:
    """Mark read unless asked not to; returns the unread state afterwards."""
    if message.unread and not getattr(run.args, "keep_unread", False):
        updated = await client.update_message(message.id, unread=False)
        return updated.unread
    return message.unread


async def read_and_print(run: Run, client, message_id: str) -> int:
    message = await client.get_message(message_id)
    doc = print_message(run, message)
    unread = await mark_read(run, client, message)
    if run.out.json:
        doc["unread"] = unread
        run.out.emit(doc)
    return EXIT_OK

def _exit_code(exc) -> int:
    from tui.pen_client import InvalidCredentials, NotFound, NotSignedIn

    if isinstance(exc, (NotSignedIn, InvalidCredentials)):
        return EXIT_NOT_SIGNED_IN
    if isinstance(exc, NotFound):
        return EXIT_NOT_FOUND
    return EXIT_FAILED
