"""Messages end to end: sending, per-user copies, paging, search, idempotency, and the
notification e-mails that the SMTP server actually received."""

import uuid

from tests.conftest import DISCLAIMERS, FOOTER


def test_send_delivers_copies_and_notifications(pen, send):
    subject = f"Results {uuid.uuid4().hex[:6]}"
    sent = send("ann", ["bob", {"email": "cat@abc.example", "name": "Cat Moss"}], cc=["admin"],
                bcc=["hidden@outside.example"], subject=subject, body="Secret body text 4711")
    assert sent["folder"] == "sent" and sent["unread"] is False
    assert [a["email"] for a in sent["bcc"]] == ["hidden@outside.example"]
    assert {n["recipient"]["email"]: n["kind"] for n in sent["notifications"]} == {
        "bob@abc.example": "to", "cat@abc.example": "to", "admin@abc.example": "cc",
        "hidden@outside.example": "bcc"}

    for rcpt in ("bob@abc.example", "cat@abc.example", "admin@abc.example", "hidden@outside.example"):
        mails = pen.mails_to(rcpt, subject)
        assert len(mails) == 1, rcpt
        mail = mails[0]
        assert mail.rcpt_tos == [rcpt]  # the envelope names that recipient alone
        msg = mail.message
        assert msg["Subject"] == subject
        assert [a.addr_spec for a in msg["To"].addresses] == ["bob@abc.example", "cat@abc.example"]
        assert [a.addr_spec for a in msg["Cc"].addresses] == ["admin@abc.example"]
        assert "Bcc" not in msg and b"hidden@outside.example" not in mail.data.split(b"\r\n\r\n", 1)[0]
        assert msg["Auto-Submitted"] == "auto-generated"
        assert msg["Reply-To"].addresses[0].addr_spec == "ann@abc.example"
        assert msg["From"].addresses[0].display_name == "Ann Lee"
        text = msg.get_body(("plain",)).get_content()
        assert FOOTER in text and DISCLAIMERS["employees"] in text
        assert "Secret body text 4711" not in mail.data.decode("utf-8", "replace")
        message_id, _token = pen.link_token(mail)
        assert message_id == sent["id"]

    with pen.as_user("bob") as c:
        copy = c.get(f"/messages/{sent['id']}").json()
        assert copy["folder"] == "inbox" and copy["unread"] is True
        assert copy["bcc"] == [] and copy["notifications"] == []
        assert copy["body_text"] == "Secret body text 4711"
        # Read state and folder are Bob's own.
        assert (
            c.patch(f"/messages/{sent['id']}", json={"unread": False, "folder": "archive"}).json()["folder"]
            == "archive"
        )
    with pen.as_user("cat") as c:
        assert c.get(f"/messages/{sent['id']}").json()["unread"] is True
    with pen.as_user("ann") as c:
        status = c.get(f"/messages/{sent['id']}/notifications").json()["items"]
        assert all(n["status"] in ("sending", "sent") for n in status)


def test_others_get_404_never_403(pen, send):
    sent = send("ann", ["bob"], subject="Private")
    with pen.as_user("cat") as c:
        for method, url in (
            ("GET", f"/messages/{sent['id']}"),
            ("GET", f"/messages/{sent['id']}/notifications"),
            ("PATCH", f"/messages/{sent['id']}"),
            ("DELETE", f"/messages/{sent['id']}"),
            ("POST", f"/messages/{sent['id']}/notifications/resend"),
        ):
            r = c.request(method, url, json={} if method in ("PATCH", "POST") else None)
            assert r.status_code == 404, (method, url, r.status_code)
            assert r.json()["error"]["code"] == "not_found"
    with pen.as_user("bob") as c:  # a recipient is not the sender
        assert c.get(f"/messages/{sent['id']}/notifications").status_code == 404


def test_idempotent_send(pen):
    key = uuid.uuid4().hex
    body = {"to": [{"email": "bob@abc.example"}], "subject": f"Once {key[:6]}", "body_text": "x"}
    with pen.as_user("ann") as c:
        first = c.post("/messages", json=body, headers={"Idempotency-Key": key})
        second = c.post("/messages", json=body, headers={"Idempotency-Key": key})
        assert first.status_code == second.status_code == 201
        assert first.json()["id"] == second.json()["id"]
        other = c.post("/messages", json={**body, "body_text": "y"}, headers={"Idempotency-Key": key})
        assert other.status_code == 422 and other.json()["error"]["code"] == "idempotency_key_reused"
        assert c.post("/messages", json=body).status_code == 400
        sent = c.get("/messages", params={"folder": "sent", "q": f"Once {key[:6]}"}).json()
        assert sent["total"] == 1
    pen.assert_notified_once("ann", f"Once {key[:6]}", ["bob@abc.example"])


