"""GET /addresses: completion from the PEN's members and the people on the caller's own
messages, through the real server; the guest rule; the bounds; the index the query reads;
the migration that fills the words of an existing PEN."""

import sqlite3
import uuid

import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.dialects import postgresql

from pen_server import addresses
from pen_server.models import AddressWord
from tests.conftest import USERS
from tests.server.test_sending_rules import guest_beside_a_reply


def complete(c, prefix: str, limit: int | None = None) -> list[tuple[str, str | None]]:
    r = c.get("/addresses", params={"prefix": prefix, **({"limit": limit} if limit else {})})
    assert r.status_code == 200, r.text
    return [(a["email"], a["name"]) for a in r.json()["items"]]


def test_people_of_the_inbox_with_their_stored_names_and_case(pen, send):
    tag = uuid.uuid4().hex[:8]
    omar = f"omar.{tag}@elsewhere.example"
    linda = f"lp-{tag}@elsewhere.example"
    # Ann writes to Cat, copying two people Cat has never written to.
    send("ann", ["cat"], cc=[{"email": omar, "name": f"Omar Haddad{tag}"},
                             {"email": linda, "name": f"Linda Park{tag}"}], subject=f"Plan {tag}")
    with pen.as_user("cat") as c:
        assert (omar, f"Omar Haddad{tag}") in complete(c, "oma", limit=50)
        assert complete(c, f"haddad{tag}") == [(omar, f"Omar Haddad{tag}")]  # any word of the name
        assert complete(c, f"HADDAD{tag.upper()}") == [(omar, f"Omar Haddad{tag}")]  # any case
        assert complete(c, f"omar.{tag}@") == [(omar, f"Omar Haddad{tag}")]  # the address
        assert complete(c, f"linda   park{tag}") == [(linda, f"Linda Park{tag}")]  # the whole name
        assert complete(c, f"park{tag}x") == []
        # Members come with their own names; the caller is not offered to itself.
        assert (USERS["ann"][0], "Ann Lee") in complete(c, "ann", limit=50)
        assert (USERS["bob"][0], "Bob Stone") in complete(c, "sto", limit=50)
        assert all(email != USERS["cat"][0] for email, _ in complete(c, "cat", limit=50))
    with pen.as_user("bob") as c:  # Bob holds no copy of that message
        assert complete(c, f"haddad{tag}") == []


def test_bcc_is_the_senders_alone_and_a_name_is_refreshed(pen, send):
    tag = uuid.uuid4().hex[:8]
    hidden = f"hid-{tag}@elsewhere.example"
    send("ann", ["bob"], bcc=[{"email": hidden, "name": f"Hidden{tag} One"}], subject=f"Bcc {tag}")
    with pen.as_user("bob") as c:
        assert complete(c, f"hidden{tag}") == []
    with pen.as_user("ann") as c:
        assert complete(c, f"hidden{tag}") == [(hidden, f"Hidden{tag} One")]
    send("ann", [{"email": hidden, "name": f"Hidden{tag} Two"}], subject=f"Again {tag}")
    with pen.as_user("ann") as c:
        assert complete(c, f"hidden{tag}") == [(hidden, f"Hidden{tag} Two")]
        assert all(e != hidden for e, _ in complete(c, "one", limit=50))  # the old name's words are gone


def test_a_guest_is_offered_only_whom_it_may_write_to(pen, send):
    token, guest, seen, hidden, _first = guest_beside_a_reply(pen, send)
    with pen.client(token) as g:
        assert complete(g, seen[:12]) == [(seen, None)]
        assert complete(g, hidden[:14]) == []
        assert (USERS["bob"][0], "Bob Stone") in complete(g, "bob", limit=50)  # a member
        for email, _ in complete(g, "s", limit=50) + complete(g, "h", limit=50):
            ok = g.post("/messages", json={"to": [{"email": email}], "subject": "x", "body_text": "x"},
                        headers={"Idempotency-Key": uuid.uuid4().hex})
            assert ok.status_code == 201, (email, ok.text)
    with pen.as_user("ann") as c:
        assert complete(c, seen[:12]) == [(seen, None)]
    with pen.as_user("cat") as c:  # a guest is no member: not offered to everyone
        assert complete(c, guest[:13]) == [] and complete(c, seen[:12]) == []


@pytest.mark.parametrize("params, field", [
    ({"prefix": ""}, "prefix"), ({"prefix": "x" * 101}, "prefix"), ({}, "prefix"),
    ({"prefix": "a", "limit": 51}, "limit"), ({"prefix": "a", "limit": 0}, "limit")])
def test_bounds_are_422_in_the_error_shape(pen, params, field):
    with pen.as_user("cat") as c:
        r = c.get("/addresses", params=params)
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert err["code"] == "validation_failed" and field in err["fields"] and err["message"].endswith(".")


