"""`pen-server init`: every value is checked before anything is written, the settings file
is written by a TOML writer and read back, and the new PEN is built in a private folder
beside DIR that becomes DIR by one rename, so a failure (or a crash) leaves no half-made
PEN behind for the next `init` to trip over."""

from __future__ import annotations

import ipaddress
import os
import secrets
import shutil
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import tomli_w

from pen_server.private import DIR_MODE, write_private
from pen_server.settings import CONFIG_NAME, Settings
from pen_server.text import has_control

DEFAULTS = Settings(data_dir=Path("."))  # the values a new PEN's [limits] starts with

MAX_NAME = 200  # as PUT /admin/pen takes them
MAX_BASE_URL = 2000
MAX_FOOTER = 4000


class InitError(Exception):
    """One sentence for the administrator; nothing was written."""


@dataclass
class Plan:
    data: Path
    name: str
    base_url: str
    footer: str
    from_address: str
    host: str
    warning: str | None = None
    database_url: str = ""  # empty: SQLite, pen.db in the data folder

    def toml(self) -> str:
        doc: dict = {"pen": {"name": self.name, "base_url": self.base_url, "footer": self.footer}}
        if self.database_url:
            doc["database"] = {"url": self.database_url}
        doc |= {
            "smtp": {"host": "localhost", "port": 25, "security": "none", "from_address": self.from_address},
            "limits": {
                key: getattr(DEFAULTS, key)
                for key in ("max_upload_bytes", "max_recipients", "send_messages_per_hour", "send_recipients_per_hour")
            },
        }
        text = tomli_w.dumps(doc)
        if tomllib.loads(text) != doc:  # pragma: no cover - the writer's promise, checked anyway
            raise InitError("The settings could not be written as TOML exactly; nothing was written.")
        return text


def _check_text(label: str, value: str, limit: int, *, lines: bool = False) -> str:
    if has_control(value.replace("\n", "") if lines else value):
        allowed = "line breaks (\\n) but no other" if lines else "no"
        raise InitError(f"The {label} may hold {allowed} control characters (found one in {value[:60]!r}).")
    if len(value) > limit:
        raise InitError(f"The {label} may have at most {limit} characters, not {len(value)}.")
    return value


def _check_base_url(url: str) -> tuple[str, str]:
    """The base URL without a trailing slash, and its host."""
    _check_text("base URL", url, MAX_BASE_URL)
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in range
    except ValueError:
        parts = None
    if (
        parts is None
        or parts.scheme != "https"
        or not parts.hostname
        or " " in url
        or parts.username
        or parts.password
        or parts.query
        or parts.fragment
    ):
        raise InitError(f"The base URL must be a plain https:// address such as https://pen.example.org, not {url!r}.")
    return url.rstrip("/"), parts.hostname


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def check_from(address: str) -> tuple[str, str | None]:
    """The sending address as the delivery worker will use it (ASCII, IDNA domain), and a
    warning when its domain is an IP address or a name without a dot."""
    from email_validator import EmailNotValidError, validate_email

    from pen_server.mailer import AddressError, checked_address

    address = address.strip()
    local, _, domain = address.rpartition("@")
    loopback = _is_ip(domain) or (domain.lower() == "localhost")
    try:
        # Real domains and the test ones (.test, .example) pass; special-use names such as
        # .local or .invalid do not. IP addresses and localhost are kept for set-ups on one
        # machine, with the warning below.
        if not loopback:
            address = validate_email(
                address, check_deliverability=False, allow_smtputf8=False, test_environment=True
            ).normalized
        address = checked_address(address)
    except (EmailNotValidError, AddressError) as exc:
        reason = str(exc).rstrip(".")
        reason = reason[:1].lower() + reason[1:]
        raise InitError(
            f"The sending address {address[:100]!r} is not a valid e-mail address ({reason}); give "
            f"one such as --from pen@your-domain.example."
        ) from None
    warning = None
    if loopback:
        warning = (
            f"warning: notifications will come from {address}, and mail servers treat mail from an IP "
            f"address or from localhost as spam; for real mail run init with --from pen@your-domain "
            f"(or set from_address in [smtp] of {CONFIG_NAME})."
        )
    return address, warning


