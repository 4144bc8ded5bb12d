"""penmail's settings file, and where penmail keeps its state.

The settings live in TOML at ``platformdirs.user_config_path("penmail")/config.toml``,
or in the file named by the environment variable ``PENMAIL_CONFIG``::

    server = "https://pen.example:8443"
    ca_file = "~/pen/ca.pem"          # optional; must exist
    email = "ann@pen.example"
    password_command = "pass show pen" # optional; run without a shell
    download_dir = "~/Downloads"
    theme = "textual-dark"             # or "high-contrast", "ansi-dark", ...

    [keys]                             # action id -> key(s); F1 shows each action's id
    "mailbox.quit" = "q"
    "mailbox.compose" = ["c", "ctrl+n"]

    [ui]
    animations = false

    [imap]                             # for `penmail intercept --imap` (tui.intercept.settings)
    host = "imap.example.org"

A missing file gives the defaults.  Anything wrong raises ``ConfigError`` whose message
is one sentence naming the file and the key, ready to show as it is.  Whether each id in
``[keys]`` names a real binding is checked by ``tui.app.check_key_ids`` at start (the ids
live with the screens and widgets that bind them).
"""

from __future__ import annotations

import os
import re
import shlex
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import platformdirs

__all__ = ["Config", "ConfigError", "config_path", "load_config", "state_dir", "DEFAULT_THEME"]

APP_NAME = "penmail"
DEFAULT_THEME = "textual-dark"
# Textual's own themes plus the ones penmail registers.  Any other theme name that
# looks like one is accepted here and checked by the app, which knows what it registered.
KNOWN_THEMES = (
    "textual-dark", "textual-light", "ansi-dark", "ansi-light", "textual-ansi", "high-contrast", "nord", "gruvbox",
    "catppuccin-mocha", "catppuccin-latte", "dracula", "tokyo-night", "monokai", "flexoki",
    "solarized-light", "solarized-dark",
)
_TOP_KEYS = ("server", "ca_file", "email", "password_command", "download_dir", "theme", "keys", "ui", "imap",
             "intercept")
_UI_KEYS = ("animations",)
_THEME_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_ACTION_ID = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]{0,63}$")
_KEY_NAME = re.compile(r"^[^\s,\x00-\x1f\x7f]{1,40}$")
_TOML_POSITION = re.compile(r"\s*\(at line (\d+), column (\d+)\)\s*$")
_TOML_END = re.compile(r"\s*\(at end of document\)\s*$")


class ConfigError(Exception):
    """The settings file cannot be used; ``str(error)`` is one sentence for the person."""


def default_download_dir() -> Path:
    """The platform's Downloads folder (``~/Downloads`` on Linux), whether it exists or not."""
    return Path(platformdirs.user_downloads_path())


@dataclass(frozen=True)
class Config:
    """penmail's settings, validated.  ``path`` is the file they came from, if any."""

    server: str | None = None
    ca_file: Path | None = None
    email: str | None = None
    password_command: str | None = None
    download_dir: Path = field(default_factory=default_download_dir)
    theme: str = DEFAULT_THEME
    keys: dict[str, str] = field(default_factory=dict)  # action id -> "k1,k2" (Textual's form)
    animations: bool = False
    path: Path | None = None
    # `penmail intercept`'s tables as written; tui.intercept.settings checks them when used.
    imap: dict = field(default_factory=dict)
    intercept: dict = field(default_factory=dict)
    # A ca_file that names no file, kept out of ca_file when the caller replaces it anyway
    # (`penmail login --server/--ca-file` after the demo's folder is gone); else refused.
    stale_ca_file: Path | None = None

    def not_set_up(self) -> str | None:
        """Why there is no account to sign in to (one sentence naming what is missing), or None."""
        if self.server and self.email:
            return None
        if not self.server and not self.email:
            return "No PEN is set up yet; run `penmail login` first."
        missing, given = ("email", "server") if self.server else ("server", "email")
        where = f"{self.path}" if self.path else "the settings file"
        example = 'email = "you@example.org"' if missing == "email" else 'server = "https://pen.example.org"'
        return (f"In {where}, {given} is set but {missing} is missing; add {example} there, or run "
                f"`penmail login --{missing} ...`.")


