"""GET /threads and GET /threads/{id}: a folder as conversations, keyset-paged by each
thread's newest message there, with counts; and one conversation's messages."""

import uuid

from sqlalchemy import create_engine, text


def walk(c, path: str, **params) -> tuple[list, set]:
    """Every item of a paged list, following next_cursor; and the totals seen."""
    items, totals, cursor = [], set(), None
    while True:
        r = c.get(path, params={**params, **({"cursor": cursor} if cursor else {})})
        assert r.status_code == 200, r.text
        body = r.json()
        items += body["items"]
        totals.add(body["total"])
        cursor = body["next_cursor"]
        if not cursor:
            return items, totals


def conversation(send, tag: str) -> list[dict]:
    """ann -> cat, cat replies, ann replies again: one thread of three messages."""
    first = send("ann", ["cat"], subject=f"thread {tag}")
    second = send("cat", ["ann"], subject=f"Re: thread {tag}", in_reply_to=first["id"])
    third = send("ann", ["cat"], subject=f"Re: thread {tag} again", in_reply_to=second["id"])
    return [first, second, third]


def test_a_folder_lists_each_thread_once_under_its_newest_message(pen, send):
    tag = uuid.uuid4().hex[:8]
    first, second, third = conversation(send, tag)
    alone = send("ann", ["cat"], subject=f"alone {tag}")
    with pen.as_user("cat") as c:
        page = c.get("/threads", params={"folder": "inbox", "limit": 2}).json()
        # Newest first by each thread's newest message: the lone message, then the conversation
        # under ann's second message (cat's own reply is in cat's sent folder, not here).
        assert [t["latest"]["id"] for t in page["items"]] == [alone["id"], third["id"]]
        assert [(t["count"], t["unread"]) for t in page["items"]] == [(1, 1), (2, 2)]
        assert page["items"][1]["thread_id"] == first["thread_id"]
        assert page["items"][1]["latest"]["folder"] == "inbox"

        c.patch(f"/messages/{first['id']}", json={"unread": False})
        [_, thread] = c.get("/threads", params={"folder": "inbox", "limit": 2}).json()["items"]
        assert (thread["count"], thread["unread"]) == (2, 1)

        # Every page, both ways: each thread once, as many as `total`, in order of their newest.
        newest, totals = walk(c, "/threads", folder="inbox", limit=3)
        ids = [t["thread_id"] for t in newest]
        assert len(ids) == len(set(ids)) and totals == {len(ids)}
        oldest, _ = walk(c, "/threads", folder="inbox", limit=3, order="oldest")
        assert [t["thread_id"] for t in oldest] == ids[::-1]
        # The folder's own list, newest first: each thread where its newest message is.
        messages, _ = walk(c, "/messages", folder="inbox", limit=200)
        heads = [m for i, m in enumerate(messages) if m["thread_id"] not in {n["thread_id"] for n in messages[:i]}]
        assert [m["id"] for m in heads] == [t["latest"]["id"] for t in newest]

        # The newest moves away: the thread stays in the inbox under the older one.
        c.patch(f"/messages/{third['id']}", json={"folder": "archive"})
        inbox = {t["thread_id"]: t for t in walk(c, "/threads", folder="inbox", limit=200)[0]}
        assert inbox[first["thread_id"]]["latest"]["id"] == first["id"]
        assert (inbox[first["thread_id"]]["count"], inbox[first["thread_id"]]["unread"]) == (1, 0)
        archive = {t["thread_id"]: t for t in walk(c, "/threads", folder="archive", limit=200)[0]}
        assert archive[first["thread_id"]]["latest"]["id"] == third["id"]
    with pen.as_user("ann") as c:
        sent = {t["thread_id"]: t for t in walk(c, "/threads", folder="sent", limit=200)[0]}
        assert (sent[first["thread_id"]]["count"], sent[first["thread_id"]]["latest"]["id"]) == (2, third["id"])


def test_one_thread_is_its_messages_in_every_folder_oldest_first(pen, send):
    tag = uuid.uuid4().hex[:8]
    first, second, third = conversation(send, tag)
    thread = first["thread_id"]
    with pen.as_user("ann") as c:
        body = c.get(f"/threads/{thread}").json()
        assert [(m["id"], m["folder"]) for m in body["items"]] == \
            [(first["id"], "sent"), (second["id"], "inbox"), (third["id"], "sent")]
        assert body["total"] == 3 and body["next_cursor"] is None
        pages, totals = walk(c, f"/threads/{thread}", limit=1, order="newest")
        assert [m["id"] for m in pages] == [third["id"], second["id"], first["id"]] and totals == {3}
        only_sent = c.get(f"/threads/{thread}", params={"folder": "sent"}).json()
        assert [m["id"] for m in only_sent["items"]] == [first["id"], third["id"]] and only_sent["total"] == 2
        # A cursor of the other order, and one this server never gave out: 422 with the field.
        newest_cursor = c.get(f"/threads/{thread}", params={"limit": 1, "order": "newest"}).json()["next_cursor"]
        for cursor in (newest_cursor, "bm90LWEtY3Vyc29y"):
            r = c.get(f"/threads/{thread}", params={"cursor": cursor})
            assert r.status_code == 422 and "cursor" in r.json()["error"]["fields"], r.text
    with pen.as_user("bob") as c:  # bob has no copy in that thread: as if it did not exist
        for path in (f"/threads/{thread}", "/threads/no-such-thread"):
            r = c.get(path)
            assert r.status_code == 404 and r.json()["error"]["code"] == "not_found", r.text
        assert thread not in {t["thread_id"] for t in walk(c, "/threads", folder="inbox", limit=200)[0]}
    with pen.client() as anonymous:
        assert anonymous.get("/threads").status_code == 401


def test_the_migration_gives_existing_copies_their_thread(tmp_path):
    from pen_server.db import migrate

    url = f"sqlite:///{tmp_path / 'old.db'}"
    migrate(url, "0006")
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO users (id, email, display_name, role, created_at) "
                          "VALUES ('u1', 'u@x.example', 'U', 'member', '2026-01-01 00:00:00')"))
        for mid, thread in (("m1", "t1"), ("m2", "t1"), ("m3", "t3")):
            conn.execute(text(
                "INSERT INTO messages (id, thread_id, sender_id, from_email, to_list, cc_list, bcc_list, subject, "
                "body_text, snippet, size, attachment_count, sent_at) VALUES (:m, :t, 'u1', 'u@x.example', '[]', "
                "'[]', '[]', 's', 'b', 'b', 1, 0, '2026-01-01 00:00:00')"), {"m": mid, "t": thread})
            conn.execute(text("INSERT INTO mailbox_entries (user_id, message_id, folder, unread, is_sender, sent_at) "
                              "VALUES ('u1', :m, 'inbox', 1, 0, '2026-01-01 00:00:00')"), {"m": mid})
    migrate(url)
    with engine.begin() as conn:
        rows = conn.execute(text("SELECT message_id, thread_id FROM mailbox_entries ORDER BY message_id")).all()
        indexes = {row[1] for row in conn.execute(text("PRAGMA index_list('mailbox_entries')"))}
    assert rows == [("m1", "t1"), ("m2", "t1"), ("m3", "t3")]
    assert "ix_entry_thread" in indexes
    engine.dispose()
