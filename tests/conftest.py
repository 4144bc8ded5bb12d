"""Shared fixtures: a real pen-server over TLS on a loopback port, with a real SMTP sink
(aiosmtpd), a real SQLite file, and accounts in two membership packages."""

from __future__ import annotations

import contextlib
import inspect
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from pen_devstack import (
    PenProcess,
    SmtpSink,
    add_user,
    free_port,
    init_pen,
    set_package,
)
from pen_devstack import postgres as pg

DATA = Path(__file__).parent / "data"
# A fixture's PEN is stopped with SIGTERM and killed after this long: an event stream that a
# test's client left open holds a graceful stop for the server's 10 s, and the data goes anyway.
TEARDOWN_STOP_SECONDS = 2.0
# Every PEN and pen-server command of the run hashes passwords at the test cost (argon2id at its
# smallest; pen_server/security.py): the suite signs in some two thousand times, and at the
# standard cost those hashes were about a quarter of the session PENs' CPU. The tests of the
# hashing itself (its pool under a flood, renewal of old hashes) run a PEN at the standard cost.
os.environ.setdefault("PEN_PASSWORD_COST", "test")
PASSWORD = "correct horse battery"
# The snapshots' PENs: their clock starts at 09:30 on 15 Jan 2020 and runs a thousand times
# slower, so the times shown never depend on how long a loaded machine took to start them.
SNAPSHOT_CLOCK = {"PEN_CLOCK": "2020-01-15T09:30:00Z", "PEN_CLOCK_RATE": "0.001"}
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


# Tests marked `slow` (node id prefixes): they start processes of their own (a PEN per test
# or per module, a worker, a fleet, Dovecot, an S3 or DNS server, tmux, `penmail demo`), or
# wait seconds by design (delays, leases, time-outs). `pytest -m "not slow and not browser"`
# leaves them out; the README's command and CI run them. Add a test here when it takes more
# than a few seconds on an idle machine.
SLOW = (
    "tests/server/test_backup.py", "tests/server/test_bounces.py", "tests/server/test_deliverability.py",
    "tests/server/test_dkim.py", "tests/server/test_durability.py", "tests/server/test_fleet.py",
    "tests/server/test_init_files.py", "tests/server/test_json_log.py", "tests/server/test_limits.py",
    "tests/server/test_members.py", "tests/server/test_metrics.py", "tests/server/test_migrate_to.py",
    "tests/server/test_processes.py", "tests/server/test_report.py", "tests/server/test_schema_fuzz.py",
    "tests/server/test_search_index.py", "tests/server/test_settings_refused.py",
    "tests/server/test_signin_limits.py", "tests/server/test_spam_score.py", "tests/server/test_storage_s3.py",
    "tests/server/test_after_send.py::test_a_notification_waiting_for_a_dead_relay",
    "tests/client/test_demo.py", "tests/client/test_intercept.py", "tests/client/test_intercept_sent.py",
    "tests/client/test_key_bursts_tmux.py",
    # The longest single tests of a full run (--durations=0, notes of issue 24): every screen
    # or every hostile string through the real terminal app.
    "tests/client/test_hostile_screens.py::test_raw_hostile_strings_on_every_screen",
    "tests/client/test_hostile_screens.py::test_hostile_subjects_in_the_mailbox_actions_sentences_and_question",
    "tests/client/test_hostile_screens.py::test_hostile_strings_through_the_real_server",
    "tests/client/test_message_list_long.py::test_end_shows_the_oldest_at_once_and_scrolling_up_from_there",
    "tests/client/test_keyboard_only.py::test_vim_keys_beside_the_arrows_on_every_list",
    "tests/client/test_keyboard_only.py::test_escape_backs_out_of_every_screen_and_dialog",
    "tests/client/test_line_mode.py::test_hostile_data_never_reaches_the_output_raw",
    "tests/client/test_line_mode.py::test_get_saves_checked_attachments_and_never_overwrites",
)


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which reads the xdist_group marks
def pytest_collection_modifyitems(config, items):
    """The markers a test gets from what it uses (pyproject.toml registers them): `postgres`
    for the [postgresql] half of a test and anything on the `postgres` cluster, `browser` for
    Chromium; `slow` for the modules and tests in SLOW. And under --dist loadgroup, the tests of
    a module with a module-scoped fixture that starts something (a PEN of the module's own) go
    to one worker, per database, so that it starts once."""
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        params = getattr(getattr(item, "callspec", None), "params", {})
        if params.get("database") == "postgresql" or "postgres" in names:
            item.add_marker(pytest.mark.postgres)
        if "browser" in names:
            item.add_marker(pytest.mark.browser)
        if item.nodeid.startswith(SLOW):
            item.add_marker(pytest.mark.slow)
        info = getattr(item, "_fixtureinfo", None)
        if info is None or item.get_closest_marker("xdist_group"):
            continue
        # A module-scoped fixture with a teardown started something for the module (a PEN,
        # a server); one that only returns a value (a message on the session PEN) needs no group.
        started = any(defs and defs[-1].scope == "module" and defs[-1].baseid
                      and inspect.isgeneratorfunction(defs[-1].func) for defs in info.name2fixturedefs.values())
        if started:
            item.add_marker(pytest.mark.xdist_group(f"{item.module.__name__}:{params.get('database', '')}"))


