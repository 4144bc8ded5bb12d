"""What every web page shares: the templates, the security headers, CSRF tokens, the
Origin / Sec-Fetch-Site check, size-limited form bodies, and errors as pages.

Every route of the web pages is a `WebRoute`: an ApiError raised anywhere below becomes a
page with the error's sentence (never JSON, never a traceback), and every response leaves
with the headers of `PAGE_HEADERS`.

A page takes its database session and signed-in user by type: `PageDep` (whoever it is, maybe
nobody), `MemberPageDep` (a signed-in member, else the sign-in page) and `MemberDep` (the same
check in a short session of its own, for pages that stream a body in or out)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, TypeVar
from urllib.parse import parse_qsl, urlsplit

import jinja2
from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from markupsafe import Markup, escape
from sqlalchemy.orm import Session

from pen_server.deps import services
from pen_server.errors import ApiError
from pen_server.models import User
from pen_server.text import strip_controls
from pen_server.web.sessions import begin

HERE = Path(__file__).parent
CSP = ("default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-src 'self'; "
       "frame-ancestors 'none'; base-uri 'none'")
PAGE_HEADERS = {
    "Content-Security-Policy": CSP,
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Strict-Transport-Security": "max-age=31536000",
    "Cache-Control": "no-store",
    "Cross-Origin-Opener-Policy": "same-origin",
}
PRE_COOKIE = "__Host-pen_pre"  # binds the CSRF token of forms shown before a sign-in
FORM_LIMIT = 64 * 1024  # bytes of a urlencoded form (sign-in, sign-up and the like)
_NOT_SHOWN = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _size(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)


def _when(dt: datetime) -> str:
    return dt.strftime("%-d %b %Y, %H:%M UTC")


def one_line(value) -> str:
    """Text of one line as a page shows it: control and bidi characters gone."""
    return " ".join(strip_controls(str(value or ""), " ").split())


def lines(value) -> str:
    """Text of several lines (a body): line breaks and tabs kept, other controls and bidi
    overrides gone."""
    return _NOT_SHOWN.sub("", str(value or "").replace("\r\n", "\n"))


def text_body(value) -> Markup:
    """A plain-text body as HTML lines (a <br> each), so that text browsers, which know no
    CSS white-space, keep its line breaks too."""
    return Markup("<br>").join(escape(line) for line in lines(value).split("\n"))


templates = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True,
                               trim_blocks=True, lstrip_blocks=True, undefined=jinja2.StrictUndefined)
def _when_text(value: str) -> str:
    """An RFC 3339 time of the API's objects, as the pages show times."""
    return _when(datetime.fromisoformat(value.replace("Z", "+00:00")))


templates.filters.update(size=_size, when=_when, when_text=_when_text, line=one_line, lines=lines,
                         text_body=text_body)


R = TypeVar("R", bound=Response)


def secure(response: R, extra: dict | None = None) -> R:
    for key, value in PAGE_HEADERS.items():
        response.headers.setdefault(key, value)
    for key, value in (extra or {}).items():
        response.headers[key] = value
    return response


# -- CSRF -----------------------------------------------------------------------------------