def config_path(env: Mapping[str, str] | None = None) -> Path:
    """The settings file penmail reads: ``$PENMAIL_CONFIG`` or the platform's config folder."""
    env = os.environ if env is None else env
    override = env.get("PENMAIL_CONFIG")
    if override:
        return Path(override).expanduser()
    return Path(platformdirs.user_config_path(APP_NAME)) / "config.toml"


def state_dir(env: Mapping[str, str] | None = None) -> Path:
    """The folder for drafts and the address book, created (owner-only) if missing.

    ``$PENMAIL_STATE_DIR`` overrides the platform's state folder (tests use it).
    """
    env = os.environ if env is None else env
    override = env.get("PENMAIL_STATE_DIR")
    path = Path(override).expanduser() if override else Path(platformdirs.user_state_path(APP_NAME))
    # Drafts hold message text: keep the folder private to the user.
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


_TYPE_NAMES = {
    str: "a string", bool: "true or false", int: "an integer", float: "a number",
    list: "a list", dict: "a table",
}


def _type_name(value: Any) -> str:
    for kind, name in _TYPE_NAMES.items():
        if type(value) is kind:
            return name
    return type(value).__name__


def load_config(path: Path | str | None = None, env: Mapping[str, str] | None = None, *,
                stale_ca_file_ok: bool = False) -> Config:
    """Read and check the settings file; a missing file gives the defaults. With
    ``stale_ca_file_ok`` a ca_file that names no file is set aside in ``stale_ca_file``."""
    env = os.environ if env is None else env
    file = Path(path).expanduser() if path is not None else config_path(env)

    def fail(problem: str) -> ConfigError:
        return ConfigError(f"In {file}, {problem}.")

    try:
        raw = file.read_bytes()
    except FileNotFoundError:
        return Config()
    except IsADirectoryError:
        raise ConfigError(f"The settings file {file} is a folder, not a file.") from None
    except OSError as e:
        raise ConfigError(f"The settings file {file} cannot be read ({e.strerror or e}).") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise fail("the text is not UTF-8") from None
    except tomllib.TOMLDecodeError as e:
        # Python 3.11's error has no line attribute; the position is in the message.
        message = str(e)
        where = _TOML_POSITION.search(message)
        detail = _TOML_POSITION.sub("", message).rstrip(".").lower() or "syntax error"
        if where:
            line = int(where.group(1))
        else:  # "(at end of document)"
            detail = _TOML_END.sub("", detail) + " at the end of the file"
            line = max(1, raw.rstrip(b"\n").count(b"\n") + 1)
        raise fail(f"line {line} is not valid TOML ({detail})") from None

    unknown = [k for k in data if k not in _TOP_KEYS]
    if unknown:
        raise fail(
            f"{_quote_list(unknown)} {'is not a known setting' if len(unknown) == 1 else 'are not known settings'}"
            f" (the settings are {', '.join(_TOP_KEYS)})"
        )

    def text(key: str) -> str | None:
        if key not in data:
            return None
        value = data[key]
        if not isinstance(value, str):
            raise fail(f"{key} must be a string, not {_type_name(value)}")
        if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
            raise fail(f"{key} must not contain control characters")
        return value.strip()

    def local_path(value: str) -> Path:
        # Relative paths are relative to the settings file, not to wherever penmail started.
        p = Path(value).expanduser()
        return p if p.is_absolute() else file.parent / p

    kwargs: dict[str, Any] = {"path": file}

    server = text("server")
    if server is not None:
        kwargs["server"] = _check_server(server, fail)

    ca = text("ca_file")
    if ca:
        ca_path = local_path(ca)
        if ca_path.is_file():
            kwargs["ca_file"] = ca_path
        elif stale_ca_file_ok:
            kwargs["stale_ca_file"] = ca_path
        else:
            raise fail(f"ca_file names {str(ca_path)!r}, which does not exist or is not a file")

    email = text("email")
    if email:
        kwargs["email"] = _check_email(email, fail)

    command = text("password_command")
    if command is not None:
        try:
            argv = shlex.split(command)
        except ValueError as e:
            raise fail(f"password_command cannot be split into words ({str(e).lower()})") from None
        if not argv:
            raise fail("password_command is empty")
        kwargs["password_command"] = command

    download = text("download_dir")
    if download:
        kwargs["download_dir"] = local_path(download)

    theme = text("theme")
    if theme is not None:
        if not _THEME_NAME.match(theme):
            raise fail(f"theme must be a theme name such as {DEFAULT_THEME!r} or 'high-contrast', not {theme!r}")
        kwargs["theme"] = theme

    if "keys" in data:
        kwargs["keys"] = _check_keys(data["keys"], fail)

    if "ui" in data:
        ui = data["ui"]
        if not isinstance(ui, dict):
            raise fail(f"ui must be a table ([ui]), not {_type_name(ui)}")
        unknown_ui = [k for k in ui if k not in _UI_KEYS]
        if unknown_ui:
            raise fail(f"[ui] has {_quote_list(unknown_ui)}, which penmail does not know "
                       f"(it knows {', '.join(_UI_KEYS)})")
        if "animations" in ui:
            if not isinstance(ui["animations"], bool):
                raise fail(f"ui.animations must be true or false, not {_type_name(ui['animations'])}")
            kwargs["animations"] = ui["animations"]

    for table in ("imap", "intercept"):
        if table in data:
            if not isinstance(data[table], dict):
                raise fail(f"{table} must be a table ([{table}]), not {_type_name(data[table])}")
            kwargs[table] = data[table]

    return Config(**kwargs)


