"""penmail's settings file, and where penmail keeps its state.

The package: this module (``load_config``, ``Config``), ``file`` (the pydantic models that
check a file), ``cache`` (the last file that passed, so a start need not load pydantic) and
``environment`` (the variables penmail reads, taken once by the command). No Textual here:
the client library and line mode use it.

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
is one sentence naming the file and the key, ready to show as it is.  What each key may
hold is said by the pydantic models in ``tui.config.file``, loaded only for a file that
``tui.config.cache`` has not seen pass before (``import tui.config`` loads no pydantic).
Whether each id in ``[keys]`` names a real binding is checked by ``tui.app.check_key_ids``
at start (the ids live with the screens and widgets that bind them).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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


def load_config(path: Path | str | None = None, env: Mapping[str, str] | None = None, *,
                stale_ca_file_ok: bool = False) -> Config:
    """Read and check the settings file; a missing file gives the defaults. With
    ``stale_ca_file_ok`` a ca_file that names no file is set aside in ``stale_ca_file``."""
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
    from tui.config import cache as config_cache

    # The same bytes checked before: what the checks gave, without parsing the TOML again.
    checked = config_cache.recall(file, raw)
    if checked is None:
        checked = _check(_toml(raw, fail), file, fail)
        config_cache.remember(file, raw, checked)
    ca_file = Path(checked["ca_file"]) if checked["ca_file"] else None
    stale = None
    if ca_file is not None and not ca_file.is_file():
        if not stale_ca_file_ok:
            raise fail(f"ca_file names {str(ca_file)!r}, which does not exist or is not a file")
        ca_file, stale = None, ca_file
    download_dir = Path(checked["download_dir"]) if checked["download_dir"] else default_download_dir()
    return Config(server=checked["server"], ca_file=ca_file, email=checked["email"],
                  password_command=checked["password_command"], download_dir=download_dir,
                  theme=checked["theme"], keys=checked["keys"], animations=checked["ui"]["animations"], path=file,
                  imap=checked["imap"], intercept=checked["intercept"], stale_ca_file=stale)


def _toml(raw: bytes, fail: Callable[[str], ConfigError]) -> dict:
    """The settings file's TOML: parsed (and tomllib imported) only for a file not checked before."""
    import tomllib

    try:
        return tomllib.loads(raw.decode("utf-8"))
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


def _check(data: dict, file: Path, fail: Callable[[str], ConfigError]) -> dict[str, Any]:
    """The file's values checked by the pydantic models of tui.config.file (imported only
    here: pydantic costs ~100 ms of CPU, paid only for a file not checked before)."""
    from pydantic import ValidationError

    from tui.config.file import ConfigFile, refusal

    try:
        written = ConfigFile.model_validate(data, context={"folder": file.parent})
    except ValidationError as e:
        raise fail(refusal(e, ConfigFile)) from None
    return written.model_dump(mode="json")