@pytest.fixture(scope="session", autouse=True)
def _own_state_dir(tmp_path_factory):
    """Drafts, the address book and refresh locks of every test go to a folder of the test
    run, never to the developer's own penmail state (a test may still point it elsewhere)."""
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

    @property
    def on_postgres(self) -> bool:
        return self.process.database_url.startswith("postgresql")

    def sql(self):
        """A connection to this PEN's database, SQLite or PostgreSQL (PenProcess.sql)."""
        return self.process.sql()

    def client(self, token: str | None = None, timeout: float | httpx.Timeout = 30, **kw) -> httpx.Client:
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

    def assert_notified_once(self, sender: str, subject: str, recipients: list[str], timeout: float = 30.0) -> None:
        """The sender has one message with `subject`, with one notification per recipient,
        each delivered (status sent: nothing is left that could send a second), and the sink
        got exactly one e-mail for each."""
        import time

        with self.as_user(sender) as c:
            found = c.get("/messages", params={"folder": "sent", "q": subject}).json()["items"]
            [sent] = [m for m in found if m["subject"] == subject]
            deadline = time.monotonic() + timeout
            while True:
                items = c.get(f"/messages/{sent['id']}/notifications").json()["items"]
                if all(n["status"] == "sent" for n in items) or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
        assert sorted(n["recipient"]["email"] for n in items) == sorted(recipients)
        assert {n["status"] for n in items} == {"sent"}, items
        for rcpt in recipients:
            assert len(self.mails_to(rcpt, subject, timeout=0)) == 1

    @staticmethod
    def link_token(received) -> tuple[str, str]:
        """The message id and token from a notification's link."""
        import re

        body = received.message.get_body(("plain",)).get_content()
        match = re.search(r"/m/([A-Za-z0-9_-]+)\?t=([A-Za-z0-9_-]+)", body)
        assert match, body
        return match.group(1), match.group(2)


@pytest.fixture(scope="session")
def postgres():
    """A throwaway PostgreSQL cluster of this test process (pen_devstack.postgres). Without
    PostgreSQL its tests skip with one line; under PEN_REQUIRE_TOOLS=1 (.ci/run) they fail."""
    if not pg.available():
        if os.environ.get("PEN_REQUIRE_TOOLS") == "1":
            pytest.fail(f"{pg.HOW_TO_ENABLE} (PEN_REQUIRE_TOOLS=1)")
        pytest.skip(pg.HOW_TO_ENABLE)
    cluster = pg.PostgresCluster().start()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def database(request) -> Callable[[], str]:
    """The database a PEN runs on: a test (or fixture) that asks for this runs once on each,
    with ids [sqlite] and [postgresql]. Call it for a new database's URL per PEN ('' is
    SQLite in the PEN's data folder)."""
    if request.param == "sqlite":
        return lambda: ""
    return request.getfixturevalue("postgres").create_database


def _fill_pen(root: Path, port: int, database_url: str = "") -> None:
    init_pen(root, footer=FOOTER, port=port, database_url=database_url)
    for name, disclaimer in DISCLAIMERS.items():
        set_package(root, name, disclaimer)
    for email, name, role, package in USERS.values():
        add_user(root, email, name, PASSWORD, role=role, package=package)


_TEMPLATE: dict[str, tuple[Path, int, str]] = {}


