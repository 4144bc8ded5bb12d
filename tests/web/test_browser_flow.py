"""The whole guest path in a real browser (Chromium), from the link in the notification
e-mail that the real SMTP sink received: landing page, sign-up, reading, download, reply
with an attachment that the sender then sees through the API, sign-out, and an expired link
that asks for a fresh one."""

from __future__ import annotations

import hashlib
import sqlite3
from datetime import timedelta

import httpx

from pen_server.models import utcnow
from pen_server.security import token_hash
from tests.web.conftest import link_of

GUEST_PASSWORD = "guest password 1"


def _invitation(pen, link: str) -> dict:
    token = link.split("?t=", 1)[1]
    with pen.client() as c:
        r = c.get(f"/invitations/{token}")
    assert r.status_code == 200, r.text
    return r.json()


def test_guest_signs_up_reads_downloads_replies_and_signs_out(pen, tab, guest_message):
    data = b"%PDF-1.4 lab results " * 5000
    guest, link, sent, _ = guest_message(
        subject="Lab results for you",
        html="<p>Dear patient, <b>see</b> the file.</p>",
        files=[("lab results.pdf", data)],
    )
    page = tab.page
    assert link.startswith("https://localhost:")

    # The landing page, twice, as a mail scanner and then the person would: nothing is used up.
    for _ in range(2):
        r = page.goto(link)
        assert r.status == 200
        assert page.locator("h1").inner_text() == "A secure message for you"
        facts = page.locator("dl.facts").inner_text()
        assert "Ann Lee <ann@abc.example>" in facts and "ABC Medical" in facts and "Lab results for you" in facts
    assert not _invitation(pen, link)["registered"]
    assert not [c for c in tab.context.cookies() if c["name"] == "__Host-pen_session"]

    # Two form submissions: the button, then the sign-up.
    page.get_by_role("button", name="Open the message").click()
    assert page.locator("h1").inner_text() == "Make your account to read it"
    assert page.locator("#email").inner_text() == guest
    assert page.get_by_label("Your name, as others will see it").input_value() == "Gus Guest"
    page.get_by_label("A password (at least 8 characters)").fill(GUEST_PASSWORD)
    page.get_by_role("button", name="Make the account and read the message").click()
    page.wait_for_url(f"**/m/{sent['id']}")
    assert "t=" not in page.url

    # Reading.
    assert page.locator("h1").inner_text() == "Lab results for you"
    facts = page.locator("dl.facts").inner_text()
    assert "Ann Lee <ann@abc.example>" in facts and guest in facts and "UTC" in facts
    frame = page.frame_locator("iframe")
    assert frame.locator("body").inner_text().strip() == "Dear patient, see the file."
    assert page.locator("details .text").text_content() == "Your results are attached."
    assert "lab results.pdf" in page.locator(".files").inner_text()
    assert "105.0 KB" in page.locator(".files").inner_text()
    cookie = next(c for c in tab.context.cookies() if c["name"] == "__Host-pen_session")
    assert cookie["secure"] and cookie["httpOnly"] and cookie["sameSite"] == "Lax" and cookie["path"] == "/"
    assert not cookie["domain"].startswith(".")
    # The token never travels in a Referer: every request after the landing page has none.
    assert not [r for r in tab.requests if r.headers.get("referer")]

    # Download: the bytes are the file's.
    with page.expect_download() as info:
        page.get_by_role("link", name="Download lab results.pdf").click()
    download = info.value
    assert download.suggested_filename == "lab results.pdf"
    assert hashlib.sha256(open(download.path(), "rb").read()).hexdigest() == hashlib.sha256(data).hexdigest()

    # Reply with an attachment.
    page.get_by_role("link", name="Reply", exact=True).click()
    assert page.get_by_label("To (addresses separated by commas)").input_value() == "ann@abc.example"
    assert page.get_by_label("Subject").input_value() == "Re: Lab results for you"
    page.get_by_label("Message").fill("Thank you, here is my form.")
    reply_bytes = b"my signed form " * 1000
    page.get_by_label("Attach files (each at most 1.1 GB)").set_input_files(
        files=[{"name": "signed form.txt", "mimeType": "text/plain", "buffer": reply_bytes}]
    )
    page.get_by_role("button", name="Send").click()
    page.wait_for_url("**/m/*?done=sent")
    assert page.locator("h1").inner_text() == "Re: Lab results for you"
    reply_id = page.url.split("?")[0].rsplit("/", 1)[1]
    thread = page.locator("ol.thread")  # the rest of the conversation: the message replied to
    assert thread.locator("li").count() == 1 and "Lab results for you" in thread.inner_text()

    with pen.as_user("ann") as c:
        m = c.get(f"/messages/{reply_id}").json()
        assert m["from"]["email"] == guest and m["in_reply_to"] == sent["id"]
        assert m["body_text"] == "Thank you, here is my form."
        [att] = m["attachments"]
        assert att["filename"] == "signed form.txt" and att["sha256"] == hashlib.sha256(reply_bytes).hexdigest()
        assert c.get(f"/messages/{reply_id}/attachments/{att['id']}").content == reply_bytes

    # The inbox shows the message, read now, and the thread shows the reply.
    page.goto(pen.process.url.replace("127.0.0.1", "localhost") + "/")
    assert "Lab results for you" in page.locator("ol.messages").inner_text()
    assert "Unread" not in page.locator("ol.messages").inner_text()

    # Sign out: the cookie is gone and its value is worth nothing any more.
    session = cookie["value"]
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/login?done=signed-out")
    assert not [c for c in tab.context.cookies() if c["name"] == "__Host-pen_session"]
    with httpx.Client(base_url=pen.process.url, verify=pen.ca_file, cookies={"__Host-pen_session": session}) as c:
        r = c.get(f"/m/{sent['id']}")
        assert r.status_code == 303 and r.headers["location"].startswith("/login")

    # Back through the same link: the address has an account now, so it is a sign-in.
    page.goto(link)
    page.get_by_role("button", name="Open the message").click()
    assert page.locator("h1").inner_text() == "Sign in to read it"
    page.get_by_label("Your password").fill(GUEST_PASSWORD)
    page.get_by_role("button", name="Sign in and read the message").click()
    page.wait_for_url(f"**/m/{sent['id']}")
    assert tab.csp_reports() == []


