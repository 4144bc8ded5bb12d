"""The web pages over HTTPS without a browser: headers, cookies, CSRF and origin checks,
size limits, double submits, the guest rule, page weight, and how w3m reads each page."""

from __future__ import annotations

import hashlib
import re
import shutil
import socket
import sqlite3
import ssl
import subprocess
import uuid
from datetime import timedelta

import httpx
import pytest

from pen_devstack import add_user, run_cli
from pen_server.models import utcnow
from pen_server.security import token_hash
from tests.conftest import PASSWORD, TEARDOWN_STOP_SECONDS, USERS, make_pen
from tests.web.conftest import Web, missing

CSP = ("default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-src 'self'; "
       "frame-ancestors 'none'; base-uri 'none'")


def _guest_session(web: Web, link: str) -> str:
    """Sign up through the link with httpx; returns the message's path."""
    path = link.split("://", 1)[1].split("/", 1)[1]
    path = "/" + path
    landing = web.get(path)
    assert landing.status_code == 200, landing.text
    mid, token = re.match(r"/m/([^?]+)\?t=(.+)", path).groups()
    csrf = web.form_token(landing.text)
    r = web.post(f"/m/{mid}/open", {"csrf": csrf, "t": token})
    assert r.status_code == 200 and "Make your account" in r.text
    r = web.post(f"/m/{mid}/signup", {"csrf": csrf, "t": token, "name": "Gus", "password": "guest password 1"})
    assert r.status_code == 303 and r.headers["location"] == f"/m/{mid}"
    return f"/m/{mid}"


def test_every_page_has_the_security_headers(web, guest_message):
    _guest, link, sent, _ = guest_message(html="<p>hello</p>")
    landing_path = "/" + link.split("/", 3)[3]
    anonymous = {"landing": web.get(landing_path), "login": web.get("/login"),
                 "expired": web.get(f"/m/{sent['id']}?t=nonsense"), "stylesheet": web.get("/static/pen.css")}
    path = _guest_session(web, link)
    message = web.get(path)
    att = re.search(r'href="(/m/[^"]+/a/[^"]+)"', message.text).group(1)
    signed_in = {"inbox": web.get("/"), "message": message, "reply": web.get(path + "/reply"),
                 "body": web.get(path + "/body"), "download": web.get(att), "not found": web.get("/m/nothing")}
    for name, r in {**anonymous, **signed_in}.items():
        assert r.headers["x-content-type-options"] == "nosniff", name
        assert r.headers["referrer-policy"] == "no-referrer", name
        assert r.headers["strict-transport-security"].startswith("max-age="), name
        if name not in ("stylesheet",):
            assert r.headers["cache-control"].endswith("no-store"), name
        if name not in ("body", "download"):
            assert r.headers["content-security-policy"] == CSP, name
        assert "<script" not in r.text.lower() or name == "download", name
    assert signed_in["not found"].status_code == 404 and "does not exist" in signed_in["not found"].text
    assert anonymous["expired"].status_code == 410
    frame_csp = signed_in["body"].headers["content-security-policy"]
    assert "default-src 'none'" in frame_csp and "sandbox" in frame_csp and "allow-scripts" not in frame_csp
    download = signed_in["download"]
    assert download.headers["content-disposition"].startswith("attachment;")
    assert "sandbox" in download.headers["content-security-policy"]
    ranged = web.get(att, headers={"Range": "bytes=0-9"})
    assert ranged.status_code == 206 and ranged.content == download.content[:10]
    assert ranged.headers["content-range"] == f"bytes 0-9/{len(download.content)}"


def test_session_cookie_attributes_and_sign_out_ends_the_row(pen, web, guest_message):
    r = web.login(USERS["ann"][0], PASSWORD)
    cookie = r.headers["set-cookie"]
    assert cookie.startswith("__Host-pen_session=")
    attrs = {a.strip().lower() for a in cookie.split(";")[1:]}
    assert {"secure", "httponly", "path=/", "samesite=lax"} <= attrs
    assert not any(a.startswith("domain") for a in attrs)
    value = cookie.split(";")[0].split("=", 1)[1]
    inbox = web.get("/")
    assert inbox.status_code == 200 and "Signed in as ann@abc.example" in inbox.text
    csrf = web.form_token(inbox.text)
    assert web.post("/logout", {"csrf": csrf}).status_code == 303
    with httpx.Client(base_url=web.url, verify=pen.ca_file, cookies={"__Host-pen_session": value}) as c:
        assert c.get("/").headers["location"] == "/login"


