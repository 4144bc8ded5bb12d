"""`penmail intercept`'s settings, from the settings file's ``[imap]`` and ``[intercept]``::

    [imap]
    host = "imap.example.org"
    port = 993                      # default: 993 for tls, 143 otherwise
    security = "tls"                # "tls" (default), "starttls", or "none" (loopback only)
    user = "ann@example.org"
    password_command = "pass show imap"   # else the keyring (service "penmail-imap",
                                          # user "<user>@<host>"), else PENMAIL_IMAP_PASSWORD
    folders = ["INBOX"]             # default INBOX
    notification = "trash"          # "trash" (default: moved to the Trash folder) or "delete"
    trash = "Trash"                 # default: the folder marked \\Trash, else "Trash"
    ca_file = "~/imap-ca.pem"       # optional
    sent_folder = "Sent"            # default: the folder marked \\Sent (RFC 6154), else "Sent" (made)

    [intercept]
    attachment_limit_mib = 25       # attachments past this, together, stay on the PEN (named, linked)
    sent = true                     # false: no copies of the messages you send
    sent_since = 30                 # days: how far back the first run places sent messages
    sent_maildir = "~/Mail/Sent"    # with --maildir: the Sent Maildir (default: DIR/.Sent)

Anything wrong raises ConfigError with one sentence naming the file and the key.
"""

from __future__ import annotations

import ipaddress
import os
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from tui.config import Config, ConfigError
from tui.intercept.build import DEFAULT_ATTACHMENT_LIMIT

KEYRING_SERVICE = "penmail-imap"
_IMAP_KEYS = ("host", "port", "security", "user", "password_command", "folders", "notification", "trash",
              "ca_file", "sent_folder")
_INTERCEPT_KEYS = ("attachment_limit_mib", "sent", "sent_since", "sent_maildir")
DEFAULT_SENT_SINCE_DAYS = 30


@dataclass(frozen=True)
class ImapSettings:
    host: str
    port: int
    security: str
    user: str
    password_command: str | None
    folders: tuple[str, ...]
    notification: str
    trash: str | None
    ca_file: Path | None
    sent_folder: str | None = None


@dataclass(frozen=True)
class SentSettings:
    """The sent half: on or off, how far back the first run reaches, and (with --maildir)
    the Maildir that takes the copies when it is not DIR/.Sent."""
    enabled: bool
    since_days: float
    maildir: Path | None


def _fail(config: Config, problem: str) -> ConfigError:
    return ConfigError(f"In {config.path or 'the settings file'}, {problem}.")


def _check_intercept_keys(config: Config) -> None:
    unknown = [k for k in config.intercept if k not in _INTERCEPT_KEYS]
    if unknown:
        raise _fail(config, f"[intercept] has {unknown[0]!r}, which penmail does not know (it knows "
                            f"{', '.join(_INTERCEPT_KEYS)})")


def _path(config: Config, value: str) -> Path:
    """A path as written in the settings: ~ expanded, a relative one beside the settings file."""
    path = Path(value).expanduser()
    if not path.is_absolute() and config.path is not None:
        path = config.path.parent / path
    return path


def attachment_limit(config: Config) -> int:
    table = config.intercept
    _check_intercept_keys(config)
    value = table.get("attachment_limit_mib", DEFAULT_ATTACHMENT_LIMIT / (1 << 20))
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 10240:
        raise _fail(config, "intercept.attachment_limit_mib must be a number of MiB from 0 to 10240")
    return int(value * (1 << 20))


def sent_settings(config: Config) -> SentSettings:
    table = config.intercept
    _check_intercept_keys(config)
    enabled = table.get("sent", True)
    if not isinstance(enabled, bool):
        raise _fail(config, "intercept.sent must be true or false (without quotes)")
    since = table.get("sent_since", DEFAULT_SENT_SINCE_DAYS)
    if isinstance(since, bool) or not isinstance(since, (int, float)) or not 0 <= since <= 36500:
        raise _fail(config, "intercept.sent_since must be a number of days from 0 to 36500")
    folder = table.get("sent_maildir")
    maildir = None
    if folder is not None:
        if not isinstance(folder, str) or not folder.strip() or any(ord(c) < 0x20 for c in folder):
            raise _fail(config, "intercept.sent_maildir must be the path of a Maildir folder")
        maildir = _path(config, folder.strip())
    return SentSettings(enabled, float(since), maildir)


