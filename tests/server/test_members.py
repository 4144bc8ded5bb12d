"""Members' lifecycle against the real server over TLS, on both databases: a misspelt package
is refused with the sentence that lists the packages (exit 2, 422); disabling an account ends
its open event stream, its refresh token, its access token and its web session at once
(within a second through the API, within 5 s from `pen-server user disable`, another
process), its sign-in then fails as a wrong password does, and the messages it sent stay
readable; removing an account that holds messages needs --messages keep or delete."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import uuid

import httpx
import pytest

from pen_devstack import add_user, cli_in_process, run_cli
from tests.conftest import PASSWORD, TEARDOWN_STOP_SECONDS, USERS, Pen, make_pen
from tests.web.conftest import Web

TYPO = "pen-server: There is no package 'employes' (did you mean 'employees'?); the packages are 'employees' and " \
       "'partners'."


@pytest.fixture(scope="module")
def mpen(tmp_path_factory, db_smtp, database):
    process = make_pen(tmp_path_factory.mktemp("members-pen"), db_smtp, database_url=database()).start()
    yield Pen(process, db_smtp)
    process.stop(TEARDOWN_STOP_SECONDS)


def cli(pen: Pen, *args: str, stdin: str = "", process: bool = False) -> subprocess.CompletedProcess:
    """`pen-server` as an administrator runs it, its exit code and words: in this process
    (cli_in_process, the same main() without a second of imports), or with `process` in one
    of its own, where another process is the point (or the exit code of a real one)."""
    argv = [*args[:2], "--data", str(pen.data), *args[2:]]
    if not process:
        return cli_in_process(*argv, stdin=stdin)
    return subprocess.run([sys.executable, "-m", "pen_server", *argv], input=stdin, capture_output=True, text=True,
                          timeout=60)


def ok(pen: Pen, *args: str) -> str:
    """A command that succeeds, run in this process (quick); its standard output."""
    return run_cli(*args[:2], "--data", str(pen.data), *args[2:])


def member(pen: Pen, package: str | None = "employees") -> str:
    email = f"dan-{uuid.uuid4().hex[:8]}@abc.example"
    add_user(pen.data, email, "Dan Leaver", PASSWORD, package=package)
    return email


def send(pen: Pen, who: str, to: str, subject: str) -> dict:
    with pen.as_user(who) as c:
        r = c.post("/messages", json={"to": [{"email": to}], "subject": subject, "body_text": "hello"},
                   headers={"Idempotency-Key": uuid.uuid4().hex})
    assert r.status_code == 201, r.text
    return r.json()


def account(pen: Pen, email: str) -> dict:
    with pen.as_user("admin") as c:
        [found] = [u for u in c.get("/admin/users", params={"q": email}).json()["items"] if u["email"] == email]
    return found


def patch(pen: Pen, email: str, **fields) -> httpx.Response:
    with pen.as_user("admin") as c:
        return c.patch(f"/admin/users/{account(pen, email)['id']}", json=fields)


class Stream:
    """An account's event stream, read in a thread; `ended_at` is when the server ended it."""

    def __init__(self, pen: Pen, token: str):
        self.open, self.ended = threading.Event(), threading.Event()
        self.ended_at: float | None = None
        self.thread = threading.Thread(target=self._read, args=(pen, token), daemon=True)
        self.thread.start()
        assert self.open.wait(30), "the event stream did not open"

    def _read(self, pen: Pen, token: str) -> None:
        try:
            with pen.client(token, timeout=httpx.Timeout(30, read=60)) as c, c.stream("GET", "/events") as r:
                assert r.status_code == 200
                for _line in r.iter_lines():
                    self.open.set()
        except httpx.HTTPError:
            pass
        finally:
            self.ended_at = time.monotonic()
            self.ended.set()

    def ends_within(self, since: float, seconds: float) -> float:
        assert self.ended.wait(seconds + 30), "the event stream was not ended"
        took = self.ended_at - since
        assert took <= seconds, f"the event stream ended {took:.2f} s after, not within {seconds} s"
        return took


def signed_in_everywhere(pen: Pen, email: str) -> tuple[dict, Stream, Web]:
    tokens = pen.login(email)
    stream = Stream(pen, tokens["access_token"])
    web = Web(pen)
    web.login(email, PASSWORD)
    assert web.get("/").status_code == 200
    return tokens, stream, web