def test_a_password_change_ends_web_sign_ins(pen, web):
    email = f"pat-{uuid.uuid4().hex[:8]}@abc.example"
    add_user(pen.data, email, "Pat", PASSWORD)
    web.login(email, PASSWORD)
    assert web.get("/").status_code == 200
    run_cli("user", "passwd", "--data", str(pen.data), "--email", email, stdin="another password 2\n")
    r = web.get("/")
    assert r.status_code == 303 and r.headers["location"] == "/login"


def test_member_pages_send_nobody_signed_in_to_the_sign_in_page(pen, web, send):
    """Every page for members (MemberPageDep, MemberDep in web/core.py) answers a browser
    without a sign-in with a redirect to /login, back to the message from a message's pages;
    the sign-in page and a link's landing page (PageDep) answer it themselves."""
    sent = send("cat", ["bob"])
    mid, att = sent["id"], "no-such-attachment"
    with httpx.Client(base_url=web.url, verify=pen.ca_file) as c:
        for method, path, where in [("GET", "/", "/login"), ("GET", "/new", "/login"),
                                    ("GET", f"/m/{mid}", f"/login?next=/m/{mid}"),
                                    ("GET", f"/m/{mid}/body", f"/login?next=/m/{mid}"),
                                    ("GET", f"/m/{mid}/reply", f"/login?next=/m/{mid}"),
                                    ("GET", f"/m/{mid}/a/{att}", f"/login?next=/m/{mid}"),
                                    ("POST", f"/m/{mid}/revoke", f"/login?next=/m/{mid}"),
                                    ("POST", "/new", "/login"),
                                    ("POST", f"/m/{mid}/reply", f"/login?next=/m/{mid}")]:
            r = c.request(method, path, data={"csrf": "x"} if method == "POST" else None)
            assert (r.status_code, r.headers.get("location")) == (303, where), (method, path, r.text[:200])
            assert r.headers["Content-Security-Policy"] == CSP
        assert c.get("/login").status_code == 200
        assert c.get(f"/m/{mid}?t=not-a-token").status_code == 410


def test_a_session_ends_after_an_hour_without_a_page(pen, web):
    web.login(USERS["bob"][0], PASSWORD)
    assert web.get("/").status_code == 200
    token = web.client.cookies["__Host-pen_session"]
    with sqlite3.connect(pen.data / "pen.db") as db:
        db.execute("UPDATE web_sessions SET last_seen_at = ? WHERE token_hash = ?",
                   ((utcnow() - timedelta(minutes=61)).replace(tzinfo=None).isoformat(" "), token_hash(token)))
    r = web.get("/")
    assert r.status_code == 303 and r.headers["location"] == "/login"
    with sqlite3.connect(pen.data / "pen.db") as db:
        assert db.execute(
            "SELECT count(*) FROM web_sessions WHERE token_hash = ?", (token_hash(token),)
        ).fetchone() == (0,)


@pytest.mark.parametrize("case", ["no token", "wrong token", "cross-site fetch", "foreign origin", "null origin"])
def test_csrf_and_origin_checks_refuse_a_post(web, case):
    page = web.get("/login")
    data = {"email": USERS["cat"][0], "password": PASSWORD, "next": "/", "csrf": web.form_token(page.text)}
    headers = {}
    if case == "no token":
        del data["csrf"]
    elif case == "wrong token":
        data["csrf"] = "x" + data["csrf"][1:]
    elif case == "cross-site fetch":
        headers = {"Sec-Fetch-Site": "cross-site"}
    elif case == "foreign origin":
        headers = {"Origin": "https://evil.example"}
    else:
        headers = {"Origin": "null", "Sec-Fetch-Site": "cross-site"}
    r = web.client.post("/login", data=data, headers=headers)
    assert r.status_code == 403, r.text
    assert "did not come from this site" in r.text and "set-cookie" not in r.headers
    # The same form from our own page is accepted.
    ok = web.client.post(
        "/login",
        data={**data, "csrf": web.form_token(page.text)},
        headers={"Origin": web.url, "Sec-Fetch-Site": "same-origin"},
    )
    assert ok.status_code == 303


def test_a_form_body_over_the_limit_is_refused(web):
    page = web.get("/login")
    r = web.client.post("/login", data={"csrf": web.form_token(page.text), "email": "a" * 70_000, "password": "x"})
    assert r.status_code == 413 and "larger than this page takes" in r.text


