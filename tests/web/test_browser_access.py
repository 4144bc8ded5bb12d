"""Accessibility of every page in Chromium: axe-core finds no violation, nothing scrolls
sideways at 320 px wide, and the first Tab reaches the skip link, visibly focused."""

from __future__ import annotations

import json
import sqlite3
from datetime import timedelta

from pen_server.models import utcnow
from pen_server.security import token_hash
from tests.conftest import PASSWORD
from tests.web.conftest import run_axe


def _audit(tab, name: str, failures: dict) -> None:
    page = tab.page
    violations = run_axe(page)
    if violations:
        failures[name] = violations
    for width in (320, 1280):
        page.set_viewport_size({"width": width, "height": 800})
        wide = page.evaluate("document.documentElement.scrollWidth")
        if wide > width:
            failures[f"{name} at {width} px"] = f"the page is {wide} px wide"
    page.set_viewport_size({"width": 1280, "height": 800})


def test_every_page_passes_axe_and_reflows(pen, axe_tab, guest_message):
    guest, link, sent, _ = guest_message(subject="Accessible results", html="<h2>Results</h2><p>All fine.</p>",
                                         files=[("results.pdf", b"%PDF-1.4 ok")])
    page = axe_tab.page
    base = link.split("/m/")[0]
    failures: dict = {}

    page.goto(link)
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "skip"
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline not in ("", "none")
    _audit(axe_tab, "landing", failures)
    page.get_by_role("button", name="Open the message").click()
    _audit(axe_tab, "sign-up", failures)
    page.get_by_label("A password (at least 8 characters)").fill("guest password 1")
    page.get_by_role("button", name="Make the account and read the message").click()
    page.wait_for_url(f"**/m/{sent['id']}")
    _audit(axe_tab, "message", failures)
    page.goto(f"{base}/m/{sent['id']}/body")
    _audit(axe_tab, "body page", failures)
    page.goto(f"{base}/")
    _audit(axe_tab, "inbox", failures)
    page.goto(f"{base}/m/{sent['id']}/reply?all=1")
    _audit(axe_tab, "reply", failures)
    page.get_by_label("To (addresses separated by commas)").fill("stranger@nowhere.example")
    page.get_by_role("button", name="Send").click()
    _audit(axe_tab, "reply refused", failures)
    page.goto(f"{base}/m/not-a-message")
    _audit(axe_tab, "not found", failures)
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/login?done=signed-out")
    _audit(axe_tab, "login", failures)
    page.get_by_label("E-mail address").fill(guest)
    page.get_by_label("Password").fill("wrong password")
    page.get_by_role("button", name="Sign in").click()
    _audit(axe_tab, "login refused", failures)
    page.goto(link)
    page.get_by_role("button", name="Open the message").click()
    _audit(axe_tab, "sign-in", failures)

    token = link.split("?t=", 1)[1]
    with sqlite3.connect(pen.data / "pen.db") as db:
        db.execute("UPDATE notifications SET token_expires_at = ? WHERE token_hash = ?",
                   ((utcnow() - timedelta(minutes=1)).replace(tzinfo=None).isoformat(" "), token_hash(token)))
    page.goto(link)
    _audit(axe_tab, "expired", failures)
    page.get_by_role("button", name="E-mail me a fresh link").click()
    _audit(axe_tab, "fresh link", failures)

    page.goto(f"{base}/login")
    page.get_by_label("E-mail address").fill("ann@abc.example")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{base}/")
    page.goto(f"{base}/new")
    _audit(axe_tab, "new message", failures)
    page.goto(f"{base}/?folder=sent")
    _audit(axe_tab, "sent", failures)
    page.goto(f"{base}/m/{sent['id']}")  # the sender's own: each recipient's state, the withdraw form
    _audit(axe_tab, "sender's message", failures)
    page.get_by_label(guest).check()
    page.get_by_role("button", name="Withdraw from the recipients chosen").click()
    _audit(axe_tab, "withdrawn, as the sender sees it", failures)
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/login?done=signed-out")
    page.get_by_label("E-mail address").fill(guest)
    page.get_by_label("Password").fill("guest password 1")
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{base}/")
    _audit(axe_tab, "inbox with a withdrawn message", failures)
    page.goto(f"{base}/m/{sent['id']}")
    _audit(axe_tab, "withdrawn message", failures)
    assert failures == {}, json.dumps(failures, indent=1)
