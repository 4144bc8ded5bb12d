"""Sending under hostile use, against the real server over TLS and the real SMTP sink: the
guest rule reveals nothing of replies a guest never saw, an upload goes with exactly one
message, a guest's notification is marked as a guest's, and the To header is one."""

import concurrent.futures
import threading
import uuid

from tests.conftest import PASSWORD, USERS
from tests.server.test_attachments import upload


def post(c, payload: dict, key: str | None = None):
    return c.post("/messages", json=payload, headers={"Idempotency-Key": key or uuid.uuid4().hex})


def register_guest(pen, email: str, subject: str, name: str = "Gus Guest") -> str:
    """Sign the invited guest up through its notification's link; returns its access token."""
    [mail] = pen.mails_to(email, subject)[-1:] or [None]
    assert mail is not None, f"no notification for {email}"
    _, token = pen.link_token(mail)
    with pen.client() as c:
        r = c.post(f"/invitations/{token}/register", json={"display_name": name, "password": PASSWORD})
    assert r.status_code == 201, r.text
    return r.json()["access_token"]


def guest_beside_a_reply(pen, send) -> tuple[str, str, str, str, dict]:
    """A guest signed up from Ann's message to it, Bob and `seen`, and Bob's answer to Ann
    alone copying `hidden`, whom the guest never hears of: (token, guest, seen, hidden, first)."""
    tag = uuid.uuid4().hex[:8]
    guest, seen, hidden = (f"{who}-{tag}@outside.example" for who in ("guest", "seen", "hidden"))
    first = send("ann", [guest, "bob"], cc=[seen], subject=f"Scan {tag}")
    send("bob", ["ann"], cc=[hidden], subject=f"Re: Scan {tag}", in_reply_to=first["id"])
    return register_guest(pen, guest, f"Scan {tag}"), guest, seen, hidden, first


def test_guest_rule_counts_only_the_guests_own_copies(pen, send):
    token, guest, seen, hidden, first = guest_beside_a_reply(pen, send)
    tag = guest.split("-", 1)[1].split("@")[0]
    with pen.client(token) as g:
        assert [m["id"] for m in g.get("/messages").json()["items"]] == [first["id"]]
        # Someone on the guest's own copy: allowed.
        assert post(g, {"to": [{"email": seen}], "subject": "hi", "body_text": "x"}).status_code == 201
        # Someone only on the reply it cannot read, and someone nobody named: the same answer.
        answers = [post(g, {"to": [{"email": addr}], "subject": "hi", "body_text": "x"})
                   for addr in (hidden, f"never-{tag}@outside.example")]
        assert [a.status_code for a in answers] == [403, 403], [a.text for a in answers]
        codes = {a.json()["error"]["code"] for a in answers}
        assert codes == {"guest_recipient_forbidden"}
        texts = [a.json()["error"]["message"].replace(addr, "ADDR")
                 for a, addr in zip(answers, (hidden, f"never-{tag}@outside.example"))]
        assert texts[0] == texts[1]


def test_an_attachment_named_twice_is_refused(pen):
    with pen.as_user("ann") as c:
        att = upload(c, "twice.txt", b"twice " + uuid.uuid4().bytes).json()
        r = post(c, {"to": [{"email": USERS["bob"][0]}], "subject": "twice", "attachments": [att["id"], att["id"]]})
        assert r.status_code == 422, r.text
        err = r.json()["error"]
        assert err["code"] == "validation_failed" and "attachments" in err["fields"]
        assert err["message"].endswith(".")
        # The upload is still free for a message that names it once.
        once = post(c, {"to": [{"email": USERS["bob"][0]}], "subject": "once", "attachments": [att["id"]]})
        assert once.status_code == 201 and once.json()["attachment_count"] == 1
        assert once.json()["size"] == att["size"]


def test_concurrent_sends_naming_one_upload_never_lose_it(pen):
    data = b"one upload, four messages " + uuid.uuid4().bytes
    token = pen.login("ann")["access_token"]
    with pen.client(token) as c:
        att = upload(c, "shared.txt", data).json()
    start = threading.Barrier(4)

    def send_one(i: int):
        with pen.client(token) as c:
            start.wait()
            return post(c, {"to": [{"email": USERS["bob"][0]}], "subject": f"race {i}", "attachments": [att["id"]]})

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(send_one, range(4)))
    created = [a.json() for a in answers if a.status_code == 201]
    refused = [a for a in answers if a.status_code != 201]
    assert created, [a.text for a in answers]
    for r in refused:
        assert r.status_code == 409 and r.json()["error"]["code"] == "conflict", r.text
        assert "upload the file again" in r.json()["error"]["message"]
    # Exactly one message holds the upload itself; a send that came after it had gone
    # shares it as a forward does (a new attachment id on the same file). None is empty.
    assert [m["attachments"][0]["id"] for m in created].count(att["id"]) == 1
    with pen.as_user("bob") as b:
        for m in created:
            got = b.get(f"/messages/{m['id']}").json()
            assert got["attachment_count"] == 1 and len(got["attachments"]) == 1
            file = b.get(f"/messages/{m['id']}/attachments/{got['attachments'][0]['id']}")
            assert file.status_code == 200 and file.content == data


