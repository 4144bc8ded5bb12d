"""What penmail's settings file may say, as pydantic models, and each refusal as one sentence.

``tui.config.load_config`` imports this when it reads a file (pydantic costs tens of
milliseconds to import; ``import tui.config`` stays without it).  The models are strict:
a key they do not name is refused, a string is not taken for a number, nor "yes" for true.
A validator raises ``ValueError`` with the whole sentence after "In FILE, " (key first);
the other refusals are put into words by ``refusal`` from the error's type and key.

``tui.intercept.settings`` describes its ``[imap]`` and ``[intercept]`` tables the same way.
"""

from __future__ import annotations

import difflib
import re
import shlex
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from tui.config import DEFAULT_THEME

__all__ = ["ConfigFile", "Table", "UiTable", "has_control", "local_path", "refusal"]

_THEME_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_ACTION_ID = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]{0,63}$")
_KEY_NAME = re.compile(r"^[^\s,\x00-\x1f\x7f]{1,40}$")


class Table(BaseModel):
    """A table of the settings file: unknown keys refused, no type conversion, read-only.
    ``table`` is its name in the file ("" for the top level), which begins each key named."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
    table: ClassVar[str] = ""

    @classmethod
    def key(cls, name: str) -> str:
        return f"{cls.table}.{name}" if cls.table else name

    @classmethod
    def must_be(cls, name: str) -> ValueError:
        """The refusal of field ``name``, in the words of its description."""
        return ValueError(f"{cls.key(name)} must be {cls.model_fields[name].description}")


def has_control(text: str) -> bool:
    return any(ord(c) < 0x20 or ord(c) == 0x7F for c in text)


def local_path(value: str, info: ValidationInfo) -> Path:
    """A path as written: ~ expanded, a relative one beside the settings file (not wherever
    penmail started); the file's folder comes in the validation context as ``folder``."""
    path = Path(value).expanduser()
    folder = (info.context or {}).get("folder")
    return folder / path if folder is not None and not path.is_absolute() else path


class UiTable(Table):
    table: ClassVar[str] = "ui"
    animations: bool = False


class ConfigFile(Table):
    """The file as written, checked.  Empty ca_file, email and download_dir mean "not set"."""

    server: str | None = None
    ca_file: Path | None = None
    email: str | None = None
    password_command: str | None = None
    download_dir: Path | None = None
    theme: str = DEFAULT_THEME
    keys: dict[str, str] = Field(default_factory=dict)  # action id -> "k1,k2" (Textual's form)
    ui: UiTable = Field(default_factory=UiTable)
    # `penmail intercept`'s tables, checked by tui.intercept.settings when intercept runs.
    imap: dict[str, Any] = Field(default_factory=dict)
    intercept: dict[str, Any] = Field(default_factory=dict)

    @field_validator("server", "ca_file", "email", "password_command", "download_dir", "theme", mode="before")
    @classmethod
    def _text(cls, value: Any, info: ValidationInfo) -> Any:
        if not isinstance(value, str):
            raise ValueError(f"{info.field_name} must be a string, not {type_name(value)}")
        if has_control(value):
            raise ValueError(f"{info.field_name} must not contain control characters")
        value = value.strip()
        if info.field_name in ("ca_file", "email", "download_dir") and not value:
            return None
        return local_path(value, info) if info.field_name in ("ca_file", "download_dir") else value

    @field_validator("server")
    @classmethod
    def _server(cls, server: str | None) -> str | None:
        from urllib.parse import urlsplit

        if server is None:
            return None

        try:
            parts = urlsplit(server)
            host = parts.hostname
            _ = parts.port  # raises ValueError for a bad port
        except ValueError:
            raise ValueError(f"server must be an https:// URL, not {server!r}") from None
        if parts.scheme.lower() != "https" or not host:
            # Plain http would send passwords and messages in the clear; there is no switch for it.
            raise ValueError(f"server must be an https:// URL, not {server!r}")
        if parts.username is not None or parts.password is not None:
            raise ValueError("server must not contain a user name or password; use email and password_command")
        if parts.query or parts.fragment or any(c.isspace() for c in server):
            raise ValueError(f"server must be a plain https:// URL without spaces, query or fragment, not {server!r}")
        return server.rstrip("/")

    @field_validator("email")
    @classmethod
    def _email(cls, email: str | None) -> str | None:
        from email_validator import EmailNotValidError, validate_email

        if email is None:
            return None

        try:
            found = validate_email(email, check_deliverability=False, allow_smtputf8=False, test_environment=True)
        except EmailNotValidError as e:
            reason = str(e).rstrip(".")
            raise ValueError(f"email {email!r} is not a valid e-mail address "
                             f"({reason[:1].lower() + reason[1:]})") from None
        return found.normalized

    @field_validator("password_command")
    @classmethod
    def _command(cls, command: str | None) -> str | None:
        if command is None:
            return None
        try:
            argv = shlex.split(command)
        except ValueError as e:
            raise ValueError(f"password_command cannot be split into words ({str(e).lower()})") from None
        if not argv:
            raise ValueError("password_command is empty")
        return command

    @field_validator("theme")
    @classmethod
    def _theme(cls, theme: str) -> str:
        if not _THEME_NAME.match(theme):
            raise ValueError(f"theme must be a theme name such as {DEFAULT_THEME!r} or 'high-contrast', not {theme!r}")
        return theme

    @field_validator("keys", mode="before")
    @classmethod
    def _keys(cls, keys: Any) -> Any:
        if not isinstance(keys, dict):
            return keys  # "keys must be a table"
        out: dict[str, str] = {}
        for action, value in keys.items():
            if not _ACTION_ID.match(action):
                raise ValueError(f"keys has {action!r}, which is not an action name")
            names = [value] if isinstance(value, str) else value
            if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
                raise ValueError(f'keys.{action} must be a key name such as "q" or a list of them, '
                                 f'not {type_name(value)}')
            split = [part.strip() for n in names for part in n.split(",")]
            bad = [n for n in split if not _KEY_NAME.match(n)]
            if bad:
                raise ValueError(f"keys.{action} has {bad[0]!r}, which is not a key name")
            out[action] = ",".join(split)
        return out


