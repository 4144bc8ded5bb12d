"""HTML bodies for the browser: an allow-list of nh3 (ammonia), links only to http, https
and mailto, opened in a new browsing context without opener or referrer. No element that
loads anything (img, link, style, font, iframe, object, form) and no style attribute is
kept, so nothing remote loads and no tracking pixel reports the reader."""

from __future__ import annotations

import re
from html import escape

import nh3

TAGS = {
    "a", "abbr", "b", "blockquote", "br", "caption", "cite", "code", "col", "colgroup", "dd", "del", "dfn",
    "div", "dl", "dt", "em", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "ins", "kbd", "li", "mark", "ol",
    "p", "pre", "q", "s", "samp", "small", "span", "strong", "sub", "sup", "table", "tbody", "td", "tfoot",
    "th", "thead", "tr", "u", "ul", "var",
}
ATTRIBUTES = {
    "a": {"href", "title"}, "abbr": {"title"}, "td": {"colspan", "rowspan"}, "th": {"colspan", "rowspan", "scope"},
    "ol": {"start"},
}
SCHEMES = {"http", "https", "mailto"}
FRAME_CSP = ("default-src 'none'; frame-ancestors 'self'; base-uri 'none'; form-action 'none'; "
             "sandbox allow-popups allow-popups-to-escape-sandbox")
FRAME_HEAD = ('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
              '<meta name="referrer" content="no-referrer"><title>{title}</title></head>\n<body>\n')


_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def clean_html(html: str) -> str:
    html = _CONTROLS.sub("", html)
    return nh3.clean(html, tags=TAGS, clean_content_tags={"script", "style"}, attributes=ATTRIBUTES,
                     url_schemes=SCHEMES, link_rel="noopener noreferrer", strip_comments=True,
                     set_tag_attribute_values={"a": {"target": "_blank"}}, url_relative="deny")


def body_document(html: str, subject: str, framed: bool) -> str:
    """The whole document of the body's frame; opened on its own (not `framed`), the page
    names the message in its heading."""
    title = escape(subject) or "(no subject)"
    heading = "" if framed else f"<h1>{title}</h1>\n"
    return (FRAME_HEAD.format(title=title) + f"<main>\n{heading}" + clean_html(html)
            + "\n</main>\n</body></html>\n")