def test_limit_and_order(pen, send):
    tag = uuid.uuid4().hex[:8]
    people = [{"email": f"z{tag}{i}@elsewhere.example", "name": f"Zed{tag} {chr(ord('e') - i)}"} for i in range(5)]
    send("ann", ["cat"], cc=people, subject=f"Many {tag}")
    with pen.as_user("cat") as c:
        assert complete(c, f"zed{tag}", limit=3) == [(p["email"], p["name"]) for p in people[::-1][:3]]
        assert complete(c, "   ") == []


def test_the_query_reads_the_index(tmp_path):
    """A prefix is a range over the primary key's (user_id, word): no scan of the table."""
    from pen_server.db import migrate

    url = f"sqlite:///{tmp_path / 'pen.db'}"
    migrate(url)
    engine = create_engine(url)
    query = select(AddressWord.email).where(AddressWord.user_id == "u", AddressWord.word >= "oma",
                                            AddressWord.word < "oma\U0010ffff")
    sql = str(query.compile(engine, compile_kwargs={"literal_binds": True}))
    with sqlite3.connect(tmp_path / "pen.db") as db:
        plan = " ".join(str(row) for row in db.execute("EXPLAIN QUERY PLAN " + sql))
        assert "SEARCH" in plan and "word>? AND word<?" in plan.replace("=", ""), plan
        plan = " ".join(str(row) for row in db.execute(
            "EXPLAIN QUERY PLAN SELECT user_id FROM member_words WHERE word >= 'a' AND word < 'b'"))
        assert "SEARCH" in plan, plan
    # On PostgreSQL the word is compared byte by byte, so that a range is a prefix there too.
    assert 'COLLATE "C"' in str(AddressWord.__table__.c.word.type.compile(dialect=postgresql.dialect())) or \
        "C" in repr(AddressWord.__table__.c.word.type.dialect_impl(postgresql.dialect()).collation)


def test_words_of_a_person():
    assert addresses.words("Omar@X.example", "Omar  al-Haddad") == {
        "omar@x.example", "omar al-haddad", "omar", "al", "haddad"}
    assert addresses.words("a@x.example", None) == {"a@x.example"}
    assert all(len(w) <= 100 for w in addresses.words("a@x.example", "n" * 300))


def test_the_migration_fills_the_words_of_an_existing_pen(tmp_path):
    """A PEN at 0006 with a message: after the upgrade its members and the people of each
    copy are found, as the running server would have kept them."""
    import json

    from alembic import command
    from alembic.config import Config

    from pen_server.db import MIGRATIONS

    url = f"sqlite:///{tmp_path / 'old.db'}"
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url)
    cfg.attributes["configure_logger"] = False
    command.upgrade(cfg, "0006")
    with sqlite3.connect(tmp_path / "old.db") as db:
        db.executemany("INSERT INTO users (id, email, display_name, role, created_at) "
                       "VALUES (?, ?, ?, ?, '2026-01-01')",
                       [("a", "ann@x.example", "Ann Lee", "member"), ("c", "cat@x.example", "Cat Moss", "member"),
                        ("o", "omar@y.example", "Omar Haddad", "guest")])
        db.execute("INSERT INTO messages (id, thread_id, sender_id, from_email, from_name, to_list, cc_list, "
                   "bcc_list, subject, body_text, snippet, size, sent_at) "
                   "VALUES ('m', 't', 'a', 'ann@x.example', 'Ann Lee', ?, ?, ?, 's', 'b', 'b', 1, '2026-01-01')",
                   (json.dumps([{"email": "cat@x.example", "name": None}]),
                    json.dumps([{"email": "omar@y.example", "name": "Omar Haddad"}]),
                    json.dumps([{"email": "bea@z.example", "name": "Bea Secret"}])))
        db.executemany("INSERT INTO mailbox_entries (user_id, message_id, folder, unread, is_sender, sent_at) "
                       "VALUES (?, 'm', ?, 1, ?, '2026-01-01')", [("a", "sent", 1), ("c", "inbox", 0)])
    command.upgrade(cfg, "head")
    with sqlite3.connect(tmp_path / "old.db") as db:
        people = set(db.execute("SELECT DISTINCT user_id, email, name FROM address_words"))
        members = set(db.execute("SELECT DISTINCT user_id FROM member_words"))
    assert people == {("a", "cat@x.example", None), ("a", "omar@y.example", "Omar Haddad"),
                      ("a", "bea@z.example", "Bea Secret"),  # the sender's own Bcc
                      ("c", "ann@x.example", "Ann Lee"), ("c", "omar@y.example", "Omar Haddad")}
    assert members == {("a",), ("c",)}  # a guest is no member
