"""`pen-server run --log-format json`: the real PEN over TLS, on both databases, logs one JSON
object a line, one for each request and one for each delivery, with no token, password,
query string, recipient address or message content anywhere in the log."""

from __future__ import annotations

import json
import time
import uuid

from tests.conftest import PASSWORD, USERS, make_pen

SECRET_WORDS = "tangerine-zeppelin"  # in the subject and the body: must never reach the log
RECIPIENT = "quiet.person@json-log.example"


def test_one_object_a_request_and_a_delivery_without_secrets(tmp_path, db_smtp, database):
    process = make_pen(tmp_path / "pen", db_smtp, database_url=database())
    process.args = ("--log-format", "json")
    process.start()
    try:
        from tests.conftest import Pen

        pen = Pen(process, db_smtp)
        login = pen.login("ann")
        token = login["access_token"]
        with pen.client(token) as c:
            for _ in range(3):
                assert c.get("/messages", params={"q": SECRET_WORDS}).status_code == 200
            r = c.post("/messages", json={"to": [{"email": RECIPIENT}], "subject": SECRET_WORDS,
                                          "body_text": f"The {SECRET_WORDS} lands at noon."},
                       headers={"Idempotency-Key": uuid.uuid4().hex})
            assert r.status_code == 201
            message_id = r.json()["id"]
            deadline = time.monotonic() + 30
            while c.get(f"/messages/{message_id}/notifications").json()["items"][0]["status"] != "sent":
                assert time.monotonic() < deadline
                time.sleep(0.1)
        with pen.client() as c:
            assert c.get("/invitations/not-a-real-invitation-token").status_code == 404
        time.sleep(0.5)  # the last request's line is written once its answer is complete
    finally:
        process.stop(2)
    text = process.log_path.read_text(encoding="utf-8")
    objects = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    others = [line for line in text.splitlines() if line and not line.startswith("{")]
    assert all(line.startswith("pen-server listening on ") for line in others), others  # the one line on stdout
    assert all({"time", "level", "logger"} <= set(o) for o in objects)
    requests = [o for o in objects if o.get("event") == "request"]
    searches = [o for o in requests if o["route"] == "/api/v1/messages" and o["method"] == "GET"]
    assert len(searches) == 3
    assert searches[0]["path"] == "/api/v1/messages" and searches[0]["status"] == 200
    assert isinstance(searches[0]["ms"], float) and searches[0]["client"] == "127.0.0.1"
    [invitation] = [o for o in requests if o["route"] == "/api/v1/invitations/{token}"]
    assert invitation["path"] == "/api/v1/invitations/-" and invitation["status"] == 404
    [delivery] = [o for o in objects if o.get("event") == "delivery"]
    assert {k: delivery[k] for k in ("domain", "status", "attempt")} == {"domain": "json-log.example",
                                                                          "status": "sent", "attempt": 1}
    for secret in (SECRET_WORDS, RECIPIENT, "quiet.person", token, login["refresh_token"], PASSWORD,
                   "not-a-real-invitation-token", USERS["ann"][0]):
        assert secret not in text, secret
