"""The `pen-server` command: init, user add/list/passwd/disable/enable/set-package/set-role/remove,
package list/set/remove, suppression list/remove, dkim, bounce, deliverability check, report,
migrate-to, backup, restore, audit, run, worker (`pen-server --help` lists them).

Exit codes: 0 done; 1 refused (one sentence on standard error); 2 the command names what does
not exist (a package) or leaves out a choice it needs (argparse's own errors are 2 as well)."""

from __future__ import annotations

import argparse
import gc
import getpass
import logging
import os
import sys
from pathlib import Path

from pen_server.clock import set_clock
from pen_server.private import UMASK, loose_modes_warning
from pen_server.settings import (
    LOG_FORMATS,
    SettingsError,
    clock_from_environment,
    load_settings,
    password_cost_from_environment,
)

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class CliError(Exception):
    """One sentence for the administrator; exit code 1 (or `exit_code`). members.Refused is
    told the same way, with its own exit code."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code


def cmd_init(args) -> int:
    from pen_server import initpen

    try:
        plan = initpen.plan(args.data, args.name, args.base_url, args.footer, args.from_address,
                            args.database_url or "")
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
    from pen_server import accounts, members
    from pen_server.addresses import index_member

    settings, db = _open(args)
    with db.session() as session:  # a misspelt package is refused before the password is asked for
        members.check_package(session, args.package)
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
        if existing is not None and existing.disabled:
            raise CliError(f"{email} has a disabled account; enable it with 'pen-server user enable'.")
        if existing is not None:  # an invited guest becomes a member
            existing.display_name, existing.role, existing.package = args.name, args.role, args.package
            existing.password_hash = accounts.security.hash_password(password)
            index_member(session, existing)
        else:
            accounts.create_user(session, email, args.name, password, role=args.role, package=args.package)
    print(f"Added {email} ({args.role}).")
    return 0


def cmd_user_list(args) -> int:
    from sqlalchemy import select

    from pen_server.models import User

    _settings, db = _open(args)
    with db.session() as session:
        for u in session.scalars(select(User).where(User.removed_at.is_(None)).order_by(User.email)):
            state = " (disabled)" if u.disabled else "" if u.registered else " (invited, not registered)"
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
    _publish(db, [(user.id, "signin.ended", {})])  # its open event streams close at once
    print(f"Changed the password of {user.email}; its sign-ins were ended.")
    return 0


def _account(session, email: str):
    from pen_server import members

    user = members.find(session, email)
    if user is None:
        raise CliError(f"There is no account for {email}.")
    return user


def _publish(db, events) -> None:
    """Events of a change this command committed, through the events table: the API processes
    hand them to their streams (an ended sign-in's streams close within a second or so)."""
    from pen_server.events import EventHub

    try:
        EventHub(db).publish_many(events)
    finally:
        db.dispose()


def cmd_user_change(args) -> int:
    """`user disable|enable|set-package|set-role EMAIL ...`"""
    from pen_server import members

    _settings, db = _open(args)
    what = args.user_command
    with db.session() as session:
        user = _account(session, args.email)
        email, events = user.email, []
        if what in ("disable", "enable"):
            if user.disabled == (what == "disable"):
                said = f"{email} was {what}d already."
            else:
                events = members.set_disabled(session, user, what == "disable")
                said = (f"Disabled {email}: its sign-ins were ended, and it cannot sign in until "
                        "'pen-server user enable'; its messages stay with their recipients."
                        if what == "disable" else f"Enabled {email}; it can sign in again with its password.")
        elif what == "set-package":
            if args.none == (args.package is not None):
                raise CliError("Name one package, or --none for no package.", 2)
            members.set_package(session, user, args.package)
            said = f"{email} now has the package '{args.package}'." if args.package else \
                f"{email} now has no package."
        else:
            members.set_role(session, user, args.role)
            said = f"{email} is now {'an administrator' if args.role == 'admin' else 'a member'}."
    _publish(db, events)
    print(said)
    return 0


def cmd_user_remove(args) -> int:
    from pen_server import members

    _settings, db = _open(args)
    with db.session() as session:
        said, events = members.remove(session, _account(session, args.email), args.messages)
    _publish(db, events)
    print(said)
    return 0


def cmd_package_set(args) -> int:
    from pen_server.models import Package
    from pen_server.text import plural

    _settings, db = _open(args)
    with db.session() as session:
        package = session.get(Package, args.name) or Package(name=args.name, subject_policy="keep")
        if args.disclaimer is not None:  # not given: the disclaimer stays as it is
            package.disclaimer = args.disclaimer or None
        if args.subject is not None:
            package.subject_policy = args.subject
        if args.expire_days is not None:  # 0 stands for `none`: no end date
            package.expire_days = args.expire_days or None
        session.add(package)
        has, subject, days = package.disclaimer, package.subject_policy, package.expire_days
    said = "the message's subject" if subject == "keep" else "'Secure message from NAME' as their subject"
    ends = (f"can be read for {plural(days, 'day')} unless the sender sets another end date" if days else
            "have no end date unless the sender sets one")
    print(f"The package {args.name!r} now has {'a' if has else 'no'} disclaimer, and its members' "
          f"notifications carry {said}. Their messages {ends}.")
    return 0


def _expire_days(text: str) -> int:
    """--expire-days: a whole number of days from 1 to 36500, or `none` (0 here)."""
    if text.strip().lower() == "none":
        return 0
    if not text.strip().isdigit() or not 1 <= int(text) <= 36500:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of days from 1 to 36500, nor 'none'")
    return int(text)


def cmd_package_list(args) -> int:
    from pen_server import members
    from pen_server.text import plural

    _settings, db = _open(args)
    with db.session() as session:
        for package, users in members.packages(session):
            disclaimer = " ".join((package.disclaimer or "").split()) or "(no disclaimer)"
            ends = f"ends after {plural(package.expire_days, 'day')}" if package.expire_days else "no end date"
            print(f"{package.name}\t{plural(users, 'account')}\tsubject {package.subject_policy or 'keep'}\t"
                  f"{disclaimer}\t{ends}")
    return 0


def cmd_package_remove(args) -> int:
    from pen_server import members

    _settings, db = _open(args)
    with db.session() as session:
        members.remove_package(session, args.name)
    print(f"Removed the package '{args.name}'.")
    return 0


def cmd_suppression(args) -> int:
    """`suppression list` (address, since, reason: one a line) and `suppression remove EMAIL`."""
    from pen_server import suppression

    _settings, db = _open(args)
    with db.session() as session:
        if args.suppression_command == "remove":
            if not suppression.remove(session, args.email):
                raise CliError(f"{args.email} is not on the suppression list.")
            print(f"Took {args.email.strip().lower()} off the suppression list: notifications to it are sent "
                  "again (the senders can resend those that were suppressed).")
            return 0
        cursor = None
        while True:
            page = suppression.page(session, None, cursor, 1000)
            for row in page["items"]:
                print(f"{row['email']}\t{row['created_at']:%Y-%m-%d %H:%M} UTC\t{row['reason']}")
            cursor = page["next_cursor"]
            if cursor is None:
                return 0


def cmd_dkim(args) -> int:
    """`pen-server dkim init|use|list|remove`; the domain is --domain, else that of from_address."""
    from pen_server import dkim, effective_settings

    settings, db = _open(args)
    with db.session() as session:
        conf = effective_settings.effective(session, settings)
    db.dispose()
    data = settings.data_dir
    try:
        domain = dkim.checked_domain(args.domain or conf.smtp.from_address.rpartition("@")[2])
        selector = dkim.checked_selector(args.selector) if args.dkim_command != "list" else ""
        if args.dkim_command == "init":
            made_current = dkim.make_key(data, domain, selector)
            print(f"Made a {dkim.KEY_BITS}-bit DKIM key for {domain} with the selector {selector} "
                  f"in {dkim.key_path(data, domain, selector)}.\n")
            print("\n".join(dkim.zone_lines(domain, selector, dkim.public_value(data, domain, selector),
                                            conf.host)) + "\n")
            if made_current:
                print(f"Notifications from {domain} are signed with it from now on.")
            else:
                print(f"The selector {dkim.current(data, domain)} still signs. Once this record is in the "
                      f"DNS, switch with: pen-server dkim use --data {data} --domain {domain} "
                      f"--selector {selector}")
        elif args.dkim_command == "use":
            dkim.use(data, domain, selector)
            print(f"Notifications from {domain} are signed with the selector {selector} from the next "
                  "one on; keep the old selector's record published for a few days.")
        elif args.dkim_command == "remove":
            dkim.remove(data, domain, selector)
            print(f"Removed the key of the selector {selector}; its DNS record can go too.")
        else:
            now = dkim.current(data, domain)
            for name in dkim.selectors(data, domain):
                print(f"{name}\t{'current' if name == now else 'standby'}")
                print(dkim.zone_lines(domain, name, dkim.public_value(data, domain, name))[1])
    except dkim.DkimError as exc:
        raise CliError(str(exc)) from None
    return 0


def cmd_bounce(args) -> int:
    """One message from an MTA's pipe (standard input). Exit 0 when it was recorded or
    dropped on purpose, 75 (EX_TEMPFAIL: the MTA keeps it and tries again) when it could not
    be recorded now."""
    import email

    from pen_server import bounces, metrics
    from pen_server.app import read_secret
    from pen_server.events import EventHub

    settings, db = _open(args)
    metrics.setup(settings)  # pen_bounces_total counts piped bounces too
    data = sys.stdin.buffer.read(bounces.REPORT_LIMIT + 1)
    while sys.stdin.buffer.read(1 << 16):  # read to the end and dropped: the MTA never writes into a closed pipe
        pass
    recipients = list(args.recipient or [])
    if not recipients:  # the MTA's delivery headers name the address it was sent to
        head = email.message_from_bytes(data)
        for name in ("X-Original-To", "Delivered-To", "Envelope-To", "To"):
            recipients += [str(v).strip() for v in head.get_all(name, [])]
    try:
        # Its event goes to the events table: an API process streams it to the sender.
        outcome = bounces.receive(db, read_secret(settings), recipients, data, EventHub(db))
    except Exception as exc:
        logging.getLogger("pen_server.bounces").error("recording a bounce failed (%s); exit 75 so the MTA "
                                                      "tries again", exc)
        return 75
    finally:
        db.dispose()
    return 75 if outcome.retry else 0


def cmd_deliverability_check(args) -> int:
    """One blocklist check now, recorded for the API and the other processes. Exit 0: nothing
    is listed and every question was answered; 1: something is listed; 3: nothing listed
    among the answers, but some got none (the check is incomplete, not clean)."""
    import asyncio

    from pen_server import deliverability

    settings, db = _open(args)
    zones = settings.deliverability.dnsbl_zones
    if not zones:
        db.dispose()
        print(f"No blocklist zone is set; list some in [deliverability] dnsbl_zones of "
              f"{settings.config_path}, e.g. dnsbl_zones = [\"zen.spamhaus.org\", \"domain:dbl.spamhaus.org\"].")
        return 0
    try:
        check, _changes = asyncio.run(deliverability.check_now(db, settings))
        listings = deliverability.current(db, settings)["listings"]
    finally:
        db.dispose()
    asked = " and ".join(check.subjects) or "nothing"
    print(f"Asked {len(check.zones)} zone{'s' if len(check.zones) != 1 else ''} about {asked}.")
    for item in listings:
        print(f"LISTED     {item['subject']} in {item['zone']} (answer {item['answer']}, since "
              f"{item['since']:%Y-%m-%d %H:%M} UTC)")
    for item in check.unanswered:
        where = f"{item['subject']} in {item['zone']}" if item["zone"] else item["subject"]
        print(f"NO ANSWER  {where}: {item['reason']}")
    if listings:
        print(f"{len(listings)} listing{'s' if len(listings) != 1 else ''}: mail from these may be refused or "
              "marked as spam; see the zone's site for why and how to be removed.")
        return 1
    if check.unanswered:
        print(f"Nothing is listed among the answers, but {len(check.unanswered)} question"
              f"{'s' if len(check.unanswered) != 1 else ''} got none, so this check is incomplete.")
        return 3
    print("Nothing is listed.")
    return 0


def cmd_report(args) -> int:
    """The delivery report: per recipient domain and in total."""
    import json

    from pen_server import deliverability
    from pen_server.schemas import ReportOut

    try:
        period = deliverability.parse_since(args.since)
    except ValueError:
        raise CliError(f"--since must be a period such as 30d, 12h, 90m or 2w, not {args.since!r}.") from None
    _settings, db = _open(args)
    try:
        data = deliverability.report(db, period)
    finally:
        db.dispose()
    if args.json:
        print(json.dumps(ReportOut.model_validate(data).model_dump(mode="json"), indent=2))
        return 0
    print(f"Notifications of the messages sent from {data['since']:%Y-%m-%d %H:%M} to "
          f"{data['until']:%Y-%m-%d %H:%M} UTC; rate: accepted and not bounced, over attempted.")
    print("\n".join(deliverability.report_lines(data)))
    return 0


def cmd_migrate_to(args) -> int:
    from pen_server import initpen
    from pen_server.migrate_to import MigrateError, migrate_to

    settings = load_settings(args.data)
    try:
        url = initpen.check_database_url(args.url)
        copied = migrate_to(settings.database_url, url)
    except (initpen.InitError, MigrateError) as exc:
        raise CliError(str(exc)) from None
    print(f"Copied {copied.rows} rows of {copied.tables} tables. Now set that URL as url in [database] of "
          f"{settings.data_dir / 'pen-server.toml'} (or PEN_DATABASE_URL) and start the PEN again.")
    return 0


def cmd_backup(args) -> int:
    from pen_server import backup

    if args.verify:
        if args.data or args.to:
            raise CliError("Give either --verify PATH, or --data DIR and --to PATH, not both.")
        try:
            checked = backup.verify(Path(args.verify))
        except backup.BackupError as exc:
            raise CliError(str(exc)) from None
        m = checked.manifest
        for note in checked.notes:
            print(f"pen-server: note: {note}.", file=sys.stderr)
        print(f"The backup {Path(args.verify).expanduser().absolute()} is whole: {checked.files} files "
              f"({m['blobs']} attachment blobs, {backup.mib(checked.size)}) as its manifest lists them, the "
              f"database checked, at schema revision {m['schema_revision']}; made {m['created_at']} of the PEN "
              f"{m['pen']!r}.")
        return 0
    if not (args.data and args.to):
        raise CliError("Give --data DIR and --to PATH (a new folder, or a file ending in .tar or .tar.zst), or "
                       "--verify PATH.")
    settings = load_settings(args.data)
    try:
        made = backup.backup(settings, Path(args.to), pg_dump=args.pg_dump, without_blobs=args.without_blobs)
    except backup.BackupError as exc:
        raise CliError(str(exc)) from None
    for warning in made.warnings:
        print(f"pen-server: warning: {warning}.", file=sys.stderr)
    print(f"Backed up the PEN {settings.name!r} to {made.path}: {made.files} files, {made.blobs} of them "
          f"attachment blobs, {backup.mib(made.size)}, schema revision {made.revision}, in "
          f"{made.seconds:.1f} s. Check it with: pen-server backup --verify {made.path}")
    return 0


def cmd_restore(args) -> int:
    from pen_server import backup

    try:
        done = backup.restore(Path(args.path), Path(args.data), args.database_url)
    except backup.BackupError as exc:
        raise CliError(str(exc)) from None
    for note in done.notes:
        print(f"pen-server: note: {note}.", file=sys.stderr)
    migrated = f", migrated from schema revision {done.migrated_from}" if done.migrated_from else ""
    waiting = (f" It has {done.waiting} notification{'s' if done.waiting != 1 else ''} waiting to go out: to try "
               f"the copy while the old PEN still runs, start it with PEN_DELIVERY_IN_API=false, or both send "
               f"them." if done.waiting else "")
    print(f"Restored the PEN into {done.data} at schema revision {done.revision}{migrated}; start it with: "
          f"pen-server run --data {done.data}.{waiting}")
    return 0


def cmd_run(args) -> int:
    from pen_server.serve import serve

    settings = load_settings(args.data)
    settings.log_format = args.log_format or settings.log_format
    warning = loose_modes_warning(settings.data_dir)
    if warning:
        print(f"pen-server: {warning}", file=sys.stderr, flush=True)
    return serve(settings, args.host, args.port, Path(args.log).expanduser().resolve() if args.log else None,
                 workers=args.workers)


def cmd_worker(args) -> int:
    from pen_server.worker import run_worker

    settings = load_settings(args.data)
    settings.log_format = args.log_format or settings.log_format
    warning = loose_modes_warning(settings.data_dir)
    if warning:
        print(f"pen-server: {warning}", file=sys.stderr, flush=True)
    return run_worker(settings, Path(args.log).expanduser().resolve() if args.log else None)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pen-server", description="The reference Private Email Network server.")
    sub = p.add_subparsers(dest="command", required=True)
    _add_init(sub)
    _add_accounts(sub)
    _add_delivery(sub)
    _add_data(sub)
    _add_processes(sub)
    from pen_server.audit_cli import register as register_audit

    register_audit(sub)
    return p


def _add_init(sub) -> None:
    init = sub.add_parser("init", help="make a new PEN in a data folder")
    init.add_argument("--data", required=True)
    init.add_argument("--name", required=True)
    init.add_argument("--base-url", required=True)
    init.add_argument("--footer", default="")
    init.add_argument("--from", dest="from_address", metavar="ADDRESS",
                      help="the address notifications come from (default: pen@ the base URL's host)")
    init.add_argument("--database-url", metavar="URL",
                      help="an empty PostgreSQL database, postgresql+psycopg://USER:PASSWORD@HOST/NAME "
                           "(default: SQLite, pen.db in the data folder); written to [database] url")
    init.set_defaults(func=cmd_init)


def _add_accounts(sub) -> None:
    """user and package: the members and their membership packages."""
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
    for name, text in (("disable", "end every sign-in of an account and refuse new ones"),
                       ("enable", "let a disabled account sign in again"),
                       ("set-package", "give an account another membership package (or --none)"),
                       ("set-role", "make an account a member or an administrator")):
        cmd = user.add_parser(name, help=text)
        cmd.add_argument("--data", required=True)
        cmd.add_argument("email", metavar="EMAIL")
        if name == "set-package":
            cmd.add_argument("package", metavar="PACKAGE", nargs="?")
            cmd.add_argument("--none", action="store_true", help="no package")
        elif name == "set-role":
            cmd.add_argument("role", choices=("member", "admin"))
        cmd.set_defaults(func=cmd_user_change)
    rm = user.add_parser("remove", help="remove an account (one that holds messages needs --messages)")
    rm.add_argument("--data", required=True)
    rm.add_argument("email", metavar="EMAIL")
    rm.add_argument("--messages", choices=("keep", "delete"),
                    help="keep: the messages it sent stay readable by their recipients (under a disabled "
                         "tombstone of the account); delete: they are deleted for their recipients too")
    rm.set_defaults(func=cmd_user_remove)

    package = sub.add_parser("package", help="membership packages").add_subparsers(dest="package_command",
                                                                                 required=True)
    pset = package.add_parser("set", help="set a package's notification disclaimer, subject policy and "
                                                "end date")
    pset.add_argument("--data", required=True)
    pset.add_argument("name")
    pset.add_argument("--disclaimer", help="the disclaimer ('' for none; left out: unchanged)")
    pset.add_argument("--subject", choices=("keep", "generic"),
                      help="keep: the message's subject (the default); generic: 'Secure message from NAME'")
    pset.add_argument("--expire-days", type=_expire_days, metavar="DAYS",
                      help="the end date of its members' messages when the sender names none, DAYS after "
                           "sending (1 to 36500); none: no end date; left out: unchanged")
    pset.set_defaults(func=cmd_package_set)
    plist = package.add_parser("list", help="the packages, how many accounts have each, and their disclaimers")
    plist.add_argument("--data", required=True)
    plist.set_defaults(func=cmd_package_list)
    prm = package.add_parser("remove", help="remove a package that no account has")
    prm.add_argument("--data", required=True)
    prm.add_argument("name")
    prm.set_defaults(func=cmd_package_remove)


def _add_delivery(sub) -> None:
    """The notifications' way out: suppression, DKIM, bounces, the blocklist watch, the report."""
    supp = sub.add_parser("suppression", help="addresses that bounced permanently: no notification goes to them"
                          ).add_subparsers(dest="suppression_command", required=True)
    slist = supp.add_parser("list", help="the addresses on the list, since when and why")
    slist.add_argument("--data", required=True)
    slist.set_defaults(func=cmd_suppression)
    srm = supp.add_parser("remove", help="take an address off the list")
    srm.add_argument("--data", required=True)
    srm.add_argument("email", metavar="EMAIL")
    srm.set_defaults(func=cmd_suppression)

    dk = sub.add_parser("dkim", help="DKIM keys that sign the notifications").add_subparsers(
        dest="dkim_command", required=True)
    for name, text in (("init", "make a new key and print its DNS record"),
                       ("use", "sign with this selector from now on"),
                       ("list", "the keys and their DNS records"),
                       ("remove", "remove a key that no longer signs")):
        cmd = dk.add_parser(name, help=text)
        cmd.add_argument("--data", required=True)
        cmd.add_argument("--domain", help="the d= domain (default: that of the from_address)")
        if name != "list":
            cmd.add_argument("--selector", required=True)
        cmd.set_defaults(func=cmd_dkim)

    bounce = sub.add_parser("bounce", help="read one bounce from standard input (for an MTA's pipe)")
    bounce.add_argument("--data", required=True)
    bounce.add_argument("--recipient", action="append",
                        help="the bounce address it was sent to (default: from its delivery headers)")
    bounce.set_defaults(func=cmd_bounce)

    dl = sub.add_parser("deliverability", help="the blocklist watch").add_subparsers(
        dest="deliverability_command", required=True)
    dcheck = dl.add_parser("check", help="ask the blocklists now (exit 1 while something is listed, 3 when "
                                         "some zone did not answer)")
    dcheck.add_argument("--data", required=True)
    dcheck.set_defaults(func=cmd_deliverability_check)

    rep = sub.add_parser("report", help="notifications attempted, accepted, deferred, failed, bounced and the "
                                        "delivery rate, per recipient domain")
    rep.add_argument("--data", required=True)
    rep.add_argument("--since", default="30d", help="how far back: 90m, 12h, 30d, 2w (default 30d)")
    rep.add_argument("--json", action="store_true", help="as JSON, as GET /admin/deliverability/report")
    rep.set_defaults(func=cmd_report)


def _add_data(sub) -> None:
    """The PEN's data: moving it to PostgreSQL, backing it up, restoring it."""
    mig = sub.add_parser("migrate-to", help="copy the PEN's database into an empty PostgreSQL database "
                                            "(stop the PEN first)")
    mig.add_argument("--data", required=True)
    mig.add_argument("url", help="postgresql+psycopg://USER:PASSWORD@HOST/NAME, an empty database")
    mig.set_defaults(func=cmd_migrate_to)

    bk = sub.add_parser("backup", help="copy a running PEN (SQLite) to a folder, .tar or .tar.zst; or check one "
                                       "with --verify")
    bk.add_argument("--data", help="the PEN's data folder")
    bk.add_argument("--to", metavar="PATH", help="a new folder, or a new file ending in .tar or .tar.zst")
    bk.add_argument("--verify", metavar="PATH", help="check the backup at PATH instead (exit 0: whole, 1: not)")
    bk.add_argument("--pg-dump", action="store_true", help="a PEN on PostgreSQL: its database through pg_dump")
    bk.add_argument("--without-blobs", action="store_true",
                    help="a PEN whose attachments are in a bucket: everything but them (the bucket has its own backup)")
    bk.set_defaults(func=cmd_backup)

    rs = sub.add_parser("restore", help="bring a backup back as the PEN in a new or empty data folder")
    rs.add_argument("path", metavar="PATH", help="the backup: a folder, .tar or .tar.zst")
    rs.add_argument("--data", required=True, help="a new or empty folder")
    rs.add_argument("--database-url", metavar="URL",
                    help="a backup made with --pg-dump: the empty PostgreSQL database to restore it into")
    rs.set_defaults(func=cmd_restore)


def _add_processes(sub) -> None:
    """The long-running processes: the API server and the delivery worker."""
    run = sub.add_parser("run", help="serve HTTPS and deliver notifications")
    run.add_argument("--data", required=True)
    run.add_argument("--host", default="127.0.0.1")
    run.add_argument("--port", type=int, default=8443)
    run.add_argument("--log", metavar="FILE", help="write the log to FILE instead of standard error "
                                                  "(or set [log] file in pen-server.toml)")
    run.add_argument("--workers", type=int, default=1, metavar="N",
                     help="N API processes sharing the port (PostgreSQL only; default 1)")
    run.add_argument("--log-format", choices=LOG_FORMATS,
                     help="text: one line a record (the default); json: one JSON object a line "
                          "(or set [log] format)")
    run.set_defaults(func=cmd_run)

    worker = sub.add_parser("worker", help="deliver notifications only, without serving HTTPS")
    worker.add_argument("--data", required=True)
    worker.add_argument("--log", metavar="FILE", help="write the log to FILE instead of standard error")
    worker.add_argument("--log-format", choices=LOG_FORMATS, help="text (the default) or json: one object a line")
    worker.set_defaults(func=cmd_worker)


def command(argv: list[str] | None = None) -> int:
    """The `pen-server` program (and `python -m pen_server`): main(), then a quick end."""
    code = main(argv)
    # All the process made stays until it exits: out of the collector's sight, the interpreter's
    # last collections at exit skip it. That end took 0.2-0.3 s of CPU in every pen-server process
    # (a served PEN or a short command alike: about a third of `import pen_server.serve`'s cost);
    # exit handlers and threads still finish as always. Not in main(), which tests call in-process.
    gc.freeze()
    return code


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd's every command, at the bounce port
    # Everything a command writes (settings, keys, the database and its -wal/-shm, blobs)
    # is for this user only; the umask is put back for callers that run us in-process.
    umask = os.umask(UMASK)
    try:
        # The environment's process-wide settings, read once here (load_settings reads the rest).
        set_clock(clock_from_environment(os.environ))
        cost = password_cost_from_environment(os.environ)
        if cost != "standard" or "pen_server.security" in sys.modules:  # else argon2's import waits for a hash
            from pen_server import security

            security.use_cost(cost)
        return args.func(args)
    except (CliError, SettingsError) as exc:
        print(f"pen-server: {exc}", file=sys.stderr)
        return getattr(exc, "exit_code", 1)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # one sentence, never a traceback
        if hasattr(exc, "exit_code"):  # members.Refused: a sentence of its own
            print(f"pen-server: {exc}", file=sys.stderr)
            return exc.exit_code
        logging.getLogger("pen_server").debug("failed", exc_info=True)
        print(f"pen-server: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    finally:
        os.umask(umask)