def test_paging_is_keyset_and_stable_while_messages_arrive(pen, send):
    tag = uuid.uuid4().hex[:8]
    for i in range(7):
        send("bob", ["cat"], subject=f"page {tag} {i}")
    with pen.as_user("cat") as c:
        first = c.get("/messages", params={"limit": 3, "q": tag}).json()
        assert first["total"] == 7 and [m["subject"] for m in first["items"]] == [f"page {tag} {i}" for i in (6, 5, 4)]
        send("bob", ["cat"], subject=f"page {tag} new")  # arrives between pages
        second = c.get("/messages", params={"limit": 3, "q": tag, "cursor": first["next_cursor"]}).json()
        assert [m["subject"] for m in second["items"]] == [f"page {tag} {i}" for i in (3, 2, 1)]
        third = c.get("/messages", params={"limit": 3, "q": tag, "cursor": second["next_cursor"]}).json()
        assert [m["subject"] for m in third["items"]] == [f"page {tag} 0"] and third["next_cursor"] is None
        assert c.get("/messages", params={"limit": 0}).status_code == 422
        assert c.get("/messages", params={"limit": 201}).status_code == 422
        assert c.get("/messages", params={"cursor": "garbage!"}).status_code == 422
        assert c.get("/messages", params={"folder": "spam"}).status_code == 422


def test_search_subject_sender_body_and_unread(pen, send):
    tag = uuid.uuid4().hex[:8]
    send("bob", ["cat"], subject=f"alpha {tag}", body="nothing")
    send("bob", ["cat"], subject="beta", body=f"the word {tag} is in the body")
    with pen.as_user("cat") as c:
        found = c.get("/messages", params={"q": tag}).json()
        assert {m["subject"] for m in found["items"]} == {f"alpha {tag}", "beta"}
        assert c.get("/messages", params={"q": "Bob Stone"}).json()["total"] >= 2
        # Words, not characters: punctuation alone is no search term (docs/pen-api.md, "Search").
        assert c.get("/messages", params={"q": "%_"}).json()["items"] == c.get("/messages").json()["items"]
        assert c.get("/messages", params={"q": f"{tag}%"}).json()["total"] == 2
        unread = c.get("/messages", params={"q": tag, "unread": "true"}).json()["total"]
        one = found["items"][0]["id"]
        c.patch(f"/messages/{one}", json={"unread": False})
        assert c.get("/messages", params={"q": tag, "unread": "true"}).json()["total"] == unread - 1


def test_reply_threads_and_thread_headers(pen, send):
    subject = f"Thread {uuid.uuid4().hex[:6]}"
    first = send("ann", ["bob"], subject=subject)
    reply = send("bob", ["ann"], subject="Re: " + subject, in_reply_to=first["id"])
    assert reply["thread_id"] == first["thread_id"] and reply["in_reply_to"] == first["id"]
    to_ann = pen.mails_to("ann@abc.example", "Re: " + subject)[0].message
    to_bob = pen.mails_to("bob@abc.example", subject)[0].message
    assert to_ann["In-Reply-To"] and to_ann["References"]
    assert to_bob["Message-ID"] != to_ann["Message-ID"]
    with pen.as_user("cat") as c:  # cannot reply into a thread it cannot read
        r = c.post(
            "/messages",
            headers={"Idempotency-Key": uuid.uuid4().hex},
            json={"to": [{"email": "ann@abc.example"}], "subject": "x", "in_reply_to": first["id"]},
        )
        assert r.status_code == 422


def test_move_and_delete_own_copy_only(pen, send):
    sent = send("ann", ["bob"], subject="to be deleted")
    with pen.as_user("bob") as c:
        assert c.patch(f"/messages/{sent['id']}", json={"folder": "trash"}).json()["folder"] == "trash"
        assert c.patch(f"/messages/{sent['id']}", json={"folder": "sent"}).status_code == 422
        assert c.delete(f"/messages/{sent['id']}").status_code == 204
        assert c.get(f"/messages/{sent['id']}").status_code == 404
    with pen.as_user("ann") as c:
        assert c.get(f"/messages/{sent['id']}").status_code == 200


def test_validation_errors_name_the_field(pen):
    with pen.as_user("ann") as c:

        def post(body):
            return c.post("/messages", json=body, headers={"Idempotency-Key": uuid.uuid4().hex})

        r = post({"to": [], "subject": "x"})
        assert r.status_code == 422 and "recipient" in r.json()["error"]["message"]
        r = post({"to": [{"email": "not an address"}], "subject": "x"})
        assert r.status_code == 422 and "to[0].email" in r.json()["error"]["fields"]
        r = post({"to": [{"email": "bob@abc.example"}], "subject": "a\nBcc: x@evil.example"})
        assert r.status_code == 422 and "subject" in r.json()["error"]["fields"]
        r = post({"to": [{"email": "bob@abc.example"}], "subject": "x" * 999})
        assert r.status_code == 422
        r = c.post(
            "/messages", content=b"{not json", headers={"Idempotency-Key": "k", "Content-Type": "application/json"}
        )
        assert r.status_code in (400, 422)