def test_reply_double_submit_sends_once_and_guest_rule_keeps_the_form(pen, web, guest_message):
    _guest, link, sent, _ = guest_message(subject="Twice")
    path = _guest_session(web, link)
    form = web.get(path + "/reply")
    fields = {
        "csrf": web.form_token(form.text),
        "key": re.search(r'name="key" value="([^"]+)"', form.text).group(1),
        "to": "ann@abc.example",
        "cc": "",
        "subject": "Re: Twice",
        "body": "Once only.",
    }
    files = {"files": ("note.txt", b"a note", "text/plain")}
    first = web.client.post(path + "/reply", data=fields, files=files)
    second = web.client.post(path + "/reply", data=fields, files=files)
    assert first.status_code == second.status_code == 303
    assert first.headers["location"] == second.headers["location"]
    with pen.as_user("ann") as c:
        found = c.get("/messages", params={"q": '"Once only."'}).json()["items"]
    assert len(found) == 1

    # A guest may not write to a stranger: one sentence, and what was typed comes back.
    form = web.get(path + "/reply")
    refused = web.client.post(
        path + "/reply",
        files=files,
        data={
            "csrf": web.form_token(form.text),
            "key": uuid.uuid4().hex,
            "to": "stranger@elsewhere.example",
            "cc": "",
            "subject": "Re: Twice",
            "body": "Please keep this text.",
        },
    )
    assert refused.status_code == 422
    assert "stranger@elsewhere.example is neither" in refused.text
    assert "Please keep this text." in refused.text and 'value="stranger@elsewhere.example"' in refused.text
    assert "note.txt" in refused.text and 'name="upload"' in refused.text  # the file stays attached


def test_a_reply_form_without_its_key_says_so_in_words(pen, web, guest_message):
    """The hidden key that keeps a double submit from sending twice, empty or missing (an
    old page, a tool that drops hidden fields): nothing is sent, the form comes back as it
    was typed, with a new key and a sentence a person understands (not the API's about an
    Idempotency-Key header)."""
    _guest, link, _sent, _ = guest_message(subject="Keyless")
    path = _guest_session(web, link)
    body = f"Typed with care {uuid.uuid4().hex[:8]}."
    for key in ({"key": ""}, {}):
        form = web.get(path + "/reply")
        refused = web.client.post(path + "/reply", files={"files": ("note.txt", b"a note", "text/plain")},
                                  data={"csrf": web.form_token(form.text), **key, "to": "ann@abc.example", "cc": "",
                                        "subject": "Re: Keyless", "body": body})
        assert refused.status_code == 422
        assert "Idempotency-Key" not in refused.text
        assert "so nothing was sent" in refused.text and "press Send again" in refused.text
        assert body in refused.text and "note.txt" in refused.text
        assert re.search(r'name="key" value="[A-Za-z0-9_-]{8,}"', refused.text)
    with pen.as_user("ann") as c:
        assert c.get("/messages", params={"q": f'"{body}"'}).json()["items"] == []


def test_upload_over_the_pens_limit_is_refused_with_the_form_filled(tmp_path, smtp):
    process = make_pen(tmp_path / "pen", smtp)
    config = tmp_path / "pen" / "pen-server.toml"
    config.write_text(re.sub(r"max_upload_bytes = \d+", "max_upload_bytes = 100000", config.read_text()))
    process.start()
    try:

        class P:  # what Web needs of the `pen` fixture
            ca_file = str(process.ca_file)

        P.process = process
        web = Web(P)
        web.login(USERS["ann"][0], PASSWORD)
        form = web.get("/new")
        fields = {
            "csrf": web.form_token(form.text),
            "key": uuid.uuid4().hex,
            "to": USERS["bob"][0],
            "cc": "",
            "subject": "Big",
            "body": "Too big a file.",
        }
        r = web.client.post("/new", data=fields, files={"files": ("big.bin", b"x" * 300_000)})
        assert r.status_code == 422
        assert "big.bin is larger than this PEN takes (at most 100000 bytes a file)" in r.text
        assert "Too big a file." in r.text
        assert not list((tmp_path / "pen" / "tmp").glob("upload-*"))  # nothing of it left on disk
        # Beyond the hard cap, refused before the body is read.
        cookie = "; ".join(f"{k}={v}" for k, v in web.client.cookies.items())
        tls_context = ssl.create_default_context(cafile=str(process.ca_file))
        with (
            socket.create_connection(("127.0.0.1", process.port), timeout=30) as raw,
            tls_context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
        ):
            tls.sendall(
                (
                    f"POST /new HTTP/1.1\r\nHost: 127.0.0.1:{process.port}\r\nCookie: {cookie}\r\n"
                    f"Content-Type: multipart/form-data; boundary=x\r\nContent-Length: {10**12}\r\n\r\n"
                ).encode()
            )
            status_line = tls.recv(65536).split(b"\r\n", 1)[0]
        assert b" 413 " in status_line, status_line
        web.close()
    finally:
        process.stop(TEARDOWN_STOP_SECONDS)


