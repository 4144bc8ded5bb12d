"""The `pen-server` command: init, user add/list/passwd, package set, run."""

from __future__ import annotations

import argparse
import getpass
import logging
import os
import sys

from pen_server.private import UMASK, loose_modes_warning
from pen_server.settings import SettingsError, load_settings


class CliError(Exception):
    """One sentence for the administrator; exit code 1."""


def cmd_init(args) -> int:
    from pen_server import initpen

    try:
        plan = initpen.plan(args.data, args.name, args.base_url, args.footer, args.from_address)
        if plan.warning:
            print(f"pen-server: {plan.warning}", file=sys.stderr)
        initpen.create(plan)
    except initpen.InitError as exc:
        raise CliError(f"{str(exc).rstrip('.')}; nothing was written.") from None
    print(f"A PEN named {plan.name!r} is ready in {plan.data}, sending from {plan.from_address}; start it with: "
          f"pen-server run --data {plan.data}")
    return 0


def _read_password(prompt: str) -> str:
    if sys.stdin.isatty():
        first = getpass.getpass(prompt)
        if getpass.getpass("Again: ") != first:
            raise CliError("The two passwords differ; try again.")
        return first
    return sys.stdin.readline().rstrip("\r\n")


def _open(args):
    from pen_server.db import Database, migrate

    settings = load_settings(args.data)
    migrate(settings.database_url)
    return settings, Database(settings.database_url)


def cmd_user_add(args) -> int:
    from pen_server import accounts
    from pen_server.models import Package

    settings, db = _open(args)
    password = _read_password("Password: ")
    if len(password) < accounts.MIN_PASSWORD:
        raise CliError(f"The password must have at least {accounts.MIN_PASSWORD} characters.")
    with db.session() as session:
        try:
            email = accounts.normalize_email(args.email)
        except ValueError as exc:
            raise CliError(str(exc) + ".") from None
        existing = accounts.find_user(session, email)
        if existing is not None and existing.registered:
            raise CliError(f"{email} has an account already; use 'pen-server user passwd' to change its password.")
        if args.package and session.get(Package, args.package) is None:
            session.add(Package(name=args.package, disclaimer=None))
        if existing is not None:  # an invited guest becomes a member
            existing.display_name, existing.role, existing.package = args.name, args.role, args.package
            existing.password_hash = accounts.security.hash_password(password)
        else:
            accounts.create_user(session, email, args.name, password, role=args.role, package=args.package)
    print(f"Added {email} ({args.role}).")
    return 0


def cmd_user_list(args) -> int:
    from sqlalchemy import select

    from pen_server.models import User

    _settings, db = _open(args)
    with db.session() as session:
        for u in session.scalars(select(User).order_by(User.email)):
            state = "" if u.registered else " (invited, not registered)"
            print(f"{u.email}\t{u.role}\t{u.package or '-'}\t{u.display_name}{state}")
    return 0


def cmd_user_passwd(args) -> int:
    from pen_server import accounts, security

    _settings, db = _open(args)
    password = _read_password("New password: ")
    if len(password) < accounts.MIN_PASSWORD:
        raise CliError(f"The password must have at least {accounts.MIN_PASSWORD} characters.")
    with db.session() as session:
        user = accounts.find_user(session, args.email)
        if user is None:
            raise CliError(f"There is no account for {args.email}.")
        user.password_hash = security.hash_password(password)
        accounts.revoke_all(session, user.id)
    print(f"Changed the password of {user.email}; its sign-ins were ended.")
    return 0


def cmd_package_set(args) -> int:
    from pen_server.models import Package

    _settings, db = _open(args)
    with db.session() as session:
        package = session.get(Package, args.name) or Package(name=args.name)
        package.disclaimer = args.disclaimer or None
        session.add(package)
    print(f"The package {args.name!r} now has {'a' if args.disclaimer else 'no'} disclaimer.")
    return 0


def cmd_run(args) -> int:
    from pen_server.serve import serve

    settings = load_settings(args.data)
    warning = loose_modes_warning(settings.data_dir)
    if warning:
        print(f"pen-server: {warning}", file=sys.stderr, flush=True)
    return serve(settings, args.host, args.port)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pen-server", description="The reference Private Email Network server.")
    sub = p.add_subparsers(dest="command", required=True)

    init = sub.add_parser("init", help="make a new PEN in a data folder")
    init.add_argument("--data", required=True)
    init.add_argument("--name", required=True)
    init.add_argument("--base-url", required=True)
    init.add_argument("--footer", default="")
    init.add_argument("--from", dest="from_address", metavar="ADDRESS",
                      help="the address notifications come from (default: pen@ the base URL's host)")
    init.set_defaults(func=cmd_init)

    user = sub.add_parser("user", help="manage accounts").add_subparsers(dest="user_command", required=True)
    add = user.add_parser("add", help="add a member or an administrator (password on standard input)")
    add.add_argument("--data", required=True)
    add.add_argument("--email", required=True)
    add.add_argument("--name", required=True)
    add.add_argument("--role", choices=("member", "admin"), default="member")
    add.add_argument("--package")
    add.set_defaults(func=cmd_user_add)
    lst = user.add_parser("list", help="list the accounts")
    lst.add_argument("--data", required=True)
    lst.set_defaults(func=cmd_user_list)
    pw = user.add_parser("passwd", help="set an account's password (on standard input)")
    pw.add_argument("--data", required=True)
    pw.add_argument("--email", required=True)
    pw.set_defaults(func=cmd_user_passwd)

    package = sub.add_parser("package", help="membership packages").add_subparsers(dest="package_command",
                                                                                 required=True)
    pset = package.add_parser("set", help="set a package's notification disclaimer")
    pset.add_argument("--data", required=True)
    pset.add_argument("name")
    pset.add_argument("--disclaimer", default="")
    pset.set_defaults(func=cmd_package_set)

    run = sub.add_parser("run", help="serve HTTPS and deliver notifications")
    run.add_argument("--data", required=True)
    run.add_argument("--host", default="127.0.0.1")
    run.add_argument("--port", type=int, default=8443)
    run.set_defaults(func=cmd_run)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # Everything a command writes (settings, keys, the database and its -wal/-shm, blobs)
    # is for this user only; the umask is put back for callers that run us in-process.
    umask = os.umask(UMASK)
    try:
        return args.func(args)
    except (CliError, SettingsError) as exc:
        print(f"pen-server: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # one sentence, never a traceback
        logging.getLogger("pen_server").debug("failed", exc_info=True)
        print(f"pen-server: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    finally:
        os.umask(umask)
