"""tui.safe_text: every hostile string is shown literally and cannot drive the terminal."""

from __future__ import annotations

import io
import json
import re
import time
from pathlib import Path

import pytest
from rich.console import Console
from rich.text import Text

from tui.safe_text import MAX_COMBINING, clean, one_line, safe_text

HOSTILE = json.loads((Path(__file__).parents[1] / "data" / "hostile.json").read_text("utf-8"))
TEXTS = {k: v for k, v in HOSTILE["text"].items() if not k.startswith("_")}
ALL = list(TEXTS.values()) + list(HOSTILE["filenames"])
IDS = list(TEXTS) + [f"filename{i}" for i in range(len(HOSTILE["filenames"]))]

FORBIDDEN = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _render(text: Text) -> str:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, color_system=None, width=80, legacy_windows=False)
    console.print(text)
    return out.getvalue()


@pytest.mark.parametrize("s", ALL, ids=IDS)
def test_clean_leaves_no_controls(s: str) -> None:
    out = clean(s)
    assert "\x1b" not in out
    assert not FORBIDDEN.search(out), ascii(out[:200])
    one = clean(s, keep_newlines=False)
    assert "\n" not in one and "\t" not in one and not FORBIDDEN.search(one)


@pytest.mark.parametrize("s", ALL, ids=IDS)
def test_safe_text_is_literal_and_unstyled(s: str) -> None:
    text = safe_text(s)
    assert isinstance(text, Text)
    assert text.spans == []
    assert text.plain == clean(s)
    rendered = _render(text)
    assert "\x1b" not in rendered
    assert not FORBIDDEN.search(rendered.replace("\r", ""))


@pytest.mark.parametrize("key", [k for k in TEXTS if k.startswith("markup_")] + ["rich_emoji_code", "textual_variable"])
def test_markup_is_kept_literally(key: str) -> None:
    s = TEXTS[key]
    text = safe_text(s)
    assert text.plain == s
    assert text.spans == []
    assert s in _render(Text(s, end=""))  # Rich itself does not interpret it either


def test_style_is_applied_as_a_whole() -> None:
    text = safe_text("[bold]x[/bold]", style="italic")
    assert text.plain == "[bold]x[/bold]" and text.style == "italic" and text.spans == []


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("csi_clear_screen", "You have been signed out"),
        ("csi_colour", "red text"),
        ("osc52_clipboard_write", "invoice"),
        ("osc8_hyperlink", "https://bank.example"),
        ("osc0_title", "title"),
        ("dcs_query", "after dcs"),
        ("apc", "after apc"),
        ("c1_csi", " eight-bit CSI"),
        ("c1_osc", " eight-bit OSC"),
        ("cursor_report_request", ""),
        ("nul", "beforeafter"),
        ("bidi_override", "invoicetxt.exe"),
        ("bidi_isolates", "abc def"),
        ("crlf_header_injection", "Results\nBcc: victim@evil.example"),
        ("bel_bs_cr", "bell backspace carriage\nreturn"),
    ],
)
def test_whole_sequences_are_removed_with_their_payloads(key: str, expected: str) -> None:
    assert clean(TEXTS[key]) == expected


def test_unterminated_string_swallows_only_its_line() -> None:
    assert clean("\x1b]52;c;abc\nnext line") == "\nnext line"
    assert clean("tail\x1b") == "tail"
    assert clean("a\x1b[31") == "a"


def test_ordinary_text_is_untouched() -> None:
    for s in ["plain", "tab\there", "two\nlines", "Grüße, 你好 🔒", TEXTS["wide_emoji"], TEXTS["zero_width"]]:
        assert clean(s) == s


def test_combining_flood_is_capped() -> None:
    out = clean(TEXTS["combining_flood"])
    for cluster in out.split("Z")[1:]:
        assert len(cluster) <= MAX_COMBINING
    assert out.count("Z") == TEXTS["combining_flood"].count("Z")
    # Vietnamese and similar keep their marks.
    assert clean("Vie\u0323\u0302t") == "Vie\u0323\u0302t"


def test_lone_surrogates_are_replaced() -> None:
    out = clean("a\ud800b")
    assert out == "a\ufffdb"
    out.encode("utf-8")


def test_non_strings_do_not_crash() -> None:
    assert clean(None) == ""  # type: ignore[arg-type]
    assert clean(42) == "42"  # type: ignore[arg-type]


def test_one_line() -> None:
    assert one_line(TEXTS["lf_header_injection"]) == "Results X-Injected: yes"
    assert one_line("  a \t b\r\n c  ") == "a b c"
    assert one_line("abcdef", 4) == "abc…"
    assert one_line("abc", 3) == "abc"
    assert one_line("abc", 0) == ""
    assert len(one_line(TEXTS["very_long"], 80)) == 80
    for s in ALL:
        line = one_line(s, 40)
        assert "\n" not in line and len(line) <= 40 and not FORBIDDEN.search(line)


def test_large_input_is_fast() -> None:
    big = ("Grüße \x1b[31mred\x1b[0m [b]x[/b]\n" * 50_000)
    started = time.monotonic()
    out = clean(big)
    assert time.monotonic() - started < 2.0
    assert "\x1b" not in out and out.count("\n") == 50_000


@pytest.mark.parametrize("s", ALL, ids=IDS)
def test_clean_is_idempotent(s: str) -> None:
    once = clean(s)
    assert clean(once) == once
    assert one_line(one_line(s)) == one_line(s)


def test_every_notice_of_penmail_is_plain_text() -> None:
    """penmail's notices carry server and file text (subjects, names, sentences): each call
    of notify() in tui/ passes markup=False, so the app cleans it with one_line and Textual
    never parses it as markup ([@click=...] included). The app's own override is the one
    place that may pass markup on."""
    import ast

    root = Path(__file__).parents[2] / "tui"
    calls = []
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "notify":
                calls.append((path.relative_to(root.parent), node, node.func.value))
    assert len(calls) > 5, calls  # found the calls at all
    loose = [f"{path}:{node.lineno}" for path, node, owner in calls
             if not (isinstance(owner, ast.Call) and isinstance(owner.func, ast.Name)
                     and owner.func.id == "super")  # PenmailApp.notify handing on
             and not any(k.arg == "markup" and isinstance(k.value, ast.Constant) and k.value.value is False
                         for k in node.keywords)]
    assert loose == [], loose