def test_a_page_without_the_body_weighs_under_30_kb(pen, web, send):
    for i in range(45):
        send("bob", ["cat"], subject=f"Weight {i} " + "w" * 120, body="x" * 500)
    web.login(USERS["cat"][0], PASSWORD)
    inbox = web.get("/")
    assert inbox.text.count('class="subject"') == 40 and "Older messages" in inbox.text
    assert inbox.text.count('<strong class="flag">Unread:</strong>') == 40  # by a word, not only by weight
    assert len(inbox.content) < 30_000, len(inbox.content)


def test_text_browsers_read_each_page_in_order(web, guest_message, tmp_path):
    w3m = shutil.which("w3m")
    if w3m is None:
        missing("The w3m test needs Debian's w3m, which is not installed")
    _guest, link, sent, _ = guest_message(
        subject="Read in w3m", body="The body text.\nSecond line.", files=[("scan.pdf", b"%PDF scan")]
    )
    landing = web.get("/" + link.split("/", 3)[3]).text
    path = _guest_session(web, link)
    pages = {
        "landing": (landing, ["ABC Medical", "A secure message for you", "Ann Lee", "Read in w3m", "Open the message"]),
        "message": (
            web.get(path).text,
            [
                "Skip to the content",
                "ABC Medical",
                "Sign out",
                "Read in w3m",
                "From",
                "Ann Lee",
                "Reply",
                "The body text.",
                "Attachments",
                "scan.pdf",
            ],
        ),
        "inbox": (web.get("/").text, ["ABC Medical", "Inbox", "Read in w3m", "From: Ann Lee"]),
        "reply": (
            web.get(path + "/reply").text,
            ["Reply", "To", "ann@abc.example", "Subject", "Message", "Attach files", "Send"],
        ),
        "login": (web.get("/login").text, ["Sign in", "E-mail address", "Password"]),
    }
    browsers = {"w3m": [w3m, "-dump", "-T", "text/html", "-cols", "80"]}
    if shutil.which("lynx"):  # not installed by .ci/run; checked where it is
        browsers["lynx"] = [shutil.which("lynx"), "-dump", "-force_html", "-nolist", "-width=80"]
    for name, (html, order) in pages.items():
        f = tmp_path / f"{name}.html"
        f.write_text(html)
        for browser, command in browsers.items():
            text = subprocess.run([*command, str(f)], capture_output=True, text=True, timeout=30, check=True).stdout
            at = 0
            for piece in order:
                found = text.find(piece, at)
                assert found >= 0, f"{browser}, {name}: {piece!r} missing or out of order in:\n{text}"
                at = found + len(piece)
            if name == "message":  # the body's lines stay lines
                assert re.search(r"The body text\.\n\s*Second line\.", text), (browser, text)


def _status_kib(pid: int, field: str) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def test_a_large_upload_streams_to_disk_not_memory(pen, web, tmp_path):
    pid = pen.process.proc.pid
    big = tmp_path / "scan.bin"
    with open(big, "wb") as f:
        for i in range(96):  # 96 MiB, each MiB different so nothing compresses or repeats
            f.write(hashlib.sha256(str(i).encode()).digest() * (1 << 15))
    web.login(USERS["ann"][0], PASSWORD)
    form = web.get("/new")
    rss_before = _status_kib(pid, "VmRSS")
    with open(f"/proc/{pid}/clear_refs", "w") as f:
        f.write("5")  # the peak (VmHWM) starts again from now
    with open(big, "rb") as f:
        r = web.client.post(
            "/new",
            files={"files": ("scan.bin", f, "application/octet-stream")},
            data={
                "csrf": web.form_token(form.text),
                "key": uuid.uuid4().hex,
                "to": USERS["bob"][0],
                "cc": "",
                "subject": "A large scan",
                "body": "Attached.",
            },
        )
    assert r.status_code == 303, r.text
    growth_mib = (_status_kib(pid, "VmHWM") - rss_before) / 1024
    assert growth_mib < 40, f"the server's memory grew by {growth_mib:.0f} MiB for a 96 MiB upload"
    mid = r.headers["location"].split("?")[0].rsplit("/", 1)[1]  # /m/ID?done=sent
    with pen.as_user("ann") as c:
        [att] = c.get(f"/messages/{mid}").json()["attachments"]
    assert att["size"] == big.stat().st_size
    assert att["sha256"] == hashlib.sha256(big.read_bytes()).hexdigest()