def test_expired_link_offers_a_fresh_one(pen, tab, guest_message):
    guest, link, sent, _ = guest_message(subject="An old message")
    token = link.split("?t=", 1)[1]
    with sqlite3.connect(pen.data / "pen.db") as db:  # thirty days later
        db.execute(
            "UPDATE notifications SET token_expires_at = ? WHERE token_hash = ?",
            ((utcnow() - timedelta(minutes=1)).replace(tzinfo=None).isoformat(" "), token_hash(token)),
        )
    page = tab.page
    r = page.goto(link)
    assert r.status == 410
    assert page.locator("h1").inner_text() == "This link has expired"
    assert "Ann Lee" not in page.content() and "An old message" not in page.content()
    before = len(pen.mails_to(guest))
    page.get_by_role("button", name="E-mail me a fresh link").click()
    assert page.locator("h1").inner_text() == "A new link is on its way"
    mails = pen.mails_to(guest, count=before + 1)
    assert len(mails) == before + 1
    fresh = link_of(mails[-1])
    assert fresh != link and f"/m/{sent['id']}?t=" in fresh
    assert page.goto(fresh).status == 200
    assert page.locator("h1").inner_text() == "A secure message for you"
    # An unknown token gets the same answers, so nothing tells whether an address or message exists.
    r = page.goto(link.split("?t=")[0] + "?t=nonsense")
    assert r.status == 410
    page.get_by_role("button", name="E-mail me a fresh link").click()
    assert page.locator("h1").inner_text() == "A new link is on its way"