def _pg_admin(url: str):
    """A connection to the maintenance database of the cluster that `url` is on."""
    import psycopg
    from sqlalchemy.engine import make_url

    u = make_url(url)
    return psycopg.connect(host=u.host, port=u.port, user=u.username, dbname="postgres", autocommit=True)


def _copy_of_template(root: Path, port: int, database_url: str = "") -> None:
    """A PEN as _fill_pen makes it, copied from one made once per test process and database
    kind (init, migrations and four password hashes cost seconds on a loaded machine; a copy
    of the folder, and on PostgreSQL CREATE DATABASE ... TEMPLATE, a fraction of one). The
    copy gets a secret of its own, its port in the base URL and its own database, like a PEN
    made anew; `database_url` names an empty PostgreSQL database, which is made again from
    the template."""
    import atexit
    import secrets
    import shutil
    import sqlite3
    import tempfile

    from psycopg import sql
    from sqlalchemy.engine import make_url

    kind = "postgresql" if database_url else "sqlite"
    if kind not in _TEMPLATE:
        folder = Path(tempfile.mkdtemp(prefix="pen-template-")) / "pen"
        atexit.register(shutil.rmtree, folder.parent, ignore_errors=True)
        template_port = free_port()
        if database_url:
            template_url = database_url.rsplit("/", 1)[0] + f"/pen_template_{secrets.token_hex(4)}"
            with _pg_admin(database_url) as conn:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(make_url(template_url).database)))
        else:
            template_url = ""
        _fill_pen(folder, template_port, template_url)
        if not database_url:
            with contextlib.closing(sqlite3.connect(folder / "pen.db")) as db:
                db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # every row in pen.db itself
        _TEMPLATE[kind] = (folder, template_port, template_url)
    folder, template_port, template_url = _TEMPLATE[kind]
    shutil.copytree(folder, root, dirs_exist_ok=True)
    config = root / "pen-server.toml"
    text = config.read_text().replace(f"https://localhost:{template_port}", f"https://localhost:{port}")
    if database_url:
        text = text.replace(template_url, database_url)
        target, template = make_url(database_url).database, make_url(template_url).database
        with _pg_admin(database_url) as conn:
            # A template takes no other connections while it is copied (the CLI's pools may
            # still hold one).
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (template,))
            conn.execute(sql.SQL("DROP DATABASE {}").format(sql.Identifier(target)))
            conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(target),
                                                                          sql.Identifier(template)))
    config.write_text(text)
    (root / "secret.key").write_text(secrets.token_hex(32) + "\n")


def make_pen(root: Path, smtp: SmtpSink, env: dict | None = None, database_url: str = "") -> PenProcess:
    """A PEN of a test's own (not yet started); `database_url` from the `database` fixture
    puts it on PostgreSQL. It is a copy of one made once (_copy_of_template)."""
    port = free_port()
    _copy_of_template(root, port, database_url)
    # Sending limits far above what any test sends; tests of the limits set their own.
    base_env = {"PEN_STRICT_ERRORS": "1", "PEN_RETRY_BASE_SECONDS": "0.2", "PEN_MAX_RECIPIENTS": "5000",
                "PEN_SEND_MESSAGES_PER_HOUR": "1000000", "PEN_SEND_RECIPIENTS_PER_HOUR": "1000000"}
    return PenProcess(root, port, smtp_port=smtp.port, env={**base_env, **(env or {})})