def test_pages_say_what_was_done_show_what_is_answered_and_carry_the_footer(pen, web, guest_message):
    """A sent reply and a sign-out each say so on the next page (a fixed sentence chosen by a
    word in the address, never the address's text); the reply form shows the message it
    answers; every page's foot has the PEN's footer, as the notification e-mails do."""
    from tests.conftest import FOOTER

    _guest, link, sent, _ = guest_message(subject="Answer me", body="Line one of the question.\nLine two.")
    path = _guest_session(web, link)
    form = web.get(path + "/reply")
    assert "The message you are answering: from Ann Lee" in form.text
    assert "Line one of the question.<br>Line two." in form.text and '<details class="answered" open>' in form.text
    footer_line = FOOTER.splitlines()[0]
    for page in (form, web.get(path), web.get("/")):
        assert footer_line in page.text, page.url
    r = web.client.post(path + "/reply", data={
        "csrf": web.form_token(form.text), "key": re.search(r'name="key" value="([^"]+)"', form.text).group(1),
        "to": "ann@abc.example", "cc": "", "subject": "Re: Answer me", "body": "Here is my answer."},
        files={"files": ("answer.txt", b"an answer", "text/plain")})
    assert r.status_code == 303 and r.headers["location"].endswith("?done=sent")
    shown = web.get(r.headers["location"])
    assert '<p class="done" role="status">Your message was sent.' in shown.text and "Here is my answer." in shown.text
    assert 'class="done"' not in web.get(path + "?done=%3Cscript%3E").text  # an unknown word says nothing

    r = web.post("/logout", {"csrf": web.form_token(shown.text)})
    assert r.status_code == 303 and r.headers["location"] == "/login?done=signed-out"
    page = web.get(r.headers["location"])
    assert '<p class="done" role="status">You are signed out.</p>' in page.text and footer_line in page.text


def _form_fields(page: str) -> dict[str, str]:
    """The reply form's To, Cc and subject as a browser fills them in."""
    import html

    return {name: html.unescape(re.search(rf'<input id="{name}" name="{name}"[^>]* value="([^"]*)"', page).group(1))
            for name in ("to", "cc", "subject")}


def test_the_reply_form_follows_the_reply_rule(web, send):
    """docs/pen-api.md, "Replying and forwarding" (issue 24's example): from Bob to Ann and
    Cat, copied to Ada, "AW: Termin". Reply to all: To Bob and Cat, Cc Ada, "Re: Termin";
    reply: To Bob. Ann's own message goes back to its recipients; a hostile subject is
    filled in literally (escaped in the page)."""
    tag = uuid.uuid4().hex[:8]
    original = send("bob", ["ann", "cat"], cc=["admin"], subject=f"AW: Termin {tag}", body="Passt Dienstag?")
    own = send("ann", ["bob", "ann"], cc=["cat"], subject=f"Re: RE[2]: Plan {tag}", body="The plan.")
    hostile = send("bob", ["ann"], subject='"}], "admin": true <b>x</b> ' + tag, body="x")
    web.login(USERS["ann"][0], PASSWORD)
    assert _form_fields(web.get(f"/m/{original['id']}/reply?all=1").text) == {
        "to": "bob@abc.example, cat@abc.example", "cc": "admin@abc.example", "subject": f"Re: Termin {tag}"}
    assert _form_fields(web.get(f"/m/{original['id']}/reply").text) == {
        "to": "bob@abc.example", "cc": "", "subject": f"Re: Termin {tag}"}
    assert _form_fields(web.get(f"/m/{own['id']}/reply?all=1").text) == {
        "to": "bob@abc.example", "cc": "cat@abc.example", "subject": f"Re: Plan {tag}"}
    page = web.get(f"/m/{hostile['id']}/reply?all=1").text
    assert "<b>x</b>" not in page.split('id="subject"')[1].split(">")[0]
    assert _form_fields(page)["subject"] == f'Re: "}}], "admin": true <b>x</b> {tag}'


def test_a_text_body_is_escaped_line_by_line(hostile):
    """text_body (bodies, the quoted message of a reply form, the PEN's footer) lets no tag of
    the text into the page: only its own <br> between the lines."""
    from markupsafe import Markup

    from pen_server.web.core import text_body

    values = [v for k, v in hostile["text"].items() if not k.startswith("_")] + [
        "a\n<script>alert(1)</script>\r\nb", '<img src=x onerror="alert(1)">', "</p><iframe>"]
    for value in values:
        html = text_body(value)
        assert isinstance(html, Markup)
        assert "<" not in html.replace("<br>", ""), html[:200]
        assert html.count("<br>") == value.replace("\r\n", "\n").count("\n")
