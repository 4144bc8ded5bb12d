"""`pen-server migrate-to URL`: a SQLite PEN with messages, an attachment, a registered guest,
sent notifications and some still waiting in the outbox moves to an empty PostgreSQL
database; started there, it gives the same API answers, the same downloads, the same
sign-ins (and tokens), delivers what was waiting once, and goes on numbering its rows."""

from __future__ import annotations

import os
import time
import uuid

import pytest
from sqlalchemy import create_engine, inspect, select

from pen_devstack import SmtpSink, run_cli
from tests.conftest import PASSWORD, USERS, Pen, make_pen

GUEST = "guest@outside.example"


def _send(pen: Pen, who: str, to: list[str], subject: str, **extra) -> dict:
    with pen.as_user(who) as c:
        r = c.post("/messages", headers={"Idempotency-Key": uuid.uuid4().hex},
                   json={"to": [{"email": USERS[t][0] if t in USERS else t} for t in to], "subject": subject,
                         "body_text": f"The body of {subject}.", **extra})
    assert r.status_code == 201, r.text
    return r.json()


def _answers(pen: Pen, tokens: dict[str, str], downloads: list[str]) -> dict:
    """What each account sees through the API: folders, every page of every folder, every
    message, and the attachments' bytes."""
    seen: dict = {}
    for who, token in tokens.items():
        with pen.client(token) as c:
            seen[who, "folders"] = c.get("/folders").json()
            seen[who, "me"] = c.get("/me").json()
            for folder in ("inbox", "sent", "archive", "trash"):
                page = c.get("/messages", params={"folder": folder, "limit": 2}).json()
                items = list(page["items"])
                while page["next_cursor"]:
                    page = c.get("/messages", params={"folder": folder, "limit": 2,
                                                      "cursor": page["next_cursor"]}).json()
                    items += page["items"]
                seen[who, folder] = items
                for m in items:
                    seen[who, m["id"]] = c.get(f"/messages/{m['id']}").json()
            for url in downloads:
                r = c.get(url)
                seen[who, url] = (r.status_code, r.content if r.status_code == 200 else None)
    return seen


def _rows(url: str) -> dict[str, list]:
    """Every row of every table, read through the models' types (JSON, times)."""
    from pen_server import search_index
    from pen_server.models import Base

    engine = create_engine(url)
    try:
        with engine.connect() as db:
            names = set(inspect(db).get_table_names()) - set(search_index.tables(db.dialect.name))
            assert names == {*Base.metadata.tables, "alembic_version"}
            return {n: sorted(map(tuple, db.execute(select(Base.metadata.tables[n])).all()), key=repr)
                    for n in Base.metadata.tables}
    finally:
        engine.dispose()


