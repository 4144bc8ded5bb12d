"""Showing a message's HTML part as text, safely and in bounded time.

A sender writes the HTML, so it may hide scripts, link to ``javascript:`` or ``file:``
URLs, carry entity-encoded escape sequences (``&#27;[2J``), nest lists thousands deep
or hold tens of thousands of links.  This module owns turning it into plain text:

* ``html_to_text(html)`` -> (text, links): the body through html2text with links
  numbered ("[click][1]") and listed at the end ("[1] https://..."), scripts, styles and
  images dropped (an image's alt text stays), only http(s) links kept, everything passed
  through ``safe_text.clean``.  It runs in a worker thread under a deadline; on timeout
  or any failure it raises ``HtmlConversionError`` and the caller shows the text part.
* ``allowed_link(url)``: the only URLs penmail will offer to open.
"""

from __future__ import annotations

import re
import threading
import time
from typing import Any
from urllib.parse import urlsplit

import html2text

from tui.safe_text import clean

__all__ = ["HtmlConversionError", "HtmlTimeout", "allowed_link", "html_to_text"]

MAX_NESTING = 12  # lists and quotes deeper than this are flattened (indentation grows quadratically)
MAX_OUTPUT = 1_000_000  # characters of text; a body longer than this is not read by anyone
MAX_URL = 2048
_BLANK_LINES = re.compile(r"\n[ \t]*\n(?:[ \t]*\n)+")
_NESTING_TAGS = frozenset({"ul", "ol", "dl", "blockquote"})


class HtmlConversionError(Exception):
    """The HTML part cannot be shown as text; ``str(error)`` is one sentence."""


class HtmlTimeout(HtmlConversionError):
    """The conversion took longer than allowed."""


class _Deadline(Exception):
    pass


def allowed_link(url: str) -> bool:
    """True only for a plain http:// or https:// URL with a host (no javascript:, data:, file:)."""
    if not isinstance(url, str) or not url or len(url) > MAX_URL:
        return False
    if any(c.isspace() or ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in url):
        return False
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises ValueError for a bad port
    except ValueError:
        return False
    return parts.scheme.lower() in ("http", "https") and bool(parts.hostname)


class _Converter(html2text.HTML2Text):
    """html2text with links collected for a list, bounded nesting and a deadline."""

    def __init__(self, deadline: float) -> None:
        super().__init__(bodywidth=0)  # the widget wraps, to the reader's width
        self.inline_links = False  # "[text][1]", the URL goes to the list at the end
        self.links_each_paragraph = False
        self.use_automatic_links = False  # every link goes to the list, none inline
        self.unicode_snob = True
        self.images_to_alt = True  # remote images are trackers: alt text only, no URL
        self.ignore_emphasis = True  # "**" and "_" are noise to a screen reader
        self.ul_item_mark = "-"
        self._deadline = deadline
        self._depth = 0
        self._link_index: dict[tuple[Any, ...], int] = {}
        self._indexed = 0

    def _check_time(self) -> None:
        if time.monotonic() > self._deadline:
            raise _Deadline

    def handle_tag(self, tag: str, attrs: dict[str, str | None], start: bool) -> None:
        self._check_time()
        if tag in _NESTING_TAGS:
            if start:
                self._depth += 1
                if self._depth > MAX_NESTING:
                    return
            else:
                self._depth = max(0, self._depth - 1)
                if self._depth >= MAX_NESTING:
                    return
        if tag == "a" and start and "href" in attrs and not allowed_link(attrs.get("href") or ""):
            # A javascript:/data:/file: link keeps its text and loses its target.
            attrs = {k: v for k, v in attrs.items() if k != "href"}
        super().handle_tag(tag, attrs, start)

    def handle_data(self, data: str, entity_char: bool = False) -> None:
        self._check_time()
        super().handle_data(data, entity_char)

    def previousIndex(self, attrs: dict[str, str | None]) -> int | None:  # noqa: N802 - html2text's name
        """html2text's own version scans every link so far: 20,000 links took 19 s."""
        if "href" not in attrs:
            return None
        for i in range(self._indexed, len(self.a)):
            a = self.a[i].attrs
            self._link_index.setdefault((a.get("href"), "title" in a, a.get("title")), i)
        self._indexed = len(self.a)
        return self._link_index.get((attrs.get("href"), "title" in attrs, attrs.get("title")))

    def convert(self, html: str) -> tuple[str, list[str]]:
        self.feed(html)
        self.close()
        self.pbr()
        # Take the links before html2text prints its own "[1]: url" list.
        anchors = sorted(self.a, key=lambda a: a.count)
        self.a = []
        self.o("", force="end")
        text = "".join(self.outtextlist).replace("&nbsp_place_holder;", "\u00a0")
        return text, [a.attrs.get("href") or "" for a in anchors]


def _run(html: str, deadline: float) -> tuple[str, list[str]]:
    return _Converter(deadline).convert(html)


def html_to_text(
    html: str, *, max_input: int = 2_000_000, timeout: float = 3.0
) -> tuple[str, list[str]]:
    """The HTML part as (text, link URLs); raises HtmlConversionError (or HtmlTimeout).

    Only the first ``max_input`` characters are converted, and the text says so.  Link
    number ``n`` in the text is ``links[n - 1]``.
    """
    if not isinstance(html, str):
        raise HtmlConversionError("The HTML part is not text.")
    truncated = len(html) > max_input
    if truncated:
        html = html[:max_input]
    deadline = time.monotonic() + timeout
    box: dict[str, Any] = {}
    done = threading.Event()

    def work() -> None:
        try:
            box["result"] = _run(html, deadline)
        except BaseException as e:  # noqa: BLE001 - handed to the caller below
            box["error"] = e
        finally:
            done.set()

    # html2text is pure Python and cannot be interrupted from outside; the converter
    # checks the deadline itself, and a daemon thread never blocks quitting.
    threading.Thread(target=work, name="penmail-html", daemon=True).start()
    if not done.wait(timeout + 0.25):
        raise HtmlTimeout(f"The HTML part took longer than {timeout:g} seconds to convert, so the text part is shown.")
    error = box.get("error")
    if isinstance(error, _Deadline):
        raise HtmlTimeout(f"The HTML part took longer than {timeout:g} seconds to convert, so the text part is shown.")
    if isinstance(error, RecursionError):
        raise HtmlConversionError("The HTML part is nested too deeply to convert, so the text part is shown.")
    if error is not None:
        raise HtmlConversionError(
            f"The HTML part could not be converted ({type(error).__name__}), so the text part is shown."
        ) from error

    text, links = box["result"]
    text = _BLANK_LINES.sub("\n\n", clean(text)).strip("\n")
    notes = []
    if truncated:
        notes.append(f"[penmail: the HTML part is longer than {max_input:,} characters; only its beginning is shown.]")
    if len(text) > MAX_OUTPUT:
        text = text[:MAX_OUTPUT]
        notes.append(f"[penmail: the text is longer than {MAX_OUTPUT:,} characters; only its beginning is shown.]")
    parts = [text] + notes
    if links:
        parts.append("Links:\n" + "\n".join(f"[{n}] {url}" for n, url in enumerate(links, 1)))
    result = clean("\n\n".join(p for p in parts if p))
    return (result + "\n" if result else ""), links
