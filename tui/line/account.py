"""Line mode: login, logout, whoami, and open (a notification's link). No Textual here
but for `open` on a terminal, which hands over to the TUI."""


from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from tui.config import config_path
from tui.line import (
    EXIT_NOT_SIGNED_IN,
    EXIT_OK,
)
from tui.safe_text import one_line
from tui.text.format import address_text

try:  # POSIX
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

from tui.line.run import (
    _ID,
    _LINK_PATH,
    LineError,
    Run,
    normalise_server,
    read_and_print,
    same_server,
    update_settings,
    usage,
)

# ---------------------------------------------------------------- account commands


async def _check_server(server: str, ca_file: Path | None) -> None:
    """The PEN answers and its certificate is trusted: checked before the person is asked
    for anything, so a missing CA never costs them the e-mail address and password."""
    from tui.pen_client import CertificateError, PenClient

    probe = PenClient(server, ca_file=ca_file)
    try:
        await probe.health()
    except CertificateError as exc:
        if exc.code != "certificate":
            raise
        host = urlsplit(server).netloc
        raise CertificateError(f"The certificate of {host} is not trusted; pass --ca-file with the PEN's CA "
                               f"certificate (`pen-server init` and `penmail demo` print its path).",
                               code="certificate") from None
    finally:
        await probe.aclose()


async def cmd_login(run: Run) -> int:
    from tui.pen_client import PenError
    from tui.signin.session import Session

    args = run.args
    changes: dict[str, str | None] = {}
    server, ca_file = await _login_server(run, changes)
    email = _login_email(run, changes)
    password = _login_password(run, server, email)

    remember = not args.no_remember
    session = Session(server, email, ca_file, remember=remember, use_keyring=remember and run.use_keyring,
                      may_create_file=True)
    try:
        user = await session.client.login(email, password)
        await session.settle()
        remembered = Run.remembered(session)
        in_file = remembered and session.store.in_file
        notice = session.store.problem if remember and not remembered else None
        if not remembered:
            try:  # nothing will ever use this sign-in again: end it on the server
                await session.client.logout()
            except PenError:
                pass
    finally:
        await session.client.aclose()

    _save_login_settings(run, changes)
    out = run.out
    if notice:
        out.note(notice)
    if out.json:
        out.emit({"server": server, "email": one_line(user.email), "display_name": one_line(user.display_name),
                  "role": one_line(user.role), "remembered": remembered,
                  "token_file": str(session.store.path()) if in_file else None, "notice": notice})
        return EXIT_OK
    name = one_line(user.display_name)
    who = f"{name} <{one_line(user.email)}>" if name else one_line(user.email)
    out.line(f"Signed in to {urlsplit(server).netloc} as {who}.")
    if in_file:
        out.line(f"No system keyring is available, so the sign-in is kept in {session.store.path()}, which only "
                 f"you can read; `penmail logout` ends it.")
    elif remembered:
        out.line("The sign-in is remembered in the system keyring; `penmail logout` ends it.")
    elif not remember:
        out.line("The sign-in was not remembered (--no-remember), and has been ended.")
    else:
        out.line("The sign-in could not be remembered here, so it has been ended; other commands will use "
                 "password_command or PENMAIL_PASSWORD.")
    return EXIT_OK


async def _login_server(run: Run, changes: dict[str, str | None]) -> tuple[str, Path | None]:
    """The server and CA file to sign in with (from the command line, the settings or a
    prompt), checked before anything else is asked; what differs from the settings goes
    into `changes`."""
    args, config = run.args, run.config
    server = args.server or config.server
    if not server:
        if not run.stdin_tty:
            raise usage("No PEN server is set; pass --server https://... or set server in the settings file.")
        server = run.ask("The PEN's address (https://...): ")
    server = normalise_server(server)
    if server != config.server:
        changes["server"] = server

    ca_file = config.ca_file
    if args.ca_file:
        ca_file = Path(args.ca_file).expanduser().resolve()
        if not ca_file.is_file():
            raise usage(f"The CA file {ca_file} does not exist or is not a file; pass --ca-file with the PEN's "
                        f"CA certificate.")
        if ca_file != config.ca_file:
            changes["ca_file"] = str(ca_file)
    elif config.stale_ca_file is not None:
        changes["ca_file"] = None  # names a file that is gone: the new server is checked without it
    await _check_server(server, ca_file)
    return server, ca_file


def _login_email(run: Run, changes: dict[str, str | None]) -> str:
    from tui.compose import parse_address

    email = run.args.email or run.config.email
    if not email:
        if not run.stdin_tty:
            raise usage("No e-mail address is set; pass --email or set email in the settings file.")
        email = run.ask("Your e-mail address: ")
    address, problem = parse_address(email)
    if problem:
        raise usage(problem)
    if address.email != run.config.email:
        changes["email"] = address.email
    return address.email


def _login_password(run: Run, server: str, email: str) -> str:
    """Typed on a terminal, else standard input, else password_command or PENMAIL_PASSWORD."""
    if run.stdin_tty:
        password = run.ask_secret(f"Password for {email} on {urlsplit(server).netloc}: ")
    else:
        password = run.ask_secret("")
    if not password:
        from tui.signin.credentials import CredentialError, password_from_fallbacks

        try:
            password = password_from_fallbacks(run.config, run.env)
        except CredentialError as exc:
            raise LineError(str(exc), EXIT_NOT_SIGNED_IN, "password_command") from None
    if not password:
        raise usage("No password was given; type it on a terminal or give it on standard input.")
    return password


def _save_login_settings(run: Run, changes: dict[str, str | None]) -> None:
    """Write the server, e-mail and CA file that differ from the settings, and say so."""
    if not changes:
        return
    path = run.config.path or config_path(run.env)
    changes = {k: changes[k] for k in ("server", "email", "ca_file") if k in changes}
    update_settings(path, changes)
    names = [name if value is not None else f"the removal of the missing {name}" for name, value in changes.items()]
    listed = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
    run.out.note(f"Saved {listed} in {path}.")


async def cmd_logout(run: Run) -> int:
    from tui.signin.session import Session

    config, out = run.config, run.out
    if not config.server or not config.email:
        raise LineError(config.not_set_up() if config.server or config.email
                        else "penmail is not set up yet, so there is no sign-in to end.", EXIT_NOT_SIGNED_IN,
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

# ---------------------------------------------------------------- open a notification's link


def parse_link(url: str) -> tuple[str, str, str]:
    """(server, message id, token) from `<base_url>/m/<message id>?t=<token>`; https only."""
    text = (url or "").strip()
    shown = one_line(text, 80)
    try:
        parts = urlsplit(text)
        _ = parts.port  # raises ValueError for a bad port
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
    from tui.signin.session import Session

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
        from tui.app import PenmailApp, check_key_ids

        check_key_ids(tui_config)  # a typo in [keys]: one sentence and status 2, as for any setting
        app = PenmailApp(tui_config, env=env, use_keyring=run.use_keyring, open_message_id=message_id)
        app.run()
        return app.return_code or 0

    return launch