def plan(data: str, name: str, base_url: str, footer: str = "", from_address: str | None = None,
         database_url: str = "") -> Plan:
    """Every check `init` makes, before it writes anything."""
    database_url = check_database_url(database_url)
    name = _check_text("PEN's name", name, MAX_NAME)
    if not name.strip():
        raise InitError("The PEN's name must not be empty.")
    footer = _check_text("footer", footer or "", MAX_FOOTER, lines=True)
    base_url, host = _check_base_url(base_url)
    if from_address is None:
        if ":" in host:  # IPv6: pen@::1 is no address at all
            raise InitError(
                f"The base URL's host {host} is an IPv6 address, which cannot follow pen@; give the "
                f"sending address with --from pen@your-domain."
            )
        from_address = f"pen@{host}"
    address, warning = check_from(from_address)
    folder = Path(data).expanduser().absolute()
    if folder.exists() or folder.is_symlink():
        if not folder.is_dir():
            raise InitError(f"{folder} is a file, not a folder; give a new or empty folder with --data.")
        if (folder / CONFIG_NAME).exists():
            raise InitError(f"{folder} holds a PEN already; use another folder or remove it first.")
        if any(folder.iterdir()):
            raise InitError(f"{folder} is not empty; give a new or empty folder with --data.")
    return Plan(folder.resolve(), name, base_url, footer, address, host, warning, database_url)


def check_database_url(url: str) -> str:
    """An SQLAlchemy URL of one of the two databases pen-server runs on, or '' (SQLite in
    the data folder)."""
    url = url.strip()
    if url and not url.startswith(("sqlite:///", "postgresql+psycopg://")):
        raise InitError("The database URL must start with postgresql+psycopg:// (PostgreSQL through psycopg 3) "
                        "or sqlite:///.")
    return _check_text("database URL", url, MAX_BASE_URL)


def _build(p: Plan, into: Path) -> None:
    from pen_server.db import existing_tables, migrate
    from pen_server.settings import load_settings
    from pen_server.tlsgen import make_tls

    write_private(into / CONFIG_NAME, p.toml().encode("utf-8"), exclusive=True)
    write_private(into / "secret.key", (secrets.token_hex(32) + "\n").encode("ascii"), exclusive=True)
    make_tls(into / "tls", [p.host, "localhost", "127.0.0.1", "::1"])
    settings = load_settings(into)
    if settings.database_url == f"sqlite:///{into / 'pen.db'}":
        write_private(into / "pen.db", b"", exclusive=True)  # SQLite gives -wal and -shm its mode
    try:
        if existing_tables(settings.database_url):
            raise InitError("The database already holds tables; give an empty database (or drop its tables).")
        migrate(settings.database_url)
    except InitError:
        raise
    except Exception as exc:  # SQLAlchemy's errors run to several lines
        reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        raise InitError(f"The database could not be made ({reason}).") from None


def create(p: Plan) -> None:
    """Build the PEN beside its folder, then move it into place in one step."""
    p.data.parent.mkdir(parents=True, exist_ok=True)
    try:
        staging = Path(tempfile.mkdtemp(prefix=f".{p.data.name}.init-", dir=p.data.parent))
    except PermissionError:
        staging = None  # DIR exists and is ours, its parent is not writable: build in DIR itself
        if not p.data.is_dir():
            raise
    into = staging or p.data
    try:
        os.chmod(into, DIR_MODE)
        _build(p, into)
        if staging is not None:
            os.rename(staging, p.data)  # replaces an empty DIR, atomically
    except BaseException:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        else:
            for entry in p.data.iterdir():
                shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() else entry.unlink(missing_ok=True)
        raise