def test_resend_failed(pen, send):
    subject = f"resend me {pen.process.port}"  # the sink is shared by the PENs of both databases
    sent = send("ann", ["bob"], subject=subject)
    pen.assert_notified_once("ann", subject, ["bob@abc.example"])  # recorded sent, not only received
    with pen.as_user("ann") as c:
        r = c.post(f"/messages/{sent['id']}/notifications/resend", json={})
        assert r.status_code == 202
        assert [n["status"] for n in r.json()["items"]] == ["sent"]  # nothing failed, nothing resent


def test_events_stream(pen, send):
    import json
    import threading

    token = pen.login("cat")["access_token"]
    got: list = []
    ready = threading.Event()

    def listen():
        with pen.client(token, timeout=20) as c, c.stream("GET", "/events") as r:
            assert r.headers["content-type"].startswith("text/event-stream")
            event = None
            for line in r.iter_lines():
                if line.startswith(":"):
                    ready.set()
                elif line.startswith("event:"):
                    event = line.split(":", 1)[1].strip()
                elif line.startswith("data:"):
                    got.append((event, json.loads(line.split(":", 1)[1])))
                    if event == "message.new":
                        return

    t = threading.Thread(target=listen, daemon=True)
    t.start()
    assert ready.wait(10)
    sent = send("bob", ["cat"], subject="event please")
    t.join(15)
    assert ("message.new", {"id": sent["id"], "folder": "inbox"}) in got


def test_folder_totals_follow_every_change(pen, send):
    """The kept counts agree with the rows after sends, moves and deletes."""
    from sqlalchemy import text

    for i in range(3):
        send("ann", ["cat"], subject=f"count {i}")
    with pen.as_user("cat") as c:
        before = {f: c.get("/messages", params={"folder": f}).json()["total"] for f in ("inbox", "archive", "trash")}
        ids = [m["id"] for m in c.get("/messages", params={"q": "count "}).json()["items"][:3]]
        c.patch(f"/messages/{ids[0]}", json={"folder": "archive"})
        c.patch(f"/messages/{ids[1]}", json={"folder": "trash"})
        c.delete(f"/messages/{ids[1]}")
        c.patch(f"/messages/{ids[2]}", json={"unread": False})
        after = {f: c.get("/messages", params={"folder": f}).json()["total"] for f in ("inbox", "archive", "trash")}
    assert after == {"inbox": before["inbox"] - 2, "archive": before["archive"] + 1, "trash": before["trash"]}
    with pen.sql() as db:
        kept = dict(((u, f), t) for u, f, t in db.execute(text("select user_id, folder, total from folder_counts")))
        real = dict(((u, f), t) for u, f, t in db.execute(
            text("select user_id, folder, count(*) from mailbox_entries group by user_id, folder")))
    assert {k: v for k, v in kept.items() if v} == real


def _first_messages_at_once(pen, tokens: list[str], guest: str) -> list[int]:
    """Each token sends a message to `guest` at the same moment; the status codes."""
    import threading
    import uuid

    barrier = threading.Barrier(len(tokens))
    codes: list[int] = []

    def send(token: str) -> None:
        with pen.client(token) as c:
            c.get("/me")
            barrier.wait()
            r = c.post("/messages", headers={"Idempotency-Key": uuid.uuid4().hex},
                       json={"to": [{"email": guest}], "subject": "race", "body_text": "hello"})
            codes.append(r.status_code)

    threads = [threading.Thread(target=send, args=(t,)) for t in tokens]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return codes


def test_simultaneous_first_messages_to_one_outsider_all_go(pen):
    """Four people write to the same new outside address at one moment: one guest account is
    made and every message is sent (on PostgreSQL the sends race to create it; SQLite
    serializes them)."""
    import uuid

    from sqlalchemy import text

    tokens = [pen.login(who)["access_token"] for who in ("admin", "ann", "bob", "cat")]
    for _ in range(5):
        guest = f"race-{uuid.uuid4().hex[:8]}@outside.example"
        codes = _first_messages_at_once(pen, tokens, guest)
        assert codes == [201] * len(tokens), codes
        with pen.sql() as db:
            assert db.execute(text("select count(*) from users where email = :e"), {"e": guest}).scalar() == 1
            assert db.execute(text("select count(*) from mailbox_entries e join users u on u.id = e.user_id "
                                   "where u.email = :e"), {"e": guest}).scalar() == len(tokens)