# ---------------------------------------------------------------- refusals as sentences

_TYPE_NAMES = {str: "a string", bool: "true or false", int: "an integer", float: "a number",
               list: "a list", dict: "a table"}
_WANTED = {"string_type": "a string", "bool_type": "true or false", "int_type": "an integer",
           "float_type": "a number", "list_type": "a list"}
_TABLE_TYPES = ("dict_type", "model_type")


def type_name(value: Any) -> str:
    return _TYPE_NAMES.get(type(value), type(value).__name__)


def _quote_list(items: list[str]) -> str:
    return ", ".join(repr(i) for i in items)


def _table_at(model: type[Table], where: tuple) -> type[Table]:
    for name in where:
        model = model.model_fields[name].annotation  # type: ignore[assignment]
    return model


def refusal(error: ValidationError, model: type[Table]) -> str:
    """The first thing ``model`` refused, as the rest of a sentence that begins "In FILE, "."""
    errors = error.errors(include_url=False)
    unknown = [e for e in errors if e["type"] == "extra_forbidden"]
    if unknown:
        where = unknown[0]["loc"][:-1]
        names = [str(e["loc"][-1]) for e in unknown if e["loc"][:-1] == where]
        table = _table_at(model, where)
        known = [name for name in table.model_fields]
        guess = difflib.get_close_matches(names[0], known, n=1) if len(names) == 1 else []
        hint = f"did you mean {guess[0]!r}? " if guess else ""
        if not table.table:
            verb = "is not a known setting" if len(names) == 1 else "are not known settings"
            return f"{_quote_list(names)} {verb} ({hint}the settings are {', '.join(known)})"
        return (f"[{table.table}] has {_quote_list(names)}, which penmail does not know "
                f"({hint}it knows {', '.join(known)})")
    first = errors[0]
    if first["type"] == "value_error":
        return str(first["ctx"]["error"])
    loc = first["loc"]
    owner = _table_at(model, loc[:-1]) if loc else model
    key = owner.key(str(loc[-1])) if loc else model.table
    if first["type"] == "missing":
        return f"{key} is missing"
    field = owner.model_fields.get(str(loc[-1])) if loc else None
    if field is not None and field.description:  # the field says what it must be, range and all
        told = f"{key} must be {field.description}"
        return told + (f", not {first['input']!r}" if first["type"] == "literal_error" else "")
    if first["type"] in _TABLE_TYPES:
        return f"{key} must be a table ([{key}]), not {type_name(first['input'])}"
    if first["type"] in _WANTED:
        return f"{key} must be {_WANTED[first['type']]}, not {type_name(first['input'])}"
    message = str(first["msg"])
    return f"{key} is refused ({message[:1].lower() + message[1:]})"
