"""Fixtures of the web pages' tests: a browser (Debian's Chromium through Playwright, one
launch for the whole run), httpx clients that use the pages as a browser would, and a guest
with a message waiting behind the link of a real notification e-mail."""

from __future__ import annotations

import os
import re
import shutil
import uuid
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from tests.conftest import InProcessPen

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run",
                 # Chromium puts sandboxed frames (our message body) in a process of their own,
                 # and Playwright then misses the "download" event of the page around them; a
                 # person's download works either way.
                 "--disable-features=IsolateSandboxedIframes"]
AXE = Path(__file__).parent / "node_modules" / "axe-core" / "axe.min.js"
REQUIRE = os.environ.get("PEN_REQUIRE_TOOLS") == "1"


def missing(what: str) -> None:
    message = (f"{what}; enable these tests with: apt-get install chromium w3m && npm ci --prefix tests/web "
               f"(PEN_REQUIRE_TOOLS=1, set by .ci/run, makes this a failure)")
    if REQUIRE:
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def browser():
    path = os.environ.get("PEN_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not os.path.exists(path):
        missing("The browser tests need Debian's chromium, which is not installed")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("The browser tests need Playwright's Python package (pip install playwright)")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        yield b
        b.close()


class Page:
    """A browser tab with what it saw: console messages and CSP violations."""

    def __init__(self, context):
        self.context = context
        self.page = context.new_page()
        self.console: list[str] = []
        self.requests = []
        self.page.on("console", lambda m: self.console.append(f"{m.type}: {m.text}"))
        self.page.on("request", lambda r: self.requests.append(r))

    def csp_reports(self) -> list[str]:
        return [c for c in self.console if "Content Security Policy" in c or "Blocked script" in c
                or "sandboxed" in c]


@pytest.fixture
def tab(browser):
    context = browser.new_context(ignore_https_errors=True)
    yield Page(context)
    context.close()


@pytest.fixture
def axe_tab(browser):
    """A tab whose pages axe-core can be injected into: CSP bypassed for this context only."""
    if not AXE.is_file():
        missing(f"axe-core is not installed in {AXE.parent.parent} (npm ci --prefix tests/web)")
    context = browser.new_context(ignore_https_errors=True, bypass_csp=True)
    yield Page(context)
    context.close()


def run_axe(page) -> list[dict]:
    page.add_script_tag(path=str(AXE))
    result = page.evaluate("""async () => {
        const r = await axe.run(document, {resultTypes: ['violations']});
        return r.violations.map(v => ({id: v.id, help: v.help, nodes: v.nodes.map(n => n.html.slice(0, 200))}));
    }""")
    return result


class Web:
    """The pages through httpx, as a browser without JavaScript uses them."""

    def __init__(self, pen):
        self.pen = pen
        if isinstance(pen, InProcessPen):  # the pages of a PEN in this process (tests/conftest.py in_process)
            self.url = pen.url
            self.client = pen.client(base_url=self.url)
        else:
            self.url = pen.process.url
            self.client = httpx.Client(base_url=self.url, verify=pen.ca_file, timeout=30)

    def close(self):
        self.client.close()

    def get(self, path: str, **kw) -> httpx.Response:
        return self.client.get(path, **kw)

    def form_token(self, html: str) -> str:
        match = re.search(r'name="csrf" value="([^"]+)"', html)
        assert match, html
        return match.group(1)

    def post(self, path: str, data: dict, csrf_from: str | None = None, **kw) -> httpx.Response:
        if csrf_from is not None and "csrf" not in data:
            data = {**data, "csrf": self.form_token(self.get(csrf_from).text)}
        return self.client.post(path, data=data, **kw)

    def login(self, email: str, password: str) -> httpx.Response:
        r = self.post("/login", {"email": email, "password": password, "next": "/"}, csrf_from="/login")
        assert r.status_code == 303, r.text
        return r


@pytest.fixture
def web(pen):
    w = Web(pen)
    yield w
    w.close()


def link_of(received) -> str:
    body = received.message.get_body(("plain",)).get_content()
    match = re.search(r"https://\S+/m/\S+", body)
    assert match, body
    return match.group(0)


@pytest.fixture
def guest_message(pen, send):
    """A message from Ann to a new outside address, with an attachment and an HTML body;
    returns (guest address, link from the notification e-mail, message, attachment bytes)."""

    def make(subject: str = "Your results", body: str = "Your results are attached.", html: str | None = None,
             files: Sequence[tuple[str, bytes]] = (("results.pdf", b"%PDF-1.4 results " * 300),), **extra):
        guest = f"guest-{uuid.uuid4().hex[:10]}@outside.example"
        ids = []
        with pen.as_user("ann") as c:
            for name, data in files:
                r = c.post(f"/uploads?filename={quote(name, safe='')}", content=data,
                           headers={"Content-Type": "application/pdf"})
                assert r.status_code == 201, r.text
                ids.append(r.json()["id"])
        payload = {"body_html": html} if html else {}
        message = send("ann", [{"email": guest, "name": extra.pop("guest_name", "Gus Guest")}], subject=subject,
                       body=body, attachments=ids, **payload, **extra)
        mails = pen.mails_to(guest)
        assert mails, f"no notification reached {guest}"
        return guest, link_of(mails[0]), message, dict(files)

    return make