def test_forwarding_an_attachment_of_a_readable_message_still_shares_it(pen, send):
    data = b"forward me " + uuid.uuid4().bytes
    with pen.as_user("ann") as c:
        att = upload(c, "fwd.txt", data).json()
    original = send("ann", ["bob"], subject="to forward", attachments=[att["id"]])
    forwarded = send("bob", ["cat"], subject="Fwd: to forward", attachments=[att["id"]])
    assert forwarded["attachment_count"] == 1 and forwarded["attachments"][0]["sha256"] == att["sha256"]
    with pen.as_user("cat") as c:
        r = c.get(f"/messages/{forwarded['id']}/attachments/{forwarded['attachments'][0]['id']}")
        assert r.status_code == 200 and r.content == data
    with pen.as_user("bob") as c:
        assert c.get(f"/messages/{original['id']}/attachments/{att['id']}").content == data


def _raw_header(data: bytes, name: bytes) -> bytes | None:
    """One header as it crossed the wire, folding and all."""
    head = data.split(b"\r\n\r\n", 1)[0]
    lines = head.split(b"\r\n")
    for i, line in enumerate(lines):
        if line.lower().startswith(name.lower() + b":"):
            out = [line]
            for more in lines[i + 1:]:
                if more[:1] not in (b" ", b"\t"):
                    break
                out.append(more)
            return b"\r\n".join(out)
    return None


def test_every_notification_carries_the_same_to_and_cc_header(pen, send):
    tag = uuid.uuid4().hex[:8]
    to = [{"email": f"to{i}-{tag}@outside.example", "name": f"Empfänger Nummer {i}"} for i in range(30)]
    cc = [{"email": f"cc{i}-{tag}@outside.example", "name": f"Cc {i}"} for i in range(8)]
    bcc = [{"email": f"bcc{i}-{tag}@outside.example"} for i in range(4)]
    subject = f"Many {tag}"
    send("ann", to, cc=cc, bcc=bcc, subject=subject)
    everyone = [a["email"] for a in to + cc + bcc]
    mails = {}
    for rcpt in everyone:
        found = pen.mails_to(rcpt, subject)
        assert len(found) == 1, rcpt
        mails[rcpt] = found[0].data
    tos = {_raw_header(d, b"To") for d in mails.values()}
    ccs = {_raw_header(d, b"Cc") for d in mails.values()}
    assert len(tos) == 1 and len(ccs) == 1
    [to_header] = tos
    assert to_header.count(b"@outside.example") == 30 and b"\r\n " in to_header  # folded, whole
    assert all(_raw_header(d, b"Bcc") is None and b"bcc" not in d.split(b"\r\n\r\n")[0] for d in mails.values())


def test_a_guests_notification_is_marked_and_has_no_reply_to(pen, send):
    tag = uuid.uuid4().hex[:8]
    guest = f"elena-{tag}@outside.example"
    first = send("ann", [guest], subject=f"Visit {tag}")
    token = register_guest(pen, guest, f"Visit {tag}", name="Dr. Elena Ruiz")
    with pen.client(token) as g:
        r = post(g, {"to": [{"email": USERS["bob"][0]}], "subject": f"From a guest {tag}", "body_text": "x",
                     "in_reply_to": first["id"]})
        assert r.status_code == 201, r.text
    [mail] = pen.mails_to(USERS["bob"][0], f"From a guest {tag}")
    [sender] = mail.message["From"].addresses
    assert sender.display_name == "Dr. Elena Ruiz (guest) via ABC Medical"
    assert sender.addr_spec.startswith("pen@")  # the PEN's own sending address
    assert mail.message["Reply-To"] is None
    # A member's notification keeps the member as Reply-To.
    [member_mail] = pen.mails_to(guest, f"Visit {tag}")
    assert [a.addr_spec for a in member_mail.message["Reply-To"].addresses] == [USERS["ann"][0]]
    assert member_mail.message["From"].addresses[0].display_name == USERS["ann"][1]