def assert_signed_out_everywhere(pen: Pen, email: str, tokens: dict, web: Web) -> None:
    with pen.client() as c:
        refreshed = c.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
        assert refreshed.status_code == 401, refreshed.text
        wrong = c.post("/auth/login", json={"email": email, "password": "not the password"})
        right = c.post("/auth/login", json={"email": email, "password": PASSWORD})
    assert right.status_code == wrong.status_code == 401
    assert right.json() == wrong.json() == {"error": {"code": "invalid_credentials",
                                                      "message": "The e-mail address or the password is wrong."}}
    with pen.client(tokens["access_token"]) as c:
        assert c.get("/me").status_code == 401
    page = web.get("/")
    assert page.status_code == 303 and page.headers["location"] == "/login"
    web.close()


def test_a_misspelt_package_is_refused_with_the_packages(mpen):
    email = f"bob-{uuid.uuid4().hex[:8]}@abc.example"
    done = cli(mpen, "user", "add", "--email", email, "--name", "Bob", "--package", "employes", stdin=PASSWORD + "\n",
               process=True)
    assert (done.returncode, done.stderr.strip(), done.stdout) == (2, TYPO, "")
    assert email not in ok(mpen, "user", "list")  # nothing was made

    dan = member(mpen)
    done = cli(mpen, "user", "set-package", dan, "employes")
    assert (done.returncode, done.stderr.strip()) == (2, TYPO)
    r = patch(mpen, dan, package="employes")
    assert r.status_code == 422
    assert r.json()["error"] == {"code": "validation_failed", "message": TYPO.removeprefix("pen-server: "),
                                 "fields": {"package": TYPO.removeprefix("pen-server: ")}}
    assert account(mpen, dan)["package"] == "employees"  # unchanged
    r = patch(mpen, dan, package="partners")
    assert r.status_code == 200 and r.json()["package"] == "partners"
    assert patch(mpen, dan, package=None).json()["package"] is None
    assert ok(mpen, "user", "set-package", dan, "employees") == f"{dan} now has the package 'employees'.\n"

    listed = ok(mpen, "package", "list").splitlines()
    assert [line.split("\t")[0] for line in listed] == ["employees", "partners"]
    assert listed[0].split("\t")[3] == "CONFIDENTIAL: this notice is for the named recipient of ABC Medical only."
    ok(mpen, "package", "set", "temps", "--disclaimer", "Temporary staff.")
    ok(mpen, "user", "set-package", dan, "temps")
    done = cli(mpen, "package", "remove", "temps")
    assert (done.returncode, done.stderr.strip()) == (
        1, "pen-server: 1 account has the package 'temps'; give it another package (or none) first.")
    ok(mpen, "user", "set-package", dan, "--none")
    ok(mpen, "package", "remove", "temps")
    assert "temps" not in ok(mpen, "package", "list")


def test_disabling_through_the_api_ends_every_sign_in_within_a_second(mpen):
    dan = member(mpen)
    sent = send(mpen, dan, USERS["ann"][0], "Handover before I leave")
    tokens, stream, web = signed_in_everywhere(mpen, dan)

    r = patch(mpen, dan, disabled=True)
    done = time.monotonic()
    assert r.status_code == 200, r.text
    assert r.json()["disabled"] is True and r.json()["disabled_at"].endswith("Z")
    with mpen.client() as c:
        assert c.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]}).status_code == 401
    assert time.monotonic() - done < 1.0
    took = stream.ends_within(done, 1.0)
    print(f"stream ended {took:.3f} s after PATCH /admin/users/{{id}} answered")
    assert_signed_out_everywhere(mpen, dan, tokens, web)
    with mpen.as_user("ann") as c:  # what it sent stays with its recipients
        assert c.get(f"/messages/{sent['id']}").json()["from"]["email"] == dan
    with mpen.as_user("cat") as c:  # no longer offered as a member (ann still finds it on her message)
        assert dan not in [a["email"] for a in c.get("/addresses", params={"prefix": dan}).json()["items"]]

    assert patch(mpen, dan, disabled=False).json()["disabled"] is False
    assert mpen.login(dan)["user"]["email"] == dan  # the password works again


def test_disabling_from_the_command_line_ends_the_stream_within_5_seconds(mpen):
    dan = member(mpen)
    tokens, stream, web = signed_in_everywhere(mpen, dan)
    done = cli(mpen, "user", "disable", dan, process=True)
    finished = time.monotonic()
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"Disabled {dan}: its sign-ins were ended")
    took = stream.ends_within(finished, 5.0)
    print(f"stream ended {took:.2f} s after `pen-server user disable` exited")
    assert_signed_out_everywhere(mpen, dan, tokens, web)
    assert f"{dan}\tmember\temployees\tDan Leaver (disabled)" in ok(mpen, "user", "list")
    assert ok(mpen, "user", "disable", dan) == f"{dan} was disabled already.\n"
    ok(mpen, "user", "enable", dan)
    assert mpen.login(dan)["user"]["email"] == dan


