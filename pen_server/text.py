"""Checks on text that enters the PEN: control characters, lengths, file names."""

from __future__ import annotations

import re
import unicodedata

# C0 (tab, newline and carriage return are handled by each caller), DEL, C1, bidi controls.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_CONTROL_KEEP_LINES = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def has_control(s: str) -> bool:
    return bool(_CONTROL.search(s))


def strip_controls(s: str, replacement: str = "") -> str:
    return _CONTROL.sub(replacement, s)


def clean_body(s: str) -> str:
    """Bodies keep their lines and tabs; NUL and other C0/C1 controls go (PostgreSQL refuses
    NUL in text, and no reader wants them)."""
    return _CONTROL_KEEP_LINES.sub("", s.replace("\r\n", "\n"))


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
