"""Sign-in, tokens, rate limiting and guest sign-up against the real server over TLS."""

import ssl

import httpx
import pytest

from tests.conftest import PASSWORD


def test_login_me_and_token_shape(pen):
    tokens = pen.login("ann")
    assert tokens["token_type"] == "bearer" and tokens["expires_in"] > 0
    for key in ("access_token", "refresh_token"):
        assert len(tokens[key]) >= 22  # at least 128 bits, URL-safe base64
    assert tokens["user"]["email"] == "ann@abc.example"
    assert tokens["user"]["package"] == "employees"
    with pen.client(tokens["access_token"]) as c:
        me = c.get("/me").json()
    assert me == tokens["user"]


def test_tokens_are_stored_only_hashed(pen):
    from sqlalchemy import inspect, select, table, text

    tokens = pen.login("cat")
    if not pen.on_postgres:  # the file itself, free pages and the write-ahead log included
        raw = (pen.data / "pen.db").read_bytes()
        wal = pen.data / "pen.db-wal"
        raw += wal.read_bytes() if wal.exists() else b""
        assert tokens["access_token"].encode() not in raw
        assert tokens["refresh_token"].encode() not in raw
    with pen.sql() as db:
        assert db.execute(text("select count(*) from auth_tokens")).scalar() > 0
        for name in inspect(db).get_table_names():  # every row of every table, as text
            if name == "message_search" and not pen.on_postgres:
                continue  # a contentless FTS5 table cannot be scanned; its shadow tables are
            rows = repr(db.execute(select(text("*")).select_from(table(name))).all())
            assert tokens["access_token"] not in rows and tokens["refresh_token"] not in rows, name


def test_wrong_password_and_unknown_account_answer_alike(pen):
    with pen.client() as c:
        wrong = c.post("/auth/login", json={"email": "bob@abc.example", "password": "nope-nope"})
        unknown = c.post("/auth/login", json={"email": "nobody@abc.example", "password": "nope-nope"})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()
    assert wrong.json()["error"]["code"] == "invalid_credentials"


def test_rate_limit_answers_429_with_retry_after(pen):
    with pen.client() as c:
        for _ in range(5):
            assert c.post("/auth/login", json={"email": "victim@abc.example", "password": "x" * 9}).status_code == 401
        r = c.post("/auth/login", json={"email": "victim@abc.example", "password": "x" * 9})
    assert r.status_code == 429
    # A short delay that grows (1 s, 2 s, 4 s ... at most 60 s), never a lock of minutes.
    assert 0 < int(r.headers["Retry-After"]) <= 60
    assert r.json()["error"]["code"] == "rate_limited"


def test_refresh_rotates_and_reuse_revokes_the_family(pen):
    first = pen.login("bob")
    with pen.client() as c:
        second = c.post("/auth/refresh", json={"refresh_token": first["refresh_token"]})
        assert second.status_code == 200
        second = second.json()
        assert second["refresh_token"] != first["refresh_token"]
        # The old one is dead, and presenting it ends the whole sign-in.
        reuse = c.post("/auth/refresh", json={"refresh_token": first["refresh_token"]})
        assert reuse.status_code == 401
        assert c.post("/auth/refresh", json={"refresh_token": second["refresh_token"]}).status_code == 401
        assert c.get("/me", headers={"Authorization": f"Bearer {second['access_token']}"}).status_code == 401


def test_one_refresh_token_used_twice_at_once_wins_once_and_ends_the_sign_in(pen):
    """Refreshes with one token at the same moment: one gets new tokens, the others are a
    second holder's use, and end the whole sign-in (the winner's new tokens too)."""
    import threading

    tokens = pen.login("cat")
    barrier = threading.Barrier(6)
    answers: list = []

    def go() -> None:
        with pen.client() as c:
            c.get("/health")  # connected before the barrier
            barrier.wait()
            answers.append(c.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]}))

    threads = [threading.Thread(target=go) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    won = [r for r in answers if r.status_code == 200]
    assert len(won) == 1, [r.status_code for r in answers]
    assert sorted(r.status_code for r in answers) == [200] + [401] * 5
    with pen.client() as c:
        assert c.post("/auth/refresh", json={"refresh_token": won[0].json()["refresh_token"]}).status_code == 401


def test_logout_revokes(pen):
    tokens = pen.login("bob")
    with pen.client(tokens["access_token"]) as c:
        assert c.post("/auth/logout").status_code == 204
        assert c.get("/me").status_code == 401
        assert c.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]}).status_code == 401