def test_the_last_administrator_stays(mpen):
    admin = USERS["admin"][0]
    with mpen.as_user("admin") as c:
        me = c.get("/me").json()["id"]
        r = c.patch(f"/admin/users/{me}", json={"disabled": True})
        assert r.status_code == 409 and "your own account" in r.json()["error"]["message"]
    for args in (("user", "disable", admin), ("user", "set-role", admin, "member"),
                 ("user", "remove", admin, "--messages", "keep")):
        done = cli(mpen, *args)
        assert done.returncode == 1 and "is the only administrator of this PEN that can sign in" in done.stderr, args
    dan = member(mpen)
    assert ok(mpen, "user", "set-role", dan, "admin") == f"{dan} is now an administrator.\n"
    ok(mpen, "user", "disable", admin)  # another administrator can sign in now
    ok(mpen, "user", "enable", admin)
    assert patch(mpen, dan, role="member").json()["role"] == "member"
    with mpen.as_user("ann") as c:
        assert c.patch(f"/admin/users/{me}", json={"disabled": True}).status_code == 403
    with mpen.as_user("admin") as c:
        assert c.patch("/admin/users/no-such-account", json={"disabled": True}).status_code == 404


def test_removing_an_account_that_holds_messages_needs_a_choice(mpen):
    ann = USERS["ann"][0]
    keeper, deleter = member(mpen), member(mpen)
    kept = send(mpen, keeper, ann, "Kept after I leave")
    gone = send(mpen, deleter, ann, "Gone with me")
    with mpen.as_user("ann") as c:
        inbox_before = {f["name"]: f["total"] for f in c.get("/folders").json()["items"]}["inbox"]

    done = cli(mpen, "user", "remove", keeper)
    assert done.returncode == 2
    assert done.stderr.strip() == (
        f"pen-server: {keeper} has sent 1 message and holds 1 copy of messages; say what becomes of them: "
        "--messages keep (the messages it sent stay readable by their recipients, under a disabled tombstone of "
        "the account) or --messages delete (they are deleted for their recipients too); to keep its mailbox as it "
        "is, disable the account instead.")

    assert ok(mpen, "user", "remove", keeper, "--messages", "keep") == (
        f"Removed {keeper}; the message it sent stays readable by their recipients under a disabled tombstone of "
        "the account, and its address is free for a new account.\n")
    with mpen.as_user("ann") as c:
        read = c.get(f"/messages/{kept['id']}")
        assert read.status_code == 200 and read.json()["from"]["email"] == keeper
    with mpen.as_user("admin") as c:
        assert c.get("/admin/users", params={"q": keeper}).json()["items"] == []
    assert keeper not in ok(mpen, "user", "list")
    add_user(mpen.data, keeper, "Dan Returns", PASSWORD)  # the address is free: a new account, empty
    with mpen.as_user(keeper) as c:
        assert c.get("/messages", params={"folder": "sent"}).json()["items"] == []
        assert c.get(f"/messages/{kept['id']}/notifications").status_code == 404

    assert ok(mpen, "user", "remove", deleter, "--messages", "delete") == (
        f"Removed {deleter} and the 1 message it sent, for their recipients too.\n")
    with mpen.as_user("ann") as c:
        assert c.get(f"/messages/{gone['id']}").status_code == 404
        inbox = {f["name"]: f["total"] for f in c.get("/folders").json()["items"]}["inbox"]
    assert inbox == inbox_before - 1
    assert ok(mpen, "user", "remove", member(mpen)).startswith("Removed dan-")  # no messages: no choice


def _index_words(pen: Pen, prefix: str) -> tuple[set[str], set[str]]:
    """The words beginning `prefix` in the search word list, and in the full-text index itself
    (SQLite: the terms FTS5 holds; PostgreSQL: the lexemes of the tsvectors)."""
    from sqlalchemy import text

    from pen_server.db import Database

    db = Database(pen.process.database_url)
    try:
        with db.session() as s:
            listed = set(s.scalars(text("SELECT word FROM search_words WHERE word LIKE :p"), {"p": prefix + "%"}))
            if s.connection().dialect.name == "postgresql":
                held = set(s.scalars(text(
                    "SELECT word FROM ts_stat('SELECT doc FROM message_search') WHERE word LIKE :p "
                    "UNION SELECT word FROM ts_stat('SELECT addr FROM message_search') WHERE word LIKE :p"),
                    {"p": prefix + "%"}))
            else:
                s.execute(text("CREATE VIRTUAL TABLE temp.v USING fts5vocab(main, message_search, row)"))
                held = set(s.scalars(text("SELECT term FROM temp.v WHERE term >= :p AND term < :e"),
                                     {"p": prefix, "e": prefix + "\uffff"}))
                # The index is whole after its deletions (FTS5 checks its own structure).
                s.execute(text("INSERT INTO message_search (message_search, rank) VALUES ('integrity-check', 0)"))
    finally:
        db.engine.dispose()
    return listed, held


