"""The line-mode commands: sign-in, list, read, get, send, reply, status, open, export.

Each command is a coroutine taking a ``Run`` (the parsed arguments, the output, the
settings) and returning an exit code.  ``main`` runs one, and turns every failure into
one sentence on stderr (and ``{"error": ...}`` on stdout with --json) and an exit code:
0 done, 1 failed, 2 usage, 3 not signed in, 4 not found.  Never a traceback (unless
``PENMAIL_DEBUG`` is set).

Sign-in is the TUI's: the refresh token in the keyring (``tui.session.Session``), then
``password_command``, then ``PENMAIL_PASSWORD``; nothing asks for a password except
``login`` and ``open``.  Refresh tokens rotate on every use and presenting a used one
revokes the whole sign-in, so two line commands at once take turns (a lock file in the
state folder) while one refreshes and stores the token.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import getpass
import json
import mimetypes
import os
import re
import sys
import time
import traceback
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tui.config import Config, ConfigError, config_path, load_config, state_dir
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
    address_text,
    human_size,
    iso,
    list_date,
    message_headers,
    message_json,
    notification_json,
    render_body,
    summary_json,
)
from tui.safe_text import clean, one_line

try:  # POSIX
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

__all__ = ["LineError", "Run", "main", "parse_link", "update_settings"]

LOCK_TIMEOUT = 30.0
SEND_TRIES = 3
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
        line = sys.stdin.readline() if sys.stdin is not None else ""
        return line.rstrip("\r\n")

    def ask_secret(self, prompt: str) -> str:
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
            deadline = time.monotonic() + LOCK_TIMEOUT
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        break  # a stuck holder; better to try than to wait for ever
                    time.sleep(0.05)
            yield
        finally:
            os.close(fd)

    async def sign_in(self, server: str | None = None, email: str | None = None, *,
                      fallbacks: bool = True, prompt: bool = False, why: str = ""):
        """A signed-in Session: the keyring's token, then password_command/PENMAIL_PASSWORD
        (``fallbacks``), then a password typed or piped in (``prompt``).  Returns
        (session, password or None)."""
        from tui.credentials import CredentialError, password_from_fallbacks
        from tui.session import Session

        server = server or self.config.server
        email = email or self.config.email
        if not server or not email:
            raise LineError("No PEN is set up yet; run `penmail login` first.", EXIT_NOT_SIGNED_IN,
                            "not_configured")
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
    async def signed_in(self, **kw):
        session, password = await self.sign_in(**kw)
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


def update_settings(path: Path, values: Mapping[str, str]) -> None:
    """Set top-level keys in the settings file, keeping everything else as it is."""
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
        rendered = f"{key} = {_toml_string(value)}\n"
        for i in range(end):
            if re.match(rf"\s*{re.escape(key)}\s*=", lines[i]):
                lines[i] = rendered
                break
        else:
            lines.insert(top, rendered)  # top-level keys go before any [table]
            top += 1
            end += 1
    from tui.drafts import write_atomic

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
        parts.port
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
    body, links, note = render_body(message)
    if note:
        out.note(note)
    if out.json:
        return message_json(message, body, links)
    for label, value in message_headers(message):
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


# ---------------------------------------------------------------- account commands


async def cmd_login(run: Run) -> int:
    from tui.compose import parse_address
    from tui.pen_client import PenError
    from tui.session import Session

    args, config, out = run.args, run.config, run.out
    changes: dict[str, str] = {}

    server = args.server or config.server
    if not server:
        if not run.stdin_tty:
            raise usage("No PEN server is set; pass --server https://... or set server in the settings file.")
        server = run.ask("The PEN's address (https://...): ")
    server = normalise_server(server)
    if server != config.server:
        changes["server"] = server

    email = args.email or config.email
    if not email:
        if not run.stdin_tty:
            raise usage("No e-mail address is set; pass --email or set email in the settings file.")
        email = run.ask("Your e-mail address: ")
    address, problem = parse_address(email)
    if problem:
        raise usage(problem)
    email = address["email"]
    if email != config.email:
        changes["email"] = email

    ca_file = config.ca_file
    if args.ca_file:
        ca_file = Path(args.ca_file).expanduser().resolve()
        if not ca_file.is_file():
            raise usage(f"The CA file {ca_file} does not exist or is not a file.")
        if ca_file != config.ca_file:
            changes["ca_file"] = str(ca_file)

    if run.stdin_tty:
        password = run.ask_secret(f"Password for {email} on {urlsplit(server).netloc}: ")
    else:
        password = run.ask_secret("")
    if not password:
        from tui.credentials import CredentialError, password_from_fallbacks

        try:
            password = password_from_fallbacks(config, run.env)
        except CredentialError as exc:
            raise LineError(str(exc), EXIT_NOT_SIGNED_IN, "password_command") from None
    if not password:
        raise usage("No password was given; type it on a terminal or give it on standard input.")

    remember = not args.no_remember
    session = Session(server, email, ca_file, remember=remember, use_keyring=remember and run.use_keyring)
    try:
        user = await session.client.login(email, password)
        await session.settle()
        remembered = Run.remembered(session)
        notice = session.store.problem if remember and not remembered else None
        if not remembered:
            try:  # nothing will ever use this sign-in again: end it on the server
                await session.client.logout()
            except PenError:
                pass
    finally:
        await session.client.aclose()

    path = config.path or config_path(run.env)
    if changes:
        update_settings(path, changes)
        names = list(changes)
        listed = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
        out.note(f"Saved {listed} in {path}.")
    if notice:
        out.note(notice)
    if out.json:
        out.emit({"server": server, "email": one_line(user.email), "display_name": one_line(user.display_name),
                  "role": one_line(user.role), "remembered": remembered, "notice": notice})
        return EXIT_OK
    name = one_line(user.display_name)
    who = f"{name} <{one_line(user.email)}>" if name else one_line(user.email)
    out.line(f"Signed in to {urlsplit(server).netloc} as {who}.")
    if remembered:
        out.line("The sign-in is remembered in the system keyring; `penmail logout` ends it.")
    elif not remember:
        out.line("The sign-in was not remembered (--no-remember), and has been ended.")
    else:
        out.line("The sign-in could not be remembered here, so it has been ended; other commands will use "
                 "password_command or PENMAIL_PASSWORD.")
    return EXIT_OK


async def cmd_logout(run: Run) -> int:
    from tui.session import Session

    config, out = run.config, run.out
    if not config.server or not config.email:
        raise LineError("penmail is not set up yet, so there is no sign-in to end.", EXIT_NOT_SIGNED_IN,
                        "not_configured")
    host = urlsplit(config.server).netloc
    session = Session(config.server, config.email, config.ca_file, use_keyring=run.use_keyring)
    try:
        with run.token_lock():
            signed_out = await session.resume()
            if signed_out:
                await session.settle()  # the rotated token is stored before it is removed
                await session.sign_out()
            else:
                await asyncio.to_thread(session.store.forget)
    finally:
        await session.client.aclose()
    if out.json:
        out.emit({"server": config.server, "email": config.email, "signed_out": signed_out})
    elif signed_out:
        out.line(f"Signed out of {host}; the remembered sign-in was revoked and removed.")
    else:
        out.line(f"No sign-in was remembered for {config.email} on {host}; nothing to end.")
    return EXIT_OK


async def cmd_whoami(run: Run) -> int:
    async with run.signed_in() as client:
        user = await client.me()
    doc = {"server": client.server, "id": one_line(user.id), "email": one_line(user.email),
           "display_name": one_line(user.display_name), "role": one_line(user.role),
           "package": one_line(user.package) if user.package else None}
    if run.out.json:
        run.out.emit(doc)
        return EXIT_OK
    for label, key in (("Email", "email"), ("Name", "display_name"), ("Role", "role"), ("Package", "package"),
                       ("Server", "server")):
        run.out.line(f"{label + ':':<9}{doc[key] or '-'}")
    return EXIT_OK


# ---------------------------------------------------------------- reading


async def cmd_list(run: Run) -> int:
    args, out = run.args, run.out
    items: list = []
    total = 0
    async with run.signed_in() as client:
        cursor = None
        while len(items) < args.limit:
            page = await client.list_messages(args.folder, limit=min(200, args.limit - len(items)), cursor=cursor,
                                              unread=True if args.unread else None, q=args.search or None)
            items.extend(page.items)
            total = page.total
            cursor = page.next_cursor
            if not cursor or not page.items:
                break
    if out.json:
        out.emit({"folder": args.folder, "total": total, "count": len(items),
                  "items": [summary_json(s) for s in items]})
        return EXIT_OK
    for s in items:
        marks = ("U" if s.unread else "-") + ("A" if s.attachment_count else "-")
        sender = one_line(s.sender.name or "") or one_line(s.sender.email)
        subject = one_line(s.subject) or "(no subject)"
        if out.out_tty:
            row = f"{one_line(s.id)}  {list_date(s.sent_at)}  {one_line(sender, 24):<24}  {marks}  {subject}"
            out.line(out.style(row, BOLD) if s.unread else row)
        else:
            out.line("\t".join((one_line(s.id), list_date(s.sent_at), sender, marks, subject)))
    if not items and out.err_tty:
        out.note(f"No messages in {args.folder}" + (" that match." if args.search or args.unread else "."))
    return EXIT_OK


async def cmd_read(run: Run) -> int:
    async with run.signed_in() as client:
        return await read_and_print(run, client, run.args.id)


async def cmd_get(run: Run) -> int:
    from tui.downloads import download_attachment
    from tui.pen_client import PenError

    args, out = run.args, run.out
    folder = Path(args.output).expanduser() if args.output else run.config.download_dir
    saved: list[dict] = []
    async with run.signed_in() as client:
        message = await client.get_message(args.id)
        attachments = list(message.attachments)
        if not attachments:
            raise LineError("This message has no attachments.", EXIT_NOT_FOUND, "no_attachments")
        if args.attachment:
            if args.attachment > len(attachments):
                raise LineError(f"This message has {len(attachments)} attachment"
                                f"{'s' if len(attachments) != 1 else ''}, so there is no number {args.attachment}.",
                                EXIT_NOT_FOUND, "not_found")
            chosen = [(args.attachment, attachments[args.attachment - 1])]
        elif args.all or len(attachments) == 1:
            chosen = list(enumerate(attachments, 1))
        else:
            raise usage(f"This message has {len(attachments)} attachments; choose one with --attachment N "
                        f"(1 to {len(attachments)}) or take them all with --all.")

        def progress(p) -> None:
            left = f", {p.seconds_left:.0f} s left" if p.seconds_left else ""
            which = f" ({p.file_number} of {p.file_count})" if p.file_count > 1 else ""
            out.progress(f"{p.filename}{which}: {p.fraction * 100:3.0f}% of {human_size(p.total)}"
                         f"{f', {human_size(p.bytes_per_second)}/s' if p.bytes_per_second else ''}{left}")

        for index, (number, attachment) in enumerate(chosen, 1):
            try:
                path = await download_attachment(client, message.id, attachment, folder, progress=progress,
                                                 _number=index, _count=len(chosen))
            except PenError as exc:
                if saved:
                    exc.message = _join(exc.message, f"{len(saved)} of {len(chosen)} were saved.")
                raise
            shown = clean(str(path), keep_newlines=False)
            saved.append({"number": number, "attachment_id": one_line(attachment.id),
                          "filename": one_line(attachment.filename), "path": shown, "size": attachment.size,
                          "sha256": one_line(attachment.sha256)})
            out.end_progress()
            if not out.json:
                out.line(shown)
    if out.json:
        out.emit({"message_id": one_line(message.id), "saved": saved})
    return EXIT_OK


async def cmd_status(run: Run) -> int:
    out = run.out
    async with run.signed_in() as client:
        items = await client.notifications(run.args.id)
    if out.json:
        out.emit({"message_id": one_line(run.args.id), "items": [notification_json(n) for n in items]})
        return EXIT_OK
    for n in items:
        attempts = f"{n.attempts} attempt{'s' if n.attempts != 1 else ''}"
        error = one_line(n.last_error) if n.last_error else "-"
        fields = (address_text(n.recipient), one_line(n.kind), one_line(n.status), attempts, error)
        out.line("  ".join(fields) if out.out_tty else "\t".join(fields))
    return EXIT_OK


# ---------------------------------------------------------------- writing


def _read_body(run: Run) -> str:
    if run.stdin_tty:
        run.out.note("Type the message; end it with Ctrl-D on a line of its own.")
    data = sys.stdin.buffer.read() if sys.stdin is not None else b""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise usage("The text on standard input is not UTF-8.") from None


def _addresses(values: list[str], option: str) -> list[dict]:
    from tui.compose import parse_address_list

    found, errors = parse_address_list(", ".join(values))
    if errors:
        raise usage(f"In {option}: {errors[0]}")
    return found


def _check_files(paths: list[str]) -> list[str]:
    checked = []
    for name in paths:
        path = Path(name).expanduser()
        if not path.is_file():
            raise usage(f"The file {clean(name, keep_newlines=False)!s} does not exist or is not a file.")
        if not os.access(path, os.R_OK):
            raise usage(f"The file {clean(name, keep_newlines=False)!s} cannot be read.")
        checked.append(str(path.resolve()))
    return checked


async def _deliver(run: Run, client, store, draft) -> int:
    """Upload, send with the draft's Idempotency-Key (a retry never sends twice), and
    remove the draft once the PEN has it; keep it, and say so, when anything fails."""
    from tui.compose import parse_address_list
    from tui.pen_client import Address, PenError, ServerError, Unreachable, ValidationFailed

    out = run.out

    def addrs(items: list[str]) -> list[Address]:
        found, _ = parse_address_list(", ".join(items))
        return [Address(a["email"], a["name"]) for a in found]

    upload_ids = []
    try:
        for name in draft.attachments:
            path = Path(name)
            if not path.is_file():
                raise LineError(f"The attached file {clean(name, keep_newlines=False)} is gone.", EXIT_FAILED,
                                "attachment_missing")
            content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"

            def progress(done: int, total: int, shown=one_line(path.name, 60)) -> None:
                out.progress(f"Uploading {shown}: {done * 100 // max(total, 1):3d}% of {human_size(total)}")

            attachment = await client.upload(path, content_type=content_type, progress=progress)
            out.end_progress()
            upload_ids.append(attachment.id)
        for attempt in range(SEND_TRIES):
            try:
                sent = await client.send(to=addrs(draft.to), cc=addrs(draft.cc), bcc=addrs(draft.bcc),
                                         subject=draft.subject, body_text=draft.body,
                                         idempotency_key=draft.idempotency_key, in_reply_to=draft.in_reply_to,
                                         attachments=upload_ids)
                break
            except (Unreachable, ServerError) as exc:
                # The answer may be lost while the PEN has the message: the same key is safe.
                if attempt == SEND_TRIES - 1:
                    raise
                await asyncio.sleep(min(exc.retry_after or 0.5 * 2 ** attempt, 10))
    except (PenError, LineError, OSError) as exc:
        message = exc.message if isinstance(exc, (PenError, LineError)) else \
            f"Reading an attached file failed ({exc.strerror or type(exc).__name__})"
        maybe = isinstance(exc, (Unreachable, ServerError))
        if isinstance(exc, ValidationFailed) and exc.code == "idempotency_key_reused":
            message = ("The PEN already has this draft's key with other content, so it was probably sent "
                       "before; check `penmail list --folder sent`")
        then = (f"the message is kept as draft {draft.id}" + (" (it may have reached the PEN; sending the draft "
                "again never sends it twice)" if maybe else "") + f": send it with `penmail send --draft {draft.id}`.")
        code = exc.exit_code if isinstance(exc, LineError) else _exit_code(exc) if isinstance(exc, PenError) \
            else EXIT_FAILED
        raise LineError(_join(message, then), code, getattr(exc, "code", "failed")) from None
    store.delete(draft.id)
    if out.json:
        doc = {k: v for k, v in message_json(sent, sent.body_text, []).items()
               if k in ("id", "thread_id", "folder", "subject", "sent_at", "to", "cc", "bcc", "in_reply_to",
                        "attachments", "notifications")}
        out.emit(doc)
    else:
        people = [address_text(a) for a in (*sent.to, *sent.cc, *sent.bcc)]
        out.line(f"Sent \"{one_line(sent.subject) or '(no subject)'}\" to {', '.join(people) or 'nobody'} "
                 f"(id {one_line(sent.id)}).")
    return EXIT_OK


@contextlib.asynccontextmanager
async def _keeping(draft):
    """Failures before delivery (signing in, fetching the original) still keep the draft."""
    from tui.pen_client import PenError

    try:
        yield
    except LineError as exc:
        if "kept as draft" not in exc.message:
            exc.message = _join(exc.message, f"the message is kept as draft {draft.id}: send it with "
                                             f"`penmail send --draft {draft.id}`.")
        raise
    except PenError as exc:
        raise LineError(_join(exc.message, f"the message is kept as draft {draft.id}: send it with "
                                           f"`penmail send --draft {draft.id}`."), _exit_code(exc), exc.code) from None


def _drafts(run: Run):
    from tui.drafts import DraftStore

    return DraftStore(state_dir(run.env) / "drafts")


async def cmd_send(run: Run) -> int:
    from tui.compose import format_address, validate_subject
    from tui.drafts import Draft

    args = run.args
    store = _drafts(run)
    if args.draft:
        if args.to or args.cc or args.bcc or args.subject is not None or args.attach:
            raise usage("--draft sends a kept draft as it is; give no other options with it.")
        draft = store.load(args.draft)
        if draft is None:
            raise LineError(f"There is no draft {one_line(args.draft, 80)!r}.", EXIT_NOT_FOUND, "not_found")
        for items, option in ((draft.to, "to"), (draft.cc, "cc"), (draft.bcc, "bcc")):
            _addresses(items, f"the draft's {option}")
    else:
        to = _addresses(args.to, "--to")
        cc = _addresses(args.cc, "--cc")
        bcc = _addresses(args.bcc, "--bcc")
        if not to:
            raise usage("Name at least one recipient with --to.")
        if args.subject is None:
            raise usage("Give the subject with --subject.")
        problem = validate_subject(args.subject)
        if problem:
            raise usage(problem)
        files = _check_files(args.attach)
        body = _read_body(run)
        draft = Draft(to=[format_address(a) for a in to], cc=[format_address(a) for a in cc],
                      bcc=[format_address(a) for a in bcc], subject=args.subject, body=body, attachments=files)
        store.save(draft)
    async with _keeping(draft):
        async with run.signed_in() as client:
            return await _deliver(run, client, store, draft)


async def cmd_reply(run: Run) -> int:
    from tui.compose import format_address, quote_body, reply_recipients, reply_subject
    from tui.drafts import Draft

    args = run.args
    files = _check_files(args.attach)
    store = _drafts(run)
    async with run.signed_in() as client:
        original = await client.get_message(args.id)
        me = client.user.email if client.user else (run.config.email or "")

        def a(x) -> dict:
            return {"email": x.email, "name": x.name}

        as_dict = {"from": a(original.sender), "to": [a(x) for x in original.to], "cc": [a(x) for x in original.cc],
                   "sent_at": iso(original.sent_at)}
        to, cc = reply_recipients(as_dict, me, args.all)
        if not to:
            raise LineError("There is no one to reply to on this message.", EXIT_FAILED, "no_recipients")
        own = _read_body(run)
        quoted_text = original.body_text
        if not quoted_text.strip() and original.body_html:
            quoted_text, _, _ = render_body(original)
        quoted = quote_body(quoted_text, original.sent_at, original.sender.name or original.sender.email)
        body = (own.rstrip("\n") + "\n\n" if own.strip() else "") + quoted
        draft = Draft(to=[format_address(x) for x in to], cc=[format_address(x) for x in cc],
                      subject=reply_subject(original.subject), body=body, attachments=files,
                      in_reply_to=original.id)
        store.save(draft)
        async with _keeping(draft):
            return await _deliver(run, client, store, draft)


# ---------------------------------------------------------------- open a notification's link


def parse_link(url: str) -> tuple[str, str, str]:
    """(server, message id, token) from `<base_url>/m/<message id>?t=<token>`; https only."""
    text = (url or "").strip()
    shown = one_line(text, 80)
    try:
        parts = urlsplit(text)
        parts.port
    except ValueError:
        raise usage(f"{shown!r} is not a PEN message link.") from None
    if parts.scheme.lower() != "https":
        raise usage(f"penmail opens only https:// links, not {shown!r}.")
    match = _LINK_PATH.match(parts.path)
    tokens = parse_qs(parts.query).get("t", [])
    if (not parts.hostname or parts.username is not None or parts.password is not None or not match
            or len(tokens) != 1 or not _ID.match(tokens[0])):
        raise usage(f"{shown!r} is not a PEN message link (https://<pen>/m/<message id>?t=<token>).")
    return f"https://{parts.netloc}{match['prefix']}", match["id"], tokens[0]


async def _register(run: Run, server: str, token: str, invitation):
    """A new guest's sign-up: the PEN's name, the sender and subject, then a name and a
    password typed twice.  Returns (session, password)."""
    from tui.pen_client import Conflict, ValidationFailed
    from tui.session import Session

    out = run.out
    sender = address_text(invitation.sender)
    out.note(f"{one_line(invitation.pen_name) or 'A PEN'}: {sender} sent you a secure message, "
             f"\"{one_line(invitation.subject) or '(no subject)'}\".")
    out.note(f"To read it, choose a name and a password for {one_line(invitation.email)} (this takes seconds).")
    tries = 3 if run.stdin_tty else 1
    session = Session(server, invitation.email, run.config.ca_file, remember=True, use_keyring=run.use_keyring)
    try:
        for attempt in range(tries):
            name = run.ask("Your name: ").strip()
            if not name:
                if attempt < tries - 1:
                    out.note("The name cannot be empty.")
                    continue
                raise usage("A name is needed to sign up.")
            password = run.ask_secret("Choose a password (8 characters or more): ")
            again = run.ask_secret("The same password again: ")
            if password != again:
                if attempt < tries - 1:
                    out.note("The two passwords differ; try again.")
                    continue
                raise usage("The two passwords differ.")
            try:
                await session.client.register(token, name, password)
            except ValidationFailed as exc:
                if attempt < tries - 1:
                    out.note(exc.message)
                    continue
                raise
            except Conflict:
                await session.client.aclose()
                return None, None  # registered meanwhile: sign in instead
            await session.settle()
            return session, password
    except BaseException:
        await session.client.aclose()
        raise
    raise usage("The sign-up was not finished.")  # pragma: no cover


async def cmd_open(run: Run) -> int | Callable[[], int]:
    from tui.pen_client import NotFound, PenClient

    args, config, out = run.args, run.config, run.out
    server, message_id, token = parse_link(args.url)
    host = urlsplit(server).netloc
    ours = same_server(config.server, server)
    probe = PenClient(server, ca_file=config.ca_file)
    try:
        try:
            invitation = await probe.invitation(token)
        except NotFound:
            invitation = None
    finally:
        await probe.aclose()

    session = password = None
    if invitation is not None and not invitation.registered:
        session, password = await _register(run, server, token, invitation)
        if session is not None and not config.server:
            path = config.path or config_path(run.env)
            update_settings(path, {"server": server, "email": invitation.email})
            out.note(f"Saved server and email in {path}.")
    if session is None:
        email = invitation.email if invitation is not None else (config.email if ours else None)
        if not email:
            raise LineError(f"This link has expired and penmail does not know your account on {host}; ask the "
                            f"sender to send it again, or sign in there with `penmail login` first.",
                            EXIT_NOT_SIGNED_IN, "not_signed_in")
        mine = ours and config.email and email.lower() == config.email.lower()
        why = "" if ours else " (the link is for another PEN than the one in your settings, so your saved " \
                              "password is not used there)"
        session, password = await run.sign_in(server, email, fallbacks=bool(mine), prompt=True, why=why)
    email = session.email
    if args.print or not (out.out_tty and run.stdin_tty):
        try:
            return await read_and_print(run, session.client, message_id)
        finally:
            await run.finish(session, password)

    # On a terminal: the TUI, straight to the message.  Its sign-in is its own (the keyring's
    # token, else the password just typed, handed over in its environment only).
    env = dict(run.env)
    await session.settle()
    if password is not None:
        env["PENMAIL_PASSWORD"] = password
    await run.finish(session, password)
    tui_config = dataclasses.replace(config, server=server, email=email,
                                     password_command=None if password is not None else config.password_command)

    def launch() -> int:
        from tui.app import PenmailApp

        app = PenmailApp(tui_config, env=env, use_keyring=run.use_keyring, open_message_id=message_id)
        app.run()
        return app.return_code or 0

    return launch


# ---------------------------------------------------------------- export


def parse_since(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise usage(f"--since needs a date such as 2026-11-27, not {one_line(text, 40)!r}.") from None
    if when.tzinfo is None:
        when = when.astimezone()  # the person's local midnight
    return when


async def cmd_export(run: Run) -> int:
    from tui.export import ExportError, export_maildir

    args, out = run.args, run.out
    since = parse_since(args.since)
    folders = list(dict.fromkeys(args.folder or ["inbox", "archive", "sent"]))
    maildir = Path(args.maildir).expanduser()

    def progress(done: int, total: int, subject: str) -> None:
        out.progress(f"Exporting {done} of {total}: {one_line(subject, 60)}")

    async with run.signed_in() as client:
        try:
            result = await export_maildir(client, maildir, folders=folders, since=since, progress=progress)
        except ExportError as exc:
            raise LineError(exc.message, EXIT_FAILED, exc.code) from None
    out.end_progress()
    if out.json:
        out.emit(result.to_json())
        return EXIT_OK
    attachments = sum(item["attachments"] for item in result.added)
    where = clean(str(result.maildir), keep_newlines=False)
    out.line(f"Exported {len(result.added)} new message{'s' if len(result.added) != 1 else ''} "
             f"({attachments} attachment{'s' if attachments != 1 else ''}) to {where}; "
             f"{result.skipped} {'were' if result.skipped != 1 else 'was'} there already.")
    return EXIT_OK


# ---------------------------------------------------------------- running a command


HANDLERS = {
    "login": cmd_login, "logout": cmd_logout, "whoami": cmd_whoami, "list": cmd_list, "read": cmd_read,
    "get": cmd_get, "send": cmd_send, "reply": cmd_reply, "status": cmd_status, "open": cmd_open,
    "export": cmd_export,
}


def _exit_code(exc) -> int:
    from tui.pen_client import InvalidCredentials, NotFound, NotSignedIn

    if isinstance(exc, (NotSignedIn, InvalidCredentials)):
        return EXIT_NOT_SIGNED_IN
    if isinstance(exc, NotFound):
        return EXIT_NOT_FOUND
    return EXIT_FAILED


def _fail(out: Output, message: str, exit_code: int, code: str) -> int:
    sentence = _sentence(message)
    out.error(sentence)
    if out.json:
        try:
            out.emit({"error": {"code": one_line(code) or "failed", "message": sentence, "exit_code": exit_code}})
        except (OSError, ValueError):
            pass
    return exit_code


def main(args: argparse.Namespace, *, env: Mapping[str, str] | None = None) -> int:
    env = os.environ if env is None else env
    out = Output(json_mode=getattr(args, "json", False), env=env)
    code = EXIT_FAILED
    try:
        try:
            config = load_config(env=env)
            run = Run(args, out, env, config)
            result: Any = asyncio.run(HANDLERS[args.line_command](run))
            code = result() if callable(result) else result
        except LineError as exc:
            code = _fail(out, exc.message, exc.exit_code, exc.code)
        except ConfigError as exc:
            code = _fail(out, str(exc), EXIT_USAGE, "config")
        except KeyboardInterrupt:
            extra = " what arrived so far is kept, and `penmail get` again goes on from there." \
                if args.line_command == "get" else ""
            out.end_progress()
            out.note("Stopped;" + extra if extra else "Stopped.")
            code = 130
        except Exception as exc:  # noqa: BLE001 - every failure becomes a sentence
            from tui.pen_client import PenError

            if isinstance(exc, PenError):
                code = _fail(out, exc.message, _exit_code(exc), exc.code)
            elif isinstance(exc, OSError) and not isinstance(exc, BrokenPipeError):
                where = f" ({exc.filename})" if exc.filename else ""
                code = _fail(out, f"A file could not be used{where}: {exc.strerror or type(exc).__name__}",
                             EXIT_FAILED, "os_error")
            elif isinstance(exc, BrokenPipeError):
                raise
            else:
                if env.get("PENMAIL_DEBUG"):
                    traceback.print_exc()
                code = _fail(out, f"Something went wrong ({type(exc).__name__}: {one_line(str(exc), 200)}); "
                                  f"this is a fault in penmail", EXIT_FAILED, "internal")
        out.flush()
    except BrokenPipeError:
        # The reader went away (`penmail list | head`): stop quietly.
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return EXIT_OK
    return code
