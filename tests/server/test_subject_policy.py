"""A per-package subject policy: `keep` (the default: the message's subject travels in the
notification) or `generic` ("Secure message from NAME", and the subject appears nowhere in
the e-mail), set with `pen-server package set --subject` and `PUT /admin/packages/{name}`."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import create_engine, text

from pen_devstack import add_user, run_cli
from tests.conftest import PASSWORD, Pen, in_process, make_pen

SECRET_SUBJECT = "HIV test result for Jane Roe"


@pytest.fixture(scope="module")
def spen(tmp_path_factory, db_smtp, database):
    process = make_pen(tmp_path_factory.mktemp("subject-pen"), db_smtp, database_url=database())
    run_cli("package", "set", "--data", str(process.data), "clinical", "--disclaimer", "Clinical notice.",
            "--subject", "generic")
    add_user(process.data, "dr.who@abc.example", "Dr. Who", PASSWORD, package="clinical")
    with in_process(process, db_smtp) as pen:  # the API and pages in this process (tests/conftest.py)
        yield pen


def notification_for(pen: Pen, who: str, to: str, subject: str):
    with pen.as_user(who) as c:
        r = c.post("/messages", json={"to": [{"email": to}], "subject": subject, "body_text": "x"},
                   headers={"Idempotency-Key": uuid.uuid4().hex})
        assert r.status_code == 201, r.text
    import time

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = [m for m in list(pen.smtp.received) if to in m.rcpt_tos
                 and r.json()["id"] in m.message.get_body(("plain",)).get_content()]
        if found:
            return found[0]
        time.sleep(0.05)
    raise AssertionError("the notification did not arrive")


def test_generic_hides_the_subject_and_keep_keeps_it(spen):
    to = f"outside.{uuid.uuid4().hex[:6]}@elsewhere.example"
    generic = notification_for(spen, "dr.who@abc.example", to, SECRET_SUBJECT)
    assert generic.message["Subject"] == "Secure message from Dr. Who"
    flat = generic.message.get_body(("plain",)).get_content() + generic.message.get_body(("html",)).get_content()
    assert "HIV" not in flat and b"HIV" not in generic.data
    assert "Clinical notice." in flat  # the package's disclaimer still comes
    kept = notification_for(spen, "ann", to, SECRET_SUBJECT)  # ann's package keeps subjects
    assert kept.message["Subject"] == SECRET_SUBJECT
    # In the PEN itself the message keeps its subject.
    with spen.as_user("dr.who@abc.example") as c:
        assert c.get("/messages", params={"folder": "sent"}).json()["items"][0]["subject"] == SECRET_SUBJECT


def test_admin_api_sets_and_shows_the_policy(spen):
    with spen.as_user("admin") as c:
        r = c.put("/admin/packages/legal", json={"disclaimer": None, "subject": "generic"})
        assert r.status_code == 200 and r.json() == {"name": "legal", "disclaimer": None, "subject": "generic",
                                                     "expire_days": None}
        r = c.put("/admin/packages/legal", json={"disclaimer": "Privileged."})  # subject left out: unchanged
        assert r.json()["subject"] == "generic"
        bad = c.put("/admin/packages/legal", json={"subject": "secret"})
        assert bad.status_code == 422 and bad.json()["error"]["code"]
        items = {p["name"]: p for p in c.get("/admin/packages").json()["items"]}
        assert items["legal"]["subject"] == "generic" and items["employees"]["subject"] == "keep"
        assert items["clinical"] == {"name": "clinical", "disclaimer": "Clinical notice.", "subject": "generic",
                                     "expire_days": None}


def test_cli_changes_one_thing_at_a_time(tmp_path, smtp):
    process = make_pen(tmp_path / "p", smtp)
    data = str(process.data)
    out = run_cli("package", "set", "--data", data, "employees", "--subject", "generic")
    assert "has a disclaimer" in out and "'Secure message from NAME'" in out
    out = run_cli("package", "set", "--data", data, "employees", "--disclaimer", "")
    assert "has no disclaimer" in out and "'Secure message from NAME'" in out
    with pytest.raises(RuntimeError, match="invalid choice: 'hidden'"):
        run_cli("package", "set", "--data", data, "employees", "--subject", "hidden")


def test_the_migration_gives_existing_packages_keep(tmp_path):
    from pen_server.db import migrate

    url = f"sqlite:///{tmp_path / 'old.db'}"
    migrate(url, "0003")
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO packages (name, disclaimer) VALUES ('old', 'Old notice.')"))
    migrate(url)
    with engine.begin() as conn:
        assert conn.execute(text("SELECT name, disclaimer, subject_policy FROM packages")).all() == \
            [("old", "Old notice.", "keep")]
    engine.dispose()


def test_generic_holds_before_sign_in(spen):
    """A mail scanner, or anyone holding the link, sees what the notification says: the
    landing page and GET /invitations/{token} name the sender and no subject, also after
    the recipient has made an account; signed in, the recipient reads the subject."""
    guest = f"outside.{uuid.uuid4().hex[:6]}@elsewhere.example"
    mid, token = Pen.link_token(notification_for(spen, "dr.who@abc.example", guest, SECRET_SUBJECT))
    generic = "Secure message from Dr. Who"

    def before_sign_in() -> None:
        with spen.client(base_url=spen.url) as browser:
            landing = browser.get(f"/m/{mid}", params={"t": token})
        assert landing.status_code == 200 and generic in landing.text and "HIV" not in landing.text
        with spen.client() as c:
            invitation = c.get(f"/invitations/{token}")
        assert invitation.status_code == 200 and invitation.json()["subject"] == generic
        assert "HIV" not in invitation.text

    before_sign_in()
    with spen.client() as c:
        signed = c.post(f"/invitations/{token}/register", json={"display_name": "Out Sider",
                                                                "password": "guest password 1"})
        assert signed.status_code == 201, signed.text
    before_sign_in()
    with spen.client(signed.json()["access_token"]) as c:
        assert c.get(f"/messages/{mid}").json()["subject"] == SECRET_SUBJECT
    # A package that keeps subjects shows it on the landing page, as in its notification.
    mid, token = Pen.link_token(notification_for(spen, "ann", guest, "Lab results ready"))
    with spen.client(base_url=spen.url) as browser:
        assert "Lab results ready" in browser.get(f"/m/{mid}", params={"t": token}).text
    with spen.client() as c:
        assert c.get(f"/invitations/{token}").json()["subject"] == "Lab results ready"
