"""Every hostile string through every field of the API: no 500, no header injected into any
notification, and the data comes back as it was stored."""

import uuid

from tests.conftest import PASSWORD


def _headers_of(mail) -> list[str]:
    head = mail.data.split(b"\r\n\r\n", 1)[0].decode("ascii", "replace")
    return [line.split(":", 1)[0].lower() for line in head.split("\r\n") if line and line[0] not in " \t"]


EXPECTED = {"from", "reply-to", "to", "cc", "subject", "message-id", "date", "auto-submitted",
            "in-reply-to", "references", "mime-version", "content-type", "content-transfer-encoding",
            "x-auto-response-suppress", "precedence", "x-pen-message"}


def test_hostile_subjects_names_and_bodies(pen, hostile):
    texts = {k: v for k, v in hostile["text"].items() if not k.startswith("_")}
    sent_ids = {}
    with pen.as_user("ann") as c:
        for key, value in texts.items():
            marker = uuid.uuid4().hex[:8]
            body = {"to": [{"email": "bob@abc.example", "name": value[:200]}],
                    "cc": [{"email": "cat@abc.example", "name": "Cat"}],
                    "subject": value[:998], "body_text": value, "body_html": f"<p>{marker}</p>{value}"}
            r = c.post("/messages", json=body, headers={"Idempotency-Key": marker})
            assert r.status_code in (201, 422), (key, r.status_code, r.text)
            if r.status_code == 422:
                # Only controls or line breaks may be refused, and with a sentence.
                assert any(ord(ch) < 32 or 0x7F <= ord(ch) <= 0x9F or 0x202A <= ord(ch) <= 0x202E
                           or 0x2066 <= ord(ch) <= 0x2069 or ord(ch) in (0x200E, 0x200F, 0x61C)
                           for ch in value), key
                assert r.json()["error"]["message"].endswith(".")
                # The same text is accepted as a body.
                r = c.post("/messages", headers={"Idempotency-Key": marker + "b"},
                           json={"to": [{"email": "bob@abc.example"}], "subject": f"body {key}",
                                 "body_text": value})
                assert r.status_code == 201, (key, r.text)
            else:
                sent_ids[key] = r.json()["id"]
        for key, mid in sent_ids.items():
            got = c.get(f"/messages/{mid}").json()
            assert got["subject"] == texts[key][:998]

    # Every notification that arrived has only the headers we write, one recipient, no Bcc.
    for key, mid in sent_ids.items():
        for rcpt in ("bob@abc.example", "cat@abc.example"):
            mails = _wait_for_message(pen, rcpt, mid)
            assert len(mails) == 1, (key, rcpt)
            names = _headers_of(mails[0])
            assert set(names) <= EXPECTED, (key, set(names) - EXPECTED)
            assert "bcc" not in names and mails[0].rcpt_tos == [rcpt]
            msg = mails[0].message
            assert [a.addr_spec for a in msg["To"].addresses] == ["bob@abc.example"], key
            assert [a.addr_spec for a in msg["Cc"].addresses] == ["cat@abc.example"], key


def _wait_for_message(pen, rcpt, mid, timeout=30):
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [m for m in list(pen.smtp.received) if rcpt in m.rcpt_tos and pen.link_token(m)[0] == mid]
        if found:
            return found
        time.sleep(0.1)
    return []


def test_hostile_display_name_on_registration(pen, hostile, send):
    for key in ("markup_action", "crlf_header_injection", "encoded_word_newline", "csi_clear_screen"):
        value = hostile["text"][key]
        email = f"guest-{uuid.uuid4().hex[:6]}@outside.example"
        sent = send("ann", [email], subject="welcome")
        _mid, token = pen.link_token(pen.mails_to(email)[0])
        with pen.client() as c:
            r = c.post(f"/invitations/{token}/register", json={"display_name": value, "password": PASSWORD})
            assert r.status_code in (201, 422), (key, r.text)
            if r.status_code == 201:
                assert r.json()["user"]["display_name"] == value.strip()
                with pen.client(r.json()["access_token"]) as g:
                    ok = g.post("/messages", headers={"Idempotency-Key": uuid.uuid4().hex},
                                json={"to": [{"email": "ann@abc.example"}], "subject": "Re: welcome",
                                      "body_text": "hi", "in_reply_to": sent["id"]})
                    assert ok.status_code == 201
                mail = pen.mails_to("ann@abc.example", "Re: welcome", count=1)[-1]
                assert set(_headers_of(mail)) <= EXPECTED


def test_hostile_query_strings(pen, hostile):
    with pen.as_user("ann") as c:
        for value in list(hostile["text"].values())[1:]:
            r = c.get("/messages", params={"q": value[:500]})
            # The search language may refuse a text (e.g. "C:\\Users" reads as an unknown key): one sentence, field q.
            assert r.status_code == 200 or (r.status_code == 422 and list(r.json()["error"]["fields"]) == ["q"]), r.text
            from urllib.parse import quote

            r = c.get(f"/messages/{quote(value[:100], safe='')}")
            assert r.status_code in (404, 422), r.status_code


def test_nul_anywhere_is_a_sentence_on_either_database(pen):
    """PostgreSQL refuses NUL in text even to compare with (SQLite finds nothing): a NUL in an
    address, a query value or a JSON field is answered as the value it is, never a 500."""
    with pen.client() as anon:
        r = anon.post("/auth/login", json={"email": "ann\x00@abc.example", "password": "x" * 12})
        assert r.status_code in (401, 422), r.text
        assert r.json()["error"]["message"].count(".") >= 1
    with pen.as_user("ann") as c:
        assert c.get("/messages/abc%00def").status_code == 404
        assert c.get("/messages/abc%00def/notifications").status_code == 404
        r = c.get("/messages", params={"folder": "inbox", "cursor": "a\x00b"})
        assert r.status_code == 422 and r.json()["error"]["code"] == "validation_failed", r.text
        r = c.post("/messages", headers={"Idempotency-Key": "nul-test"},
                   json={"to": [{"email": "bob\x00@abc.example"}], "subject": "s", "body_text": "b"})
        assert r.status_code == 422, r.text
