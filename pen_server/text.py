"""Checks on text that enters the PEN: control characters, lengths, file names."""

from __future__ import annotations

import re
import unicodedata

# C0 (tab, newline and carriage return are handled by each caller), DEL, C1, bidi controls.
# Kept as regex source so that the OpenAPI schema states the same rule as a `pattern`.
_C0_BEFORE_NEWLINE, _C0_AFTER_NEWLINE = r"\x00-\x09", r"\x0b-\x1f"
_OTHER_CONTROLS = r"\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
CONTROL_CLASS = r"\x00-\x1f" + _OTHER_CONTROLS
_CONTROL = re.compile(f"[{CONTROL_CLASS}]")
# JSON Schema patterns (ECMA-262 and Python agree on these) for the rules of has_control:
NO_CONTROL_PATTERN = f"^[^{CONTROL_CLASS}]*$"
NO_CONTROL_BUT_NEWLINE_PATTERN = f"^[^{_C0_BEFORE_NEWLINE}{_C0_AFTER_NEWLINE}{_OTHER_CONTROLS}]*$"
# The PEN's own address, as links in notifications start: https://, a host name, maybe a port
# and a path; no spaces, controls, query or fragment.
BASE_URL_PATTERN = f"^https://[A-Za-z0-9.-]+(:[0-9]{{1,5}})?(/[^ ?#{CONTROL_CLASS}]*)?$"
_CONTROL_KEEP_LINES = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def plural(n: int, what: str, many: str | None = None) -> str:
    """ "1 second", "2 seconds"; `many` for a word whose plural is not what+"s" ("people")."""
    return f"{n} {what if n == 1 else (many or what + 's')}"


def has_control(s: str) -> bool:
    return bool(_CONTROL.search(s))


def strip_controls(s: str, replacement: str = "") -> str:
    return _CONTROL.sub(replacement, s)


def clean_body(s: str) -> str:
    """Bodies keep their lines and tabs; NUL and other C0/C1 controls go (PostgreSQL refuses
    NUL in text, and no reader wants them)."""
    return _CONTROL_KEEP_LINES.sub("", s.replace("\r\n", "\n"))


_BREAKS = re.compile(r"(?i)<\s*(?:br|/p|/div|/li|/tr|/h[1-6]|/blockquote)\b[^>]*>")


def html_text(html: str, limit: int = 20_000) -> str:
    """The text of an HTML body (tags dropped, a line break where a block ends), for showing
    it quoted as plain text; at most `limit` characters."""
    import html as html_module

    import nh3

    text = html_module.unescape(nh3.clean(_BREAKS.sub("\n", html[: limit * 4]), tags=set()))
    return clean_body("\n".join(line.rstrip() for line in text.splitlines()).strip())[:limit]


def snippet(body: str, length: int = 140) -> str:
    flat = " ".join(strip_controls(body, " ").split())
    return flat if len(flat) <= length else flat[: length - 1].rstrip() + "\u2026"


def clean_filename(name: str) -> str:
    """A display name for a stored file: last path component, no controls, bounded. The
    storage path never uses it."""
    name = unicodedata.normalize("NFC", strip_controls(name))
    name = re.split(r"[\\/]", name)[-1].strip()
    if name in ("", ".", ".."):
        name = "attachment"
    encoded = name.encode("utf-8")
    if len(encoded) > 255:
        name = encoded[:255].decode("utf-8", "ignore")
    return name
