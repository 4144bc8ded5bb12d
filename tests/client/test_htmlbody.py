"""tui.text.htmlbody: hostile HTML becomes harmless text, in bounded time, or a clean failure."""

from __future__ import annotations

import json
import re
import threading
import time
from pathlib import Path

import pytest

import tui.text.htmlbody as htmlbody
from tui.text.htmlbody import HtmlConversionError, HtmlTimeout, allowed_link, html_to_text

HTML = json.loads((Path(__file__).parents[1] / "data" / "hostile.json").read_text("utf-8"))["html"]
ENTRIES = {k: v for k, v in HTML.items() if not k.endswith("_note")}
MANY_LINKS = "".join(f'<a href="https://x.example/{i}">{i}</a> ' for i in range(20000))
FORBIDDEN = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


@pytest.mark.parametrize("key", list(ENTRIES))
def test_hostile_entries_become_clean_text(key: str) -> None:
    started = time.monotonic()
    text, links = html_to_text(ENTRIES[key])
    assert time.monotonic() - started < 3.5
    assert not FORBIDDEN.search(text)
    assert all(allowed_link(url) for url in links)


def test_script_and_style_are_dropped() -> None:
    text, links = html_to_text(HTML["script"])
    assert text.strip() == "hi"
    assert "alert" not in text and "p{}" not in text and links == []


def test_only_http_links_survive() -> None:
    text, links = html_to_text(HTML["javascript_link"])
    assert links == []
    assert "javascript" not in text and "data:" not in text and "file:" not in text
    assert "click" in text and "data" in text and "file" in text  # the words stay


def test_links_are_numbered_and_listed_at_the_end() -> None:
    html = (
        '<p>See <a href="https://a.example/x">the report</a> and '
        '<a href="javascript:alert(1)">this</a>, <a href="https://a.example/x">again</a>, '
        '<a href="http://b.example/">http://b.example/</a>.</p>'
    )
    text, links = html_to_text(html)
    assert links == ["https://a.example/x", "http://b.example/"]
    assert "[the report][1]" in text and "[again][1]" in text and "[http://b.example/][2]" in text
    assert text.rstrip().endswith("Links:\n[1] https://a.example/x\n[2] http://b.example/")


def test_entity_encoded_escape_does_not_survive() -> None:
    text, _ = html_to_text(HTML["escape_entity"])
    assert "\x1b" not in text and "\x07" not in text and "\x9b" not in text
    assert "cleared" in text
    text, _ = html_to_text("<p>&#155;2J &#x9d;0;t&#x9c; &#x202e;gpj.exe</p>")
    assert not FORBIDDEN.search(text)


def test_markup_text_is_kept_literally() -> None:
    text, links = html_to_text(HTML["markup_in_html"])
    assert "[@click=app.quit]quit[/] [link=https://evil.example]bank[/link]" in text
    assert links == []


def test_remote_image_is_not_fetched_or_listed() -> None:
    text, links = html_to_text(HTML["remote_image"])
    assert "tracker" not in text and links == []
    text, _ = html_to_text('<img src="https://t.example/p.gif" alt="Company logo">')
    assert "Company logo" in text and "t.example" not in text


def test_deep_lists_return_quickly_and_bounded() -> None:
    started = time.monotonic()
    text, _ = html_to_text(HTML["deep_lists"], timeout=3.0)
    assert time.monotonic() - started < 3.0
    # Nesting past 12 levels is flattened: the text grows with the input, not with the
    # square of the depth (unbounded, html2text makes 16 MB of indentation from 72 kB).
    assert len(text) < 3 * len(HTML["deep_lists"])
    assert " " * (2 * htmlbody.MAX_NESTING + 8) not in text


def test_many_links_answer_within_the_limit() -> None:
    started = time.monotonic()
    try:
        text, links = html_to_text(MANY_LINKS, timeout=3.0)
    except HtmlTimeout:
        pass  # a slow machine may give up; it must not hang or crash
    else:
        assert len(links) == 20000 and links[-1] == "https://x.example/19999"
        assert "[20000] https://x.example/19999" in text
    assert time.monotonic() - started < 3.6


def test_long_input_is_truncated_and_says_so() -> None:
    text, _ = html_to_text("<p>" + "word " * 1000 + "</p>", max_input=200)
    assert "only its beginning is shown" in text
    assert text.count("word") < 50


def test_timeout_raises_and_the_worker_stops(monkeypatch: pytest.MonkeyPatch) -> None:
    original = htmlbody._Converter.handle_data

    def slow(self: htmlbody._Converter, data: str, entity_char: bool = False) -> None:
        time.sleep(0.01)
        original(self, data, entity_char)

    monkeypatch.setattr(htmlbody._Converter, "handle_data", slow)
    started = time.monotonic()
    with pytest.raises(HtmlTimeout) as info:
        html_to_text("<p>x</p>" * 10_000, timeout=0.3)
    assert time.monotonic() - started < 1.0
    assert str(info.value).endswith(".") and "0.3 seconds" in str(info.value)
    time.sleep(0.3)
    assert not [t for t in threading.enumerate() if t.name == "penmail-html" and t.is_alive()]


@pytest.mark.parametrize("error", [RecursionError("deep"), AssertionError("html2text bug"), MemoryError()])
def test_failures_become_one_sentence(monkeypatch: pytest.MonkeyPatch, error: BaseException) -> None:
    def boom(html: str, deadline: float) -> tuple[str, list[str]]:
        raise error

    monkeypatch.setattr(htmlbody, "_run", boom)
    with pytest.raises(HtmlConversionError) as info:
        html_to_text("<p>x</p>")
    assert str(info.value).endswith("so the text part is shown.")


def test_not_a_string() -> None:
    with pytest.raises(HtmlConversionError):
        html_to_text(None)  # type: ignore[arg-type]


def test_empty_html() -> None:
    assert html_to_text("") == ("", [])


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://bank.example/login", True),
        ("http://a.example", True),
        ("HTTPS://A.EXAMPLE/x?y=1#z", True),
        ("javascript:alert(1)", False),
        ("JaVaScRiPt:alert(1)", False),
        ("data:text/html,x", False),
        ("file:///etc/passwd", False),
        ("mailto:ann@x.example", False),
        ("ftp://x.example", False),
        ("https://", False),
        ("//evil.example/x", False),
        ("/relative", False),
        ("https://a.example/\x1b]52;c;x\x07", False),
        ("https://a.example/ space", False),
        ("https://a.example:99999/", False),
        ("https://a.example/" + "x" * 5000, False),
        ("", False),
        (None, False),
    ],
)
def test_allowed_link(url: str, ok: bool) -> None:
    assert allowed_link(url) is ok