def test_removing_with_its_messages_takes_their_words_out_of_the_index(mpen):
    """--messages delete deletes the messages' words too: the full-text index and the word
    list of prefix searches keep none that no other message has, and what is sent afterwards
    with the same words is found, prefixes included."""
    ann, tag = USERS["ann"][0], "zq" + uuid.uuid4().hex[:8]
    leaver, stayer = member(mpen), member(mpen)
    with mpen.as_user(leaver) as c:
        r = c.post("/messages", json={"to": [{"email": ann}], "subject": f"{tag}subject {tag}shared",
                                      "body_text": f"The {tag}body words go with me."},
                   headers={"Idempotency-Key": uuid.uuid4().hex})
        assert r.status_code == 201, r.text
        # A body past what is indexed (256 KiB): its words up to there are indexed, and must go.
        r = c.post("/messages", json={"to": [{"email": ann}], "subject": "long",
                                      "body_text": f"{tag}long " + "ünïcode words " * 20_000 + f"{tag}beyond"},
                   headers={"Idempotency-Key": uuid.uuid4().hex})
        assert r.status_code == 201, r.text
    kept = send(mpen, stayer, ann, f"{tag}shared stays")
    with mpen.as_user("ann") as c:
        assert {m["subject"] for m in c.get("/messages", params={"q": tag}).json()["items"]} == {
            f"{tag}subject {tag}shared", f"{tag}shared stays", "long"}
    assert _index_words(mpen, tag) == ({f"{tag}subject", f"{tag}shared", f"{tag}body", f"{tag}long"},) * 2

    ok(mpen, "user", "remove", leaver, "--messages", "delete")
    assert _index_words(mpen, tag) == ({f"{tag}shared"},) * 2
    with mpen.as_user("ann") as c:
        assert [m["id"] for m in c.get("/messages", params={"q": tag}).json()["items"]] == [kept["id"]]
        assert c.get("/messages", params={"q": f"{tag}bo"}).json()["items"] == []

    again = send(mpen, stayer, ann, f"{tag}subject again")
    with mpen.as_user("ann") as c:
        assert [m["id"] for m in c.get("/messages", params={"q": f"{tag}sub"}).json()["items"]] == [again["id"]]
    assert _index_words(mpen, tag) == ({f"{tag}shared", f"{tag}subject"},) * 2
    ok(mpen, "user", "remove", stayer, "--messages", "delete")
    assert _index_words(mpen, tag) == (set(), set())


def test_the_accounts_list_pages_and_searches(mpen):
    dan = member(mpen, package=None)
    ok(mpen, "user", "disable", dan)
    with mpen.as_user("admin") as c:
        seen, cursor = [], None
        while True:
            page = c.get("/admin/users", params={"limit": 2, **({"cursor": cursor} if cursor else {})}).json()
            assert len(page["items"]) <= 2
            seen += page["items"]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        emails = [u["email"] for u in seen]
        assert emails == sorted(emails) and len(emails) == len(set(emails))
        assert {e for e, *_ in USERS.values()} | {dan} <= set(emails)
        [found] = c.get("/admin/users", params={"q": dan.split("@")[0].upper()}).json()["items"]
        assert {k: found[k] for k in ("email", "display_name", "role", "package", "registered", "disabled")} == {
            "email": dan, "display_name": "Dan Leaver", "role": "member", "package": None, "registered": True,
            "disabled": True}
        assert [u["email"] for u in c.get("/admin/users", params={"q": "Ada Adm"}).json()["items"]] == [
            USERS["admin"][0]]
        bad = c.get("/admin/users", params={"cursor": "bm90LW91cnM"})
        assert bad.status_code == 422 and bad.json()["error"]["fields"] == {
            "cursor": "not a cursor from this server for this list"}
    with mpen.as_user("ann") as c:
        assert c.get("/admin/users").status_code == 403