def _until(what, check, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while not (found := check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)
    return found


def test_a_sqlite_pen_moves_to_postgresql_losing_nothing(tmp_path, postgres):
    sink = SmtpSink().start()
    process = make_pen(tmp_path / "pen", sink).start()
    pen = Pen(process, sink)
    try:
        data = os.urandom(200_000)
        with pen.as_user("ann") as c:
            att = c.post("/uploads?filename=scan.pdf", content=data, headers={"Content-Type": "application/pdf"})
            assert att.status_code == 201, att.text
        first = _send(pen, "ann", ["bob", GUEST], "Scan results", attachments=[att.json()["id"]])
        _send(pen, "bob", ["ann", "cat"], "Rota")
        mail = _until("the guest's notification", lambda: pen.mails_to(GUEST, "Scan results", timeout=0))
        _, invitation = Pen.link_token(mail[0])
        with pen.client() as c:
            r = c.post(f"/invitations/{invitation}/register", json={"display_name": "Gus", "password": PASSWORD})
            assert r.status_code == 201, r.text
        _send(pen, GUEST, ["ann"], "Re: Scan results", in_reply_to=first["id"])
        with pen.as_user("cat") as c:
            rota = c.get("/messages", params={"folder": "inbox"}).json()["items"][0]
            assert c.patch(f"/messages/{rota['id']}", json={"folder": "archive", "unread": False}).status_code == 200
        # Everything sent so far delivered (the answers compared below hold its status), then the
        # relay refuses from here on: these notifications wait in the outbox.
        for rcpt, subject in (("bob", "Scan results"), ("ann", "Rota"), ("cat", "Rota"), ("ann", "Re: Scan results")):
            assert pen.mails_to(USERS[rcpt][0], subject), f"no notification of {subject!r} to {rcpt}"
        sink.handler.reply = "451 try again later"
        waiting = _send(pen, "ann", ["bob", "cat", "someone@else.example"], "Waiting")
        with pen.as_user("ann") as c:
            _until("a refused delivery attempt", lambda: all(
                n["attempts"] >= 1 for n in c.get(f"/messages/{waiting['id']}/notifications").json()["items"]))
        tokens = {who: pen.login(who)["access_token"] for who in ("ann", "bob", "cat")}
        tokens["guest"] = pen.login(GUEST)["access_token"]
        downloads = [f"/messages/{first['id']}/attachments/{att.json()['id']}"]
        _answers(pen, tokens, downloads)  # opening a message reads it: from now on the answers stay
        before = _answers(pen, tokens, downloads)
        assert before["bob", downloads[0]] == (200, data)
        assert process.stop() == 0

        url = postgres.create_database()
        sqlite_url = process.database_url
        out = run_cli("migrate-to", "--data", str(process.data), url)
        assert out.startswith("Copied ") and "start the PEN again" in out, out
        assert _rows(url) == _rows(sqlite_url)  # every row of every table, as it was
        with pytest.raises(RuntimeError) as refused:  # a second time: the target is not empty
            run_cli("migrate-to", "--data", str(process.data), url)
        assert str(refused.value).startswith("pen-server: The target database already holds ")
        assert str(refused.value).count(".") == 1

        process.env["PEN_DATABASE_URL"] = url
        sink.handler.reply = None
        process.start()
        assert pen.on_postgres
        now = _answers(pen, tokens, downloads)  # with the old tokens
        # The same answers, but for the waiting notifications' delivery, which goes on.
        assert [k for k in now if now[k] != before[k]] in ([], [("ann", waiting["id"])])
        for answers in (now, before):
            for n in answers["ann", waiting["id"]]["notifications"]:
                del n["status"], n["attempts"], n["last_error"], n["updated_at"]
        assert now == before
        pen.login("bob")
        pen.login(GUEST)  # the same passwords
        with pen.as_user("ann") as c:  # the search index was built on the way
            assert [m["subject"] for m in c.get("/messages", params={"q": "rota"}).json()["items"]] == ["Rota"]
        # What waited in the outbox goes out, once each.
        for rcpt in ("bob@abc.example", "cat@abc.example", "someone@else.example"):
            assert len(_until(f"the notification to {rcpt}", lambda r=rcpt: pen.mails_to(r, "Waiting", timeout=0))) == 1
        # New rows go on from the copied ones (PostgreSQL's sequences were set past them).
        after = _send(pen, "cat", ["ann", "bob"], "After the move")
        with pen.as_user("bob") as c:
            assert c.get("/messages", params={"folder": "inbox"}).json()["items"][0]["id"] == after["id"]
        assert len(pen.mails_to("someone@else.example", "Waiting", timeout=0)) == 1
    finally:
        process.stop(5)
        sink.stop()


def test_migrate_to_refuses_a_bad_url_or_the_database_in_use(tmp_path, smtp):
    process = make_pen(tmp_path / "pen", smtp)
    for url, says in (("mysql://root@localhost/pen", "must start with postgresql+psycopg://"),
                      (process.database_url, "already uses that database")):
        with pytest.raises(RuntimeError) as refused:
            run_cli("migrate-to", "--data", str(process.data), url)
        assert says in str(refused.value) and str(refused.value).count("\n") == 0