def is_loopback(host: str) -> bool:
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def imap_settings(config: Config) -> ImapSettings:
    table = config.imap
    if not table:
        raise _fail(config, "there is no [imap] table; add one with host, user and password_command "
                            "(see `penmail intercept --help`)")
    unknown = [k for k in table if k not in _IMAP_KEYS]
    if unknown:
        raise _fail(config, f"[imap] has {unknown[0]!r}, which penmail does not know (it knows "
                            f"{', '.join(_IMAP_KEYS)})")

    def text(key: str, default: str | None = None) -> str | None:
        value = table.get(key, default)
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip() or any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
            raise _fail(config, f"imap.{key} must be a non-empty string without control characters")
        return value.strip()

    host, user = text("host"), text("user")
    if not host or not user:
        raise _fail(config, f"imap.{'host' if not host else 'user'} is missing")
    security = text("security", "tls")
    if security not in ("tls", "starttls", "none"):
        raise _fail(config, f"imap.security must be \"tls\", \"starttls\" or \"none\", not {security!r}")
    if security == "none" and not is_loopback(host):
        raise _fail(config, f"imap.security = \"none\" would send your password in the clear to {host}; it is "
                            f"allowed only for a server on this machine (127.0.0.1); use \"tls\" or \"starttls\"")
    port = table.get("port", 993 if security == "tls" else 143)
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise _fail(config, "imap.port must be a port number from 1 to 65535")
    command = text("password_command")
    if command is not None:
        try:
            if not shlex.split(command):
                raise ValueError("empty")
        except ValueError:
            raise _fail(config, "imap.password_command cannot be split into words") from None
    folders = table.get("folders", ["INBOX"])
    if isinstance(folders, str):
        folders = [folders]
    if not isinstance(folders, list) or not folders or not all(
            isinstance(f, str) and f.strip() and not any(ord(c) < 0x20 for c in f) for f in folders):
        raise _fail(config, "imap.folders must be a list of folder names such as [\"INBOX\"]")
    notification = text("notification", "trash")
    if notification not in ("trash", "delete"):
        raise _fail(config, f"imap.notification must be \"trash\" or \"delete\", not {notification!r}")
    ca = text("ca_file")
    ca_path = None
    if ca:
        ca_path = _path(config, ca)
        if not ca_path.is_file():
            raise _fail(config, f"imap.ca_file names {str(ca_path)!r}, which does not exist or is not a file")
    return ImapSettings(host, port, security, user, command, tuple(dict.fromkeys(f.strip() for f in folders)),
                        notification, text("trash"), ca_path, text("sent_folder"))


def imap_password(settings: ImapSettings, env: Mapping[str, str] | None = None) -> str | None:
    """password_command, else the keyring, else PENMAIL_IMAP_PASSWORD; None when none has one."""
    from tui.signin.credentials import _run_password_command

    env = os.environ if env is None else env
    if settings.password_command:
        return _run_password_command(settings.password_command)
    return _from_keyring(f"{settings.user}@{settings.host}") or env.get("PENMAIL_IMAP_PASSWORD") or None


def _from_keyring(name: str, timeout: float = 3.0) -> str | None:
    """The keyring's password, read in a daemon thread: a locked keyring whose prompt nobody
    sees (SSH) is given up after ``timeout`` rather than waited on for ever."""
    import threading

    found: list = []

    def work() -> None:
        try:
            import keyring

            found.append(keyring.get_password(KEYRING_SERVICE, name))
        except Exception:  # noqa: BLE001 - no keyring (SSH, CI) or a broken one: go on without it
            pass

    thread = threading.Thread(target=work, daemon=True, name="penmail-imap-keyring")
    thread.start()
    thread.join(timeout)
    return found[0] if found and isinstance(found[0], str) else None
