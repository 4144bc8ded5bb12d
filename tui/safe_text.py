"""The one road by which untrusted text (from the server or from files) reaches the screen.

Everything a sender controls -- subjects, names, bodies, file names, server error
messages -- can carry terminal escape sequences, control characters, bidi overrides or
Rich/Textual markup.  This module owns turning such text into something that is shown
literally and cannot drive the terminal:

* ``clean(s)`` removes whole escape sequences (7-bit and 8-bit forms), C0/C1 controls
  except newline and tab, DEL, bidi controls and lone surrogates, and caps floods of
  combining marks.
* ``safe_text(s)`` wraps ``clean(s)`` in a ``rich.text.Text`` built from a plain string,
  so square brackets are never parsed as markup and the Text carries no spans from data.
* ``one_line(s)`` is the form for single-line fields (list rows, headers, titles).

Never use ``Text.from_markup``, ``Content.from_markup`` or a markup-enabled ``Static``
with data; pass the result of ``safe_text`` instead.
"""

from __future__ import annotations

import functools
import re
import unicodedata

from rich.text import Text

__all__ = ["clean", "safe_text", "one_line", "MAX_COMBINING"]

# How many combining marks may follow one base character.  Real scripts need at most a
# few (Vietnamese two, Hebrew pointing three or four); "Zalgo" text stacks dozens, which
# smears over neighbouring rows in a terminal and makes screen readers babble.
MAX_COMBINING = 4

_ST = r"(?:\x1b\\|\x9c)"  # String Terminator, 7-bit and 8-bit
# An unterminated string swallows at most the rest of its line: a terminal would eat
# everything, but hiding the rest of a message is worse than showing its payload as text.
_STRING_BODY = r"[^\x07\x1b\x9c\n]*"

_ESCAPES = re.compile(
    "|".join(
        [
            # OSC (ESC ] / 0x9D): ends with BEL or ST (xterm accepts BEL).
            rf"(?:\x1b\]|\x9d){_STRING_BODY}(?:\x07|{_ST})?",
            # DCS, SOS, PM, APC (ESC P, ESC X, ESC ^, ESC _ and 0x90, 0x98, 0x9E, 0x9F): end with ST.
            rf"(?:\x1b[PX^_]|[\x90\x98\x9e\x9f]){_STRING_BODY}{_ST}?",
            # CSI (ESC [ / 0x9B): parameter bytes, intermediate bytes, one final byte.
            r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]?",
            # Any other escape: ESC, intermediate bytes, one final byte (ESC c, ESC ( B, ESC 7).
            r"\x1b[ -/]*[0-~]?",
        ]
    )
)

# What is left after the sequences are gone: C0 except \t and \n, DEL, C1, bidi
# controls (they can make "invoice\u202etxt.exe" read as "invoiceexe.txt") and lone
# surrogates (JSON may carry them; writing one to a UTF-8 terminal raises).
_BIDI = "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
_STRIP = re.compile(f"[\x00-\x08\x0b-\x1f\x7f-\x9f{_BIDI}]")
_SURROGATES = re.compile("[\ud800-\udfff]")
_NEWLINES = re.compile("\r\n?|[\x0b\x0c\x85\u2028\u2029]")  # all become "\n"
_ANY_UNSAFE = re.compile(f"[\x00-\x08\x0b-\x1f\x7f-\x9f{_BIDI}\u2028\u2029\ud800-\udfff]")
_WHITESPACE_RUN = re.compile(r"[\t\n ]+")


@functools.cache
def _combining_flood() -> re.Pattern[str]:
    """A pattern matching the marks past MAX_COMBINING in a run; built once, on first use.

    Python's ``re`` has no Unicode-category classes, so collect the nonspacing and
    enclosing marks (Mn, Me) from the planes that have any (0, 1 and 14).
    """
    ranges: list[str] = []
    start = None
    for cp in [*range(0x300, 0x20000), *range(0xE0000, 0xE1000), 0x110000]:
        is_mark = cp < 0x110000 and unicodedata.category(chr(cp)) in ("Mn", "Me")
        if is_mark and start is None:
            start = cp
        elif not is_mark and start is not None:
            end = cp - 1
            ranges.append(re.escape(chr(start)) + ("-" + re.escape(chr(end)) if end > start else ""))
            start = None
    marks = "[" + "".join(ranges) + "]"
    return re.compile(f"({marks}{{{MAX_COMBINING}}}){marks}+")


def clean(s: str, *, keep_newlines: bool = True, cap_combining: bool = True) -> str:
    """Return ``s`` with escape sequences, controls and bidi overrides removed.

    CR LF and lone CR become a newline (old Mac line ends, and "carriage\\rreturn" must
    not overwrite the start of its line).  With ``keep_newlines=False`` newlines and tabs
    become spaces.  Markup characters such as ``[`` are left alone: they are harmless in a
    ``Text`` and must be shown literally.
    """
    if not isinstance(s, str):
        s = "" if s is None else str(s)
    if s.isascii() and not _ANY_UNSAFE.search(s):
        # Fast path: most text is plain ASCII with nothing to remove.
        out = s
    else:
        out = _SURROGATES.sub("\ufffd", s)
        out = _ESCAPES.sub("", out)
        out = _NEWLINES.sub("\n", out)
        out = _STRIP.sub("", out)
        if cap_combining and not out.isascii():
            out = _combining_flood().sub(r"\1", out)
    if not keep_newlines:
        out = out.replace("\n", " ").replace("\t", " ")
    return out


def safe_text(s: str, style: str = "") -> Text:
    """A Rich ``Text`` showing ``s`` literally: cleaned, no markup parsed, no spans.

    ``Text(str)`` never parses markup (only ``Text.from_markup`` does), so
    ``"[@click=app.quit]"`` stays a literal string and cannot become an action link.
    """
    return Text(clean(s), style=style, end="")


def one_line(s: str, max_len: int | None = None) -> str:
    """``s`` cleaned for a single-line field: whitespace runs become one space.

    With ``max_len`` the result is at most that many characters, ending in an ellipsis
    when something was cut.
    """
    out = _WHITESPACE_RUN.sub(" ", clean(s, keep_newlines=False)).strip()
    if max_len is not None and len(out) > max_len:
        if max_len <= 0:
            return ""
        cut = out[: max_len - 1]
        # Do not leave a dangling combining mark or zero-width joiner at the cut.
        while cut and (unicodedata.combining(cut[-1]) or cut[-1] == "\u200d"):
            cut = cut[:-1]
        out = cut.rstrip() + "…"
    return out