def test_no_token_and_bad_token(pen):
    with pen.client() as c:
        r = c.get("/me")
        assert r.status_code == 401 and r.json()["error"]["code"] == "unauthenticated"
        assert c.get("/me", headers={"Authorization": "Bearer nonsense"}).status_code == 401


def test_tls_only_and_verified(pen):
    # Plain HTTP on the TLS port gets no API, and a client without the CA refuses the server.
    with pytest.raises(httpx.HTTPError):
        httpx.get(pen.api.replace("https://", "http://") + "/health", timeout=5)
    with pytest.raises(httpx.ConnectError):
        httpx.get(pen.api + "/health", timeout=5)
    ctx = ssl.create_default_context(cafile=pen.ca_file)
    ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    with pytest.raises(httpx.ConnectError):
        httpx.get(pen.api + "/health", verify=ctx, timeout=5)


def test_guest_invitation_register_and_inbox(pen, send):
    sent = send("ann", ["newguest@outside.example"], subject="Your scan")
    mails = pen.mails_to("newguest@outside.example", "Your scan")
    assert mails, "the guest got no notification"
    message_id, token = pen.link_token(mails[-1])
    assert message_id == sent["id"]
    with pen.client() as c:
        inv = c.get(f"/invitations/{token}")
        assert inv.status_code == 200, inv.text
        inv = inv.json()
        assert inv["email"] == "newguest@outside.example" and inv["registered"] is False
        assert inv["message_id"] == sent["id"] and inv["subject"] == "Your scan"
        short = c.post(f"/invitations/{token}/register", json={"display_name": "New Guest", "password": "short"})
        assert short.status_code == 422
        reg = c.post(f"/invitations/{token}/register", json={"display_name": "New Guest", "password": PASSWORD})
        assert reg.status_code == 201, reg.text
        assert reg.json()["user"]["role"] == "guest"
        again = c.post(f"/invitations/{token}/register", json={"display_name": "X", "password": PASSWORD})
        assert again.status_code == 409 and again.json()["error"]["code"] == "account_exists"
        assert c.get("/invitations/not-a-token").status_code == 404
    with pen.client(reg.json()["access_token"]) as g:
        inbox = g.get("/messages", params={"folder": "inbox"}).json()
        assert [m["id"] for m in inbox["items"]] == [sent["id"]]
        # A guest writes to members and to the people of its own threads, nobody else.
        ok = g.post("/messages", headers={"Idempotency-Key": "g1"},
                    json={"to": [{"email": "ann@abc.example"}], "subject": "Re: Your scan", "body_text": "thanks",
                          "in_reply_to": sent["id"]})
        assert ok.status_code == 201, ok.text
        bad = g.post("/messages", headers={"Idempotency-Key": "g2"},
                     json={"to": [{"email": "stranger@else.example"}], "subject": "hi", "body_text": "x"})
        assert bad.status_code == 403 and bad.json()["error"]["code"] == "guest_recipient_forbidden"


def test_admin_only(pen):
    with pen.as_user("ann") as c:
        assert c.get("/admin/pen").status_code == 403
    with pen.as_user("admin") as c:
        pen_settings = c.get("/admin/pen").json()
        assert "password" not in pen_settings["smtp"]
        packages = {p["name"]: p["disclaimer"] for p in c.get("/admin/packages").json()["items"]}
        assert packages["employees"].startswith("CONFIDENTIAL")