def _quote_list(items: list[str]) -> str:
    return ", ".join(repr(i) for i in items)


def _check_server(server: str, fail: Any) -> str:
    try:
        parts = urlsplit(server)
        host = parts.hostname
        _ = parts.port  # raises ValueError for a bad port
    except ValueError:
        raise fail(f"server must be an https:// URL, not {server!r}") from None
    if parts.scheme.lower() != "https" or not host:
        # Plain http would send passwords and messages in the clear; there is no switch for it.
        raise fail(f"server must be an https:// URL, not {server!r}")
    if parts.username is not None or parts.password is not None:
        raise fail("server must not contain a user name or password; use email and password_command")
    if parts.query or parts.fragment or any(c.isspace() for c in server):
        raise fail(f"server must be a plain https:// URL without spaces, query or fragment, not {server!r}")
    return server.rstrip("/")


# An address of this plain shape (ASCII; dots only between other characters; a lower-case
# domain of letter-digit-hyphen labels without "--", ending in a TLD of letters) that is no
# longer than email_validator allows and not under a special-use name is one that
# email_validator accepts unchanged: the check needs no import of it (~10-20 ms of start-up,
# with idna). Anything else goes through email_validator. tests/client/test_config.py
# checks this against email_validator itself.
_PLAIN_EMAIL = re.compile(r"[A-Za-z0-9_+-]+(?:\.[A-Za-z0-9_+-]+)*"
                          r"@(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}", re.ASCII)
# email_validator's SPECIAL_USE_DOMAIN_NAMES, less "test" (allowed with test_environment).
_SPECIAL_USE = ("arpa", "invalid", "local", "localhost", "onion")


def plain_email(email: str) -> bool:
    """True for an address that email_validator would accept exactly as it is written."""
    if not _PLAIN_EMAIL.fullmatch(email) or len(email) > 254:
        return False
    local, domain = email.split("@")
    return (len(local) <= 64 and "--" not in domain
            and not any(domain == name or domain.endswith("." + name) for name in _SPECIAL_USE))


def _check_email(email: str, fail: Any) -> str:
    if plain_email(email):
        return email
    from email_validator import EmailNotValidError, validate_email  # imported only when needed

    try:
        result = validate_email(email, check_deliverability=False, allow_smtputf8=False, test_environment=True)
    except EmailNotValidError as e:
        reason = str(e).rstrip(".")
        raise fail(f"email {email!r} is not a valid e-mail address ({reason[:1].lower() + reason[1:]})") from None
    return result.normalized


def _check_keys(keys: Any, fail: Any) -> dict[str, str]:
    if not isinstance(keys, dict):
        raise fail(f"keys must be a table ([keys]), not {_type_name(keys)}")
    out: dict[str, str] = {}
    for action, value in keys.items():
        if not _ACTION_ID.match(action):
            raise fail(f"keys has {action!r}, which is not an action name")
        names = [value] if isinstance(value, str) else value
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            raise fail(f'keys.{action} must be a key name such as "q" or a list of them, not {_type_name(value)}')
        split = [part.strip() for n in names for part in n.split(",")]
        bad = [n for n in split if not _KEY_NAME.match(n)]
        if bad:
            raise fail(f"keys.{action} has {bad[0]!r}, which is not a key name")
        out[action] = ",".join(split)
    return out