@dataclass
class InProcessPen(Pen):
    """A PEN in this test process: the same data folder and database as make_pen's (SQLite
    file or PostgreSQL), the real FastAPI app with its lifespan (delivery worker, event hub,
    clean-ups) running on a thread of its own through Starlette's TestClient, and no TLS, no
    port, no `pen-server run` process. Its `client()` is an httpx.Client like Pen's.

    Use it (fixture `in_process_pen`, or `in_process(make_pen(...))` for a PEN with settings of
    its own) for contract tests of the API and pages that need a fresh PEN: it starts in a
    fraction of a second. Stay on a real process (make_pen(...).start()) for what only a
    process shows: TLS, sockets and connection limits, signals and restarts, other processes
    on the same data (CLI, worker, --workers), memory of the process, its log file, and event
    streams (the test transport hands a response over only once it is complete)."""

    app: Any = None  # the FastAPI app
    portal: Any = None  # the anyio portal of the TestClient that runs its lifespan

    @property
    def url(self) -> str:
        return "https://127.0.0.1"

    @property
    def api(self) -> str:
        return self.url + "/api/v1"

    def client(self, token: str | None = None, timeout: float | httpx.Timeout = 30, base_url: str | None = None,
               **kw) -> httpx.Client:
        from starlette.testclient import TestClient

        class Client(TestClient):
            # With: only closes, as httpx.Client does (the app's lifespan is the fixture's).
            def __enter__(self):
                return self

            def __exit__(self, *exc):
                self.close()

        headers = {"Authorization": f"Bearer {token}"} if token else {}
        c = Client(self.app, base_url=base_url or self.api, headers={**headers, **kw.pop("headers", {})},
                   raise_server_exceptions=False, follow_redirects=kw.pop("follow_redirects", False),
                   client=("127.0.0.1", 50000), **kw)
        c.portal = self.portal  # requests run on the loop of the app's lifespan
        return c


@contextlib.contextmanager
def in_process(process: PenProcess, smtp: SmtpSink):
    """The PEN that make_pen prepared (not started), run in this process: yields an
    InProcessPen; the app's lifespan ends when the block does."""
    from starlette.testclient import TestClient

    from pen_server import security
    from pen_server.app import create_app
    from pen_server.settings import load_settings, password_cost_from_environment

    env = {**os.environ, **process.env}
    if process.smtp_port:
        env.update(PEN_SMTP_HOST="127.0.0.1", PEN_SMTP_PORT=str(process.smtp_port), PEN_SMTP_SECURITY="none")
    security.use_cost(password_cost_from_environment(env))  # as `pen-server run` does at start
    app = create_app(load_settings(process.data, env=env))
    app.state.strict_errors = env.get("PEN_STRICT_ERRORS") == "1"
    with TestClient(app) as lifespan:
        yield InProcessPen(process, smtp, app=app, portal=lifespan.portal)


def stop_at_the_end(process: PenProcess) -> None:
    """Stop a PEN of the whole run. Clients that tests dropped without closing are
    collected first: their sockets close, and the PEN's stop waits for none of them (an
    idle TLS connection holds it up to the 5 s of its TLS shutdown, and then it is killed)."""
    import gc

    gc.collect()
    process.stop(TEARDOWN_STOP_SECONDS)


@pytest.fixture(scope="session")
def pen(tmp_path_factory, smtp):
    process = make_pen(tmp_path_factory.mktemp("pen"), smtp).start()
    yield Pen(process, smtp)
    stop_at_the_end(process)


@pytest.fixture
def send(pen):
    """Send a message as a user; returns the sender's copy."""
    import uuid

    def _send(who: str, to: list, subject: str = "Lab results", body: str = "Your results are ready.",
              cc: Sequence = (), bcc: Sequence = (), **extra) -> dict:
        def addrs(items):
            return [a if isinstance(a, dict) else {"email": USERS[a][0] if a in USERS else a} for a in items]

        payload = {"to": addrs(to), "cc": addrs(cc), "bcc": addrs(bcc), "subject": subject, "body_text": body, **extra}
        with pen.as_user(who) as c:
            r = c.post("/messages", json=payload, headers={"Idempotency-Key": uuid.uuid4().hex})
        assert r.status_code == 201, r.text
        return r.json()

    return _send


@pytest.fixture
def utc():
    """The local time zone is UTC for this test (snapshots show dates in local time)."""
    import time

    before = os.environ.get("TZ")
    os.environ["TZ"] = "UTC"
    time.tzset()
    yield
    if before is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = before
    time.tzset()


