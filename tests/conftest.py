"""Shared fixtures: a real pen-server over TLS on a loopback port, with a real SMTP sink
(aiosmtpd), a real SQLite file, and accounts in two membership packages."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from pen_server.devstack import PenProcess, SmtpSink, add_user, free_port, init_pen, set_package

DATA = Path(__file__).parent / "data"
PASSWORD = "correct horse battery"
FOOTER = "Sent by ABC Medical of 123 ABC Street Beverly Hills, CA 90210, Call: (555) 555-7323"
DISCLAIMERS = {
    "employees": "CONFIDENTIAL: this notice is for the named recipient of ABC Medical only.",
    "partners": "Partner notice: handle according to our data agreement.",
}
USERS = {
    "admin": ("admin@abc.example", "Ada Admin", "admin", "employees"),
    "ann": ("ann@abc.example", "Ann Lee", "member", "employees"),
    "bob": ("bob@abc.example", "Bob Stone", "member", "partners"),
    "cat": ("cat@abc.example", "Cat Moss", "member", None),
}


@pytest.fixture(scope="session", autouse=True)
def _own_state_dir(tmp_path_factory):
    """Drafts, the address book and refresh locks of every test go to a folder of the test
    run, never to the developer's own penmail state (a test may still point it elsewhere)."""
    import os

    before = os.environ.get("PENMAIL_STATE_DIR")
    os.environ["PENMAIL_STATE_DIR"] = str(tmp_path_factory.mktemp("penmail-state"))
    yield
    if before is None:
        os.environ.pop("PENMAIL_STATE_DIR", None)
    else:
        os.environ["PENMAIL_STATE_DIR"] = before


@pytest.fixture(scope="session")
def hostile() -> dict:
    return json.loads((DATA / "hostile.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def smtp():
    sink = SmtpSink().start()
    yield sink
    sink.stop()


@dataclass
class Pen:
    process: PenProcess
    smtp: SmtpSink

    @property
    def api(self) -> str:
        return self.process.api

    @property
    def ca_file(self) -> str:
        return str(self.process.ca_file)

    @property
    def data(self) -> Path:
        return self.process.data

    def client(self, token: str | None = None, timeout: float = 30, **kw) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.api, verify=self.ca_file, headers=headers, timeout=timeout, **kw)

    def login(self, who: str, password: str = PASSWORD) -> dict:
        email = USERS[who][0] if who in USERS else who
        with self.client() as c:
            r = c.post("/auth/login", json={"email": email, "password": password})
        assert r.status_code == 200, r.text
        return r.json()

    def as_user(self, who: str) -> httpx.Client:
        return self.client(self.login(who)["access_token"])

    def mails_to(self, rcpt: str, subject: str | None = None, count: int = 1, timeout: float = 30.0):
        """Wait until the SMTP sink has `count` notifications for `rcpt` (with `subject`)."""
        import time

        deadline = time.monotonic() + timeout
        while True:
            found = [m for m in list(self.smtp.received) if rcpt in m.rcpt_tos
                     and (subject is None or m.message["Subject"] == subject)]
            if len(found) >= count or time.monotonic() > deadline:
                return found
            time.sleep(0.05)

    @staticmethod
    def link_token(received) -> tuple[str, str]:
        """The message id and token from a notification's link."""
        import re

        body = received.message.get_body(("plain",)).get_content()
        match = re.search(r"/m/([A-Za-z0-9_-]+)\?t=([A-Za-z0-9_-]+)", body)
        assert match, body
        return match.group(1), match.group(2)


def make_pen(root: Path, smtp: SmtpSink, env: dict | None = None) -> PenProcess:
    port = free_port()
    init_pen(root, footer=FOOTER, port=port)
    for name, disclaimer in DISCLAIMERS.items():
        set_package(root, name, disclaimer)
    for email, name, role, package in USERS.values():
        add_user(root, email, name, PASSWORD, role=role, package=package)
    # Sending limits far above what any test sends; tests of the limits set their own.
    base_env = {"PEN_STRICT_ERRORS": "1", "PEN_RETRY_BASE_SECONDS": "0.2", "PEN_MAX_RECIPIENTS": "5000",
                "PEN_SEND_MESSAGES_PER_HOUR": "1000000", "PEN_SEND_RECIPIENTS_PER_HOUR": "1000000"}
    return PenProcess(root, port, smtp_port=smtp.port, env={**base_env, **(env or {})})


@pytest.fixture(scope="session")
def pen(tmp_path_factory, smtp):
    process = make_pen(tmp_path_factory.mktemp("pen"), smtp).start()
    yield Pen(process, smtp)
    process.stop()


@pytest.fixture
def send(pen):
    """Send a message as a user; returns the sender's copy."""
    import uuid

    def _send(who: str, to: list, subject: str = "Lab results", body: str = "Your results are ready.",
              cc: list = (), bcc: list = (), **extra) -> dict:
        def addrs(items):
            return [a if isinstance(a, dict) else {"email": USERS[a][0] if a in USERS else a} for a in items]

        payload = {"to": addrs(to), "cc": addrs(cc), "bcc": addrs(bcc), "subject": subject, "body_text": body, **extra}
        with pen.as_user(who) as c:
            r = c.post("/messages", json=payload, headers={"Idempotency-Key": uuid.uuid4().hex})
        assert r.status_code == 201, r.text
        return r.json()

    return _send
