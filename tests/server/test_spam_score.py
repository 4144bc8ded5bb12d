"""Notifications that filters like: every kind the demo PEN sends (member with and without a
disclaimer, guest, long subjects, non-ASCII names), DKIM-signed, scored by Debian's
SpamAssassin with local tests only (`spamassassin -L -t`, no network) under 1.0; the test
prints each score and the rules that fired. The text and HTML parts say the same thing, every
link is on the PEN's own host and shows itself, and the HTML is small and well formed.

Without spamassassin the test skips with one line; under PEN_REQUIRE_TOOLS=1 (CI) it fails."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import uuid
from concurrent.futures import ThreadPoolExecutor
from html.parser import HTMLParser
from urllib.parse import urlsplit

import pytest

from pen_devstack import PenProcess, add_user, free_port, init_pen, run_cli, set_package
from tests.conftest import PASSWORD, TEARDOWN_STOP_SECONDS, Pen
from tui.demo.data import DISCLAIMERS, DOMAIN, FOOTER, PEN_NAME

PEN_HOST = f"pen.{DOMAIN}"
LIMIT = 1.0
PEOPLE = {  # key: (email, name, package)
    "ruiz": (f"dr.ruiz@{DOMAIN}", "Dr. Elena Ruiz", "staff"),
    "zoe": (f"zoe@{DOMAIN}", "Zoë Ångström-Müller", "physicians"),
    "li": (f"li@{DOMAIN}", "李小龍", None),
}
LONG = ("Follow-up on your appointment of 12 March: blood panel, thyroid function, vitamin D and the "
        "referral letter for the cardiology clinic, with the forms the insurance company asked for, "
        "the parking permit and directions to the new building on the east side of River Road")


@pytest.fixture(scope="module")
def spamassassin() -> str:
    found = shutil.which("spamassassin")
    if found:
        return found
    if os.environ.get("PEN_REQUIRE_TOOLS") == "1":
        pytest.fail("spamassassin is missing but PEN_REQUIRE_TOOLS=1: install Debian's spamassassin.")
    pytest.skip("spamassassin is not installed (apt-get install spamassassin): no spam score here")


@pytest.fixture(scope="module")
def demo_pen(tmp_path_factory, smtp):
    data = tmp_path_factory.mktemp("demo-pen")
    port = free_port()
    init_pen(data, name=PEN_NAME, footer=FOOTER, base_url=f"https://{PEN_HOST}", port=port,
             from_address=f"pen@{DOMAIN}")
    for package, disclaimer in DISCLAIMERS.items():
        set_package(data, package, disclaimer)
    for email, name, package in PEOPLE.values():
        add_user(data, email, name, PASSWORD, package=package)
    run_cli("dkim", "init", "--data", str(data), "--domain", DOMAIN, "--selector", "pen1")
    process = PenProcess(data, port, smtp_port=smtp.port, env={"PEN_RETRY_BASE_SECONDS": "0.2"}).start()
    yield Pen(process, smtp)
    process.stop(TEARDOWN_STOP_SECONDS)


def send_as(pen: Pen, email: str, to: list[dict], subject: str, password: str = PASSWORD, **extra) -> dict:
    with pen.client() as c:
        token = c.post("/auth/login", json={"email": email, "password": password}).json()["access_token"]
        r = c.post("/messages", headers={"Authorization": f"Bearer {token}", "Idempotency-Key": uuid.uuid4().hex},
                   json={"to": to, "subject": subject, "body_text": "See the attached results.", **extra})
    assert r.status_code == 201, r.text
    return r.json()


def notifications(pen: Pen) -> dict[str, bytes]:
    """Send what the demo sends and collect one notification of each kind."""
    tag = uuid.uuid4().hex[:6]
    guest = {"email": f"pat.{tag}@mail.example", "name": "Pat Ó Súilleabháin"}
    got: dict[str, bytes] = {}

    def wait(label: str, rcpt: str, subject: str):
        mail = pen.mails_to(rcpt, subject, timeout=60)
        assert mail, f"no notification for {label}"
        got[label] = mail[0].data
        return mail[0]

    ruiz, zoe, li = PEOPLE["ruiz"], PEOPLE["zoe"], PEOPLE["li"]
    subject = f"Your lab results {tag}"
    first = send_as(pen, ruiz[0], [guest], subject)
    invite = wait("member with a disclaimer, to a new guest", guest["email"], subject)
    send_as(pen, li[0], [{"email": zoe[0], "name": zoe[1]}], f"{LONG} {tag}")
    wait("member without a disclaimer, long subject", zoe[0], f"{LONG} {tag}")
    uni = f"Befund für Jürgen Groß – Überweisung {tag} 检查结果"
    send_as(pen, zoe[0], [{"email": li[0], "name": li[1]}, {"email": ruiz[0], "name": ruiz[1]}], uni,
            cc=[{"email": f"lab.{tag}@partner.example", "name": "Ærø Lab"}])
    wait("non-ASCII names and subject, with Cc", li[0], uni)
    # The guest signs up through the invitation and replies.
    _mid, token = pen.link_token(invite)
    with pen.client() as c:
        r = c.post(f"/invitations/{token}/register", json={"display_name": guest["name"], "password": PASSWORD})
        assert r.status_code == 201, r.text
    send_as(pen, guest["email"], [{"email": ruiz[0]}], f"Re: {subject}", in_reply_to=first["id"])
    wait("guest reply", ruiz[0], f"Re: {subject}")
    return got


def score(spamassassin: str, data: bytes) -> tuple[float, list[str]]:
    done = subprocess.run([spamassassin, "-L", "-t"], input=data, capture_output=True, timeout=120)
    out = done.stdout.decode("utf-8", "replace")
    found = re.search(r"Content analysis details:\s+\((-?\d+(?:\.\d+)?) points", out)
    assert found, (done.returncode, out[-2000:], done.stderr.decode("utf-8", "replace")[-2000:])
    table = out[found.end():].split("\n\n")[1]
    rules = [" ".join(line.split()) for line in table.splitlines() if re.match(r"\s*-?\d+\.\d+\s+[A-Z0-9_]+", line)]
    return float(found.group(1)), rules


class Page(HTMLParser):
    """Tags must close in order; links and text are kept."""

    VOID = {"meta", "br"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack, self.links, self.text, self.errors, self.title = [], [], [], [], False
        self._href = None

    def handle_starttag(self, tag, attrs):
        if tag == "title":
            self.title = True
        if tag == "a":
            self._href = dict(attrs).get("href")
            self.links.append([self._href, ""])
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack.pop() != tag:
            self.errors.append(tag)

    def handle_data(self, data):
        if self.stack and self.stack[-1] == "a":
            self.links[-1][1] += data
        if "body" in self.stack:
            self.text.append(data)


def words(text: str) -> list[str]:
    return re.findall(r"\S+", text)


def test_every_demo_notification_scores_under_one(demo_pen, spamassassin):
    import email
    import email.policy

    mails = notifications(demo_pen)
    with ThreadPoolExecutor(2) as pool:
        scores = dict(zip(mails, pool.map(lambda d: score(spamassassin, d), mails.values())))
    print()
    for label, (points, rules) in scores.items():
        print(f"SpamAssassin {points:+.1f}  {label}: " + "; ".join(rules))
    for label, data in mails.items():
        msg = email.message_from_bytes(data, policy=email.policy.default)
        assert msg["DKIM-Signature"], label
        text = msg.get_body(("plain",)).get_content()
        page_src = msg.get_body(("html",)).get_content()
        page = Page()
        page.feed(page_src)
        page.close()
        assert not page.errors and not page.stack and page.title, (label, page.errors, page.stack)
        assert len(page_src.encode()) < 4096, (label, len(page_src))
        assert words("".join(page.text)) == words(text), label  # both parts say the same thing
        assert page.links and all(href == shown and urlsplit(href).hostname == PEN_HOST
                                  for href, shown in page.links), (label, page.links)
        assert {urlsplit(u).hostname for u in re.findall(r"https?://\S+", text)} == {PEN_HOST}, label
    assert all(points < LIMIT for points, _ in scores.values()), scores
