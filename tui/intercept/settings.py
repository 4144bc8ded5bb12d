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

Both tables are strict pydantic models (tui.config.file.Table): a misspelt key is refused.
Anything wrong raises ConfigError with one sentence naming the file and the key.
"""

from __future__ import annotations

import ipaddress
import os
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, ValidationError, ValidationInfo, field_validator, model_validator

from tui.config import Config, ConfigError
from tui.config.file import Table, has_control, local_path, refusal
from tui.intercept.build import DEFAULT_ATTACHMENT_LIMIT

KEYRING_SERVICE = "penmail-imap"
DEFAULT_SENT_SINCE_DAYS = 30


class ImapSettings(Table):
    """The ``[imap]`` table, checked; ``port`` defaults by ``security`` (993 for tls, else 143)."""

    table: ClassVar[str] = "imap"
    host: str
    user: str
    security: Literal["tls", "starttls", "none"] = Field("tls", description='"tls", "starttls" or "none"')
    port: int = Field(993, ge=1, le=65535, description="a port number from 1 to 65535")
    password_command: str | None = None
    folders: tuple[str, ...] = Field(("INBOX",), description='a list of folder names such as ["INBOX"]')
    notification: Literal["trash", "delete"] = Field("trash", description='"trash" or "delete"')
    trash: str | None = None
    ca_file: Path | None = None
    sent_folder: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _default_port(cls, data: Any) -> Any:
        if isinstance(data, dict) and "port" not in data:
            plain = str(data.get("security", "tls")).strip() != "tls"
            data = {**data, "port": 143 if plain else 993}
        return data

    @field_validator("host", "security", "user", "password_command", "notification", "trash", "ca_file",
                     "sent_folder", mode="before")
    @classmethod
    def _text(cls, value: Any, info: ValidationInfo) -> Any:
        if not isinstance(value, str) or not value.strip() or has_control(value):
            raise ValueError(f"{cls.key(str(info.field_name))} must be a non-empty string without control "
                             f"characters")
        return local_path(value.strip(), info) if info.field_name == "ca_file" else value.strip()

    @field_validator("password_command")
    @classmethod
    def _command(cls, command: str | None) -> str | None:
        try:
            if command is not None and not shlex.split(command):
                raise ValueError("empty")
        except ValueError:
            raise ValueError("imap.password_command cannot be split into words") from None
        return command

    @field_validator("folders", mode="before")
    @classmethod
    def _folders(cls, folders: Any) -> Any:
        if isinstance(folders, str):
            folders = [folders]
        if not isinstance(folders, list) or not folders or not all(
                isinstance(f, str) and f.strip() and not any(ord(c) < 0x20 for c in f) for f in folders):
            raise cls.must_be("folders")
        return tuple(dict.fromkeys(f.strip() for f in folders))

    @field_validator("ca_file")
    @classmethod
    def _ca_file(cls, path: Path | None) -> Path | None:
        if path is not None and not path.is_file():
            raise ValueError(f"imap.ca_file names {str(path)!r}, which does not exist or is not a file")
        return path

    @model_validator(mode="after")
    def _clear_text_only_here(self) -> ImapSettings:
        if self.security == "none" and not is_loopback(self.host):
            raise ValueError(f"imap.security = \"none\" would send your password in the clear to {self.host}; it "
                             f"is allowed only for a server on this machine (127.0.0.1); use \"tls\" or \"starttls\"")
        return self


class InterceptSettings(Table):
    """The ``[intercept]`` table, checked: the attachment limit and the sent half (on or off,
    how far back the first run reaches, and with --maildir the Maildir for the copies when it
    is not DIR/.Sent)."""

    table: ClassVar[str] = "intercept"
    attachment_limit_mib: float = Field(DEFAULT_ATTACHMENT_LIMIT / (1 << 20), ge=0, le=10240,
                                        description="a number of MiB from 0 to 10240")
    sent: bool = Field(True, description="true or false (without quotes)")
    sent_since: float = Field(float(DEFAULT_SENT_SINCE_DAYS), ge=0, le=36500,
                              description="a number of days from 0 to 36500")
    sent_maildir: Path | None = Field(None, description="the path of a Maildir folder")

    @field_validator("sent_maildir", mode="before")
    @classmethod
    def _maildir(cls, folder: Any, info: ValidationInfo) -> Any:
        if not isinstance(folder, str) or not folder.strip() or any(ord(c) < 0x20 for c in folder):
            raise cls.must_be("sent_maildir")
        return local_path(folder.strip(), info)

    @property
    def attachment_limit(self) -> int:
        """Attachments past this many bytes, together, stay on the PEN (named, linked)."""
        return int(self.attachment_limit_mib * (1 << 20))


def _checked(config: Config, model: type[Table], table: dict) -> Any:
    folder = config.path.parent if config.path is not None else None
    try:
        return model.model_validate(table, context={"folder": folder})
    except ValidationError as e:
        raise _fail(config, refusal(e, model)) from None


def _fail(config: Config, problem: str) -> ConfigError:
    return ConfigError(f"In {config.path or 'the settings file'}, {problem}.")


def intercept_settings(config: Config) -> InterceptSettings:
    return _checked(config, InterceptSettings, config.intercept)


def is_loopback(host: str) -> bool:
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def imap_settings(config: Config) -> ImapSettings:
    if not config.imap:
        raise _fail(config, "there is no [imap] table; add one with host, user and password_command "
                            "(see `penmail intercept --help`)")
    return _checked(config, ImapSettings, config.imap)


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