@pytest.fixture(scope="session")
def _snapshot_pen(tmp_path_factory):
    """The snapshots' PEN, started once: a small clinic mailbox with fixed times (15 Jan
    2020, 09:30 UTC)."""
    import uuid

    root = tmp_path_factory.mktemp("snap-pen")
    sink = SmtpSink().start()
    port = free_port()
    init_pen(root, footer="Sent by Riverside Clinic", port=port)
    set_package(root, "staff", "Confidential.")
    people = [("dana@riverside.example", "Dana Whitfield"), ("rosa@riverside.example", "Dr. Rosa Ruiz"),
              ("omar@riverside.example", "Omar Haddad")]
    for email, name in people:
        add_user(root, email, name, PASSWORD, package="staff")
    process = PenProcess(root, port, smtp_port=sink.port, env=SNAPSHOT_CLOCK).start()
    with httpx.Client(base_url=process.api, verify=str(process.ca_file), timeout=30) as c:
        def as_(email):
            tok = c.post("/auth/login", json={"email": email, "password": PASSWORD}).json()["access_token"]
            return {"Authorization": f"Bearer {tok}"}

        rosa, omar = as_("rosa@riverside.example"), as_("omar@riverside.example")
        lab = c.post("/uploads?filename=lab-results.csv", headers={**rosa, "Content-Type": "text/csv"},
                     content=b"test,value,unit\nHbA1c,5.4,%\n" * 40).json()
        scan = c.post("/uploads?filename=knee%20MRI.dcm", headers={**rosa, "Content-Type": "application/dicom"},
                      content=bytes(range(256)) * 120).json()
        msgs = [
            (omar, "Rota for February", "Here is the draft rota for February. Shout if a day does not work.", None, []),
            (rosa, "Referral: Mr. Patel", "Please see the referral letter for Mr. Patel; his GP asked for a "
                                          "follow-up within two weeks.", None, []),
            (omar, "Clinic closed on Friday", "The clinic is closed this Friday for the fire drill.", None, []),
            (rosa, "Lab results for J. Alvarez",
             "HbA1c is back within range. The MRI of the left knee shows no tear.",
             "<p>HbA1c is back <b>within range</b>.</p><ul><li>MRI: no tear</li><li>Next visit: March</li></ul>"
             "<p>Guidelines: <a href='https://www.example.org/guidelines'>clinic guidelines</a></p>",
             [lab["id"], scan["id"]]),
        ]
        for headers, subject, body, html, atts in msgs:
            payload = {"to": [{"email": "dana@riverside.example", "name": "Dana Whitfield"}],
                       "cc": [{"email": "omar@riverside.example", "name": "Omar Haddad"}] if headers is rosa else [],
                       "subject": subject, "body_text": body, "attachments": atts}
            if html:
                payload["body_html"] = html
            r = c.post("/messages", json=payload, headers={**headers, "Idempotency-Key": uuid.uuid4().hex})
            assert r.status_code == 201, r.text
        # A thread of Omar's and Rosa's (the thread view's snapshots; Dana is not on it): Omar
        # answers the referral he was copied on, Rosa answers twice, and writes once more.
        parent = next(m["id"] for m in c.get("/messages", headers=omar).json()["items"]
                      if m["subject"] == "Referral: Mr. Patel")
        for headers, subject, body in [
                (omar, "Re: Referral: Mr. Patel", "I can see him on Tuesday."),
                (rosa, "Re: Referral: Mr. Patel", "Tuesday is fine; I told his GP."),
                (rosa, "Handover notes for the weekend: the on-call list, the pharmacy order and the rota",
                 "All in the shared folder."),
                (rosa, "Re: Referral: Mr. Patel", "His notes are attached to the first message.")]:
            to = "rosa@riverside.example" if headers is omar else "omar@riverside.example"
            payload = {"to": [{"email": to}], "subject": subject, "body_text": body}
            if subject.startswith("Re:"):
                payload["in_reply_to"] = parent
            r = c.post("/messages", json=payload, headers={**headers, "Idempotency-Key": uuid.uuid4().hex})
            assert r.status_code == 201, r.text
            if subject.startswith("Re:"):
                parent = r.json()["id"]
    yield process
    stop_at_the_end(process)
    sink.stop()


@pytest.fixture
def snap_pen(_snapshot_pen):
    """The snapshots' PEN with every message in Dana's inbox unread, as it was seeded (a
    snapshot that opens one marks it read on the server)."""
    process = _snapshot_pen
    with httpx.Client(base_url=process.api, verify=str(process.ca_file), timeout=30) as c:
        login = c.post("/auth/login", json={"email": "dana@riverside.example", "password": PASSWORD})
        c.headers["Authorization"] = f"Bearer {login.json()['access_token']}"
        for m in c.get("/messages", params={"folder": "inbox"}).json()["items"]:
            if not m["unread"]:
                assert c.patch(f"/messages/{m['id']}", json={"unread": True}).status_code == 200
    return process