def _mac(request: Request, purpose: str, value: str) -> str:
    mac = hmac.new(services(request).secret, f"{purpose}:{value}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def csrf_token(request: Request) -> str:
    """The token every form of this page carries: bound to the sign-in when there is one,
    else to a random cookie of this browser's own (set with the page when it is missing)."""
    binding = getattr(request.state, "session_hash", None)
    if binding:
        return _mac(request, "csrf-session", binding)
    pre = getattr(request.state, "pre", None) or request.cookies.get(PRE_COOKIE)
    if not pre or len(pre) > 100:
        pre = secrets.token_urlsafe(24)
        request.state.new_pre = pre
    request.state.pre = pre
    return _mac(request, "csrf-pre", pre)


def _same_origin(request: Request) -> bool:
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return False
    origin = request.headers.get("origin")
    if origin is None:
        return True  # text browsers send none; the CSRF token still has to match
    if origin == "null":
        # What browsers send from a page with Referrer-Policy: no-referrer (ours); a
        # sandboxed frame elsewhere sends it too, so only with Sec-Fetch-Site's word.
        return site == "same-origin"
    host = request.headers.get("host", "")
    allowed = {f"https://{host}".lower(), _origin_of(services(request).settings.base_url)}
    return origin.lower() in allowed


def _origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def check_post(request: Request, form: dict) -> None:
    """A POST must come from our own pages: its Origin / Sec-Fetch-Site and its CSRF token."""
    given = form.get("csrf", "")
    if getattr(request.state, "session_hash", None):
        expected = _mac(request, "csrf-session", request.state.session_hash)
    else:
        pre = request.cookies.get(PRE_COOKIE, "")
        expected = _mac(request, "csrf-pre", pre) if pre else ""
    if not _same_origin(request) or not expected or not hmac.compare_digest(given.encode(), expected.encode()):
        raise ApiError(403, "csrf", "This form was too old or did not come from this site; go back, reload "
                                    "the page and send it again.")


async def read_form(request: Request, limit: int = FORM_LIMIT) -> dict:
    """An application/x-www-form-urlencoded body of at most `limit` bytes, as a dict of the
    first value of each field."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        raise ApiError(415, "invalid_request", "This form must be sent by a web browser as an ordinary form.")
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > limit):
        raise ApiError(413, "too_large", "That form is larger than this page takes; shorten what you typed.")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise ApiError(413, "too_large", "That form is larger than this page takes; shorten what you typed.")
    form: dict[str, str] = {}
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=200)
    except (UnicodeDecodeError, ValueError):
        raise ApiError(400, "invalid_request", "That form could not be read; reload the page and try again.") from None
    for key, value in pairs:
        form.setdefault(key, value)
    return form


# -- pages ----------------------------------------------------------------------------------

# What a page says about the step before it (`?done=...` on the redirect after a POST): a fixed
# word chooses a fixed sentence, so no text of the address ever reaches the page.
DONE = {
    "sent": "Your message was sent. Its recipients get an e-mail saying that it is waiting here.",
    "signed-out": "You are signed out.",
    "withdrawn": "The message is withdrawn from the recipients you chose; they can no longer read it.",
}


def render(request: Request, template: str, status: int = 200, headers: dict | None = None, **context) -> HTMLResponse:
    context.setdefault("user", getattr(request.state, "user", None))
    context.setdefault("pen_name", getattr(request.state, "pen_name", None) or services(request).settings.name)
    context.setdefault("pen_footer", getattr(request.state, "pen_footer", None) or services(request).settings.footer)
    context.setdefault("done", DONE.get(request.query_params.get("done", "")) if status < 400 else None)
    context.setdefault("error", None)
    context["csrf"] = csrf_token(request)
    response = HTMLResponse(templates.get_template(template).render(**context), status_code=status)
    if getattr(request.state, "new_pre", None):
        response.set_cookie(PRE_COOKIE, request.state.new_pre, path="/", secure=True, httponly=True, samesite="lax")
    return secure(response, headers)


def redirect(url: str) -> RedirectResponse:
    return secure(RedirectResponse(url, status_code=303))


def error_page(request: Request, status: int, message: str, headers: dict | None = None,
               title: str | None = None) -> HTMLResponse:
    titles = {403: "Not allowed", 404: "Not found", 410: "Link expired", 413: "Too large", 429: "Too many tries"}
    return render(request, "error.html", status=status, headers=headers,
                  title=title or titles.get(status, "Something went wrong"), message=message)


class WebRoute(APIRoute):
    """A route of the web pages: errors become pages, and every answer gets PAGE_HEADERS."""

    def get_route_handler(self):
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                response = await handler(request)
            except SignInFirst as exc:
                response = redirect(exc.url)
            except ApiError as exc:
                response = error_page(request, exc.status, exc.message, exc.headers, getattr(exc, "title", None))
            except RequestValidationError:
                response = error_page(request, 404, "There is no page at that address.")
            return secure(response)

        return route


# -- who is signed in -----------------------------------------------------------------------

class SignInFirst(Exception):
    """A page for members only, asked for by nobody signed in: WebRoute answers with a
    redirect to the sign-in page (and, from a message's pages, back to the message after)."""

    def __init__(self, request: Request):
        message_id = request.path_params.get("message_id")
        self.url = f"/login?next=/m/{message_id}" if message_id else "/login"
        super().__init__(self.url)


@dataclass
class Page:
    """A page's database session (committed when the page is done, rolled back when it
    fails) and the signed-in user, None when nobody is."""
    session: Session
    user: User | None


def page_session(request: Request) -> Iterator[Page]:
    with services(request).db.session() as session:
        yield Page(session, begin(request, session))


PageDep = Annotated[Page, Depends(page_session, scope="function")]


def member(request: Request, page: Page) -> Page:
    """`page` when someone is signed in; else SignInFirst."""
    if page.user is None:
        page.session.commit()  # a sign-in that begin() found expired stays ended
        raise SignInFirst(request)
    return page


def member_page(request: Request, page: PageDep) -> Page:
    return member(request, page)


MemberPageDep = Annotated[Page, Depends(member_page, scope="function")]


def signed_in_member(request: Request) -> User:
    """The signed-in user, looked up in a session that is closed again before the page's
    work, for pages that stream a body in or out; else SignInFirst."""
    with services(request).db.session() as session:
        user = begin(request, session)
    if user is None:
        raise SignInFirst(request)
    return user


MemberDep = Annotated[User, Depends(signed_in_member)]


async def posted_form(request: Request) -> dict:
    """The urlencoded form of a POST (read_form). Named before a page's session dependency,
    it is read before the session opens, so a slow body never holds a connection."""
    return await read_form(request)


FormDep = Annotated[dict, Depends(posted_form)]
