"""The reply rule (docs/pen-api.md, "Replying and forwarding") in the terminal client: every
case of tests/data/reply_cases.json through tui.compose, then reply to all end to end from
the TUI (a key press) and from line mode (`penmail reply --all`) against the real PEN, on the
issue's own example: from x to me and y, copied to z, "AW: Termin"."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from tests.client.test_compose_tui import (  # noqa: F401 (state is a fixture)
    app_for,
    compose_from_reader,
    inbox,
    sent_and_closed,
    state,
)
from tests.client.test_line_mode import Line, find
from tui.compose import forward_subject, reply_recipients, reply_subject
from tui.pen_client import Message

TABLE = json.loads((Path(__file__).parents[1] / "data" / "reply_cases.json").read_text("utf-8"))
CASES = TABLE["cases"]


def message_of(case: dict) -> Message:
    return Message.of({"id": "m1", "from": {"email": case["from"], "name": None},
                       "to": [{"email": e, "name": None} for e in case["to"]],
                       "cc": [{"email": e, "name": None} for e in case["cc"]], "bcc": [],
                       "subject": case["subject"], "sent_at": "2026-12-07T09:30:00Z", "body_text": "x"})


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_the_client_follows_every_case(case: dict) -> None:
    expected = case["expected"]
    if case["kind"] == "forward":
        assert forward_subject(case["subject"]) == expected["subject"]
        return
    message = message_of(case)
    to, cc = reply_recipients(message, case["me"], reply_all=case["kind"] == "reply-all")
    assert ([a.email for a in to], [a.email for a in cc]) == (expected["to"], expected["cc"])
    assert reply_subject(case["subject"]) == expected["subject"]


def test_the_table_covers_what_the_rule_says() -> None:
    kinds = {c["kind"] for c in CASES}
    assert kinds == {"reply", "reply-all", "forward"}
    assert any(c["from"] in c["me"] for c in CASES)  # own sent messages
    assert any(c["subject"] == "" for c in CASES) and any(len(c["subject"]) == 998 for c in CASES)
    assert sum("hostile.json" in c.get("note", "") for c in CASES) >= 10


def the_example(send, tag: str) -> tuple[dict, str]:
    """Bob writes to Ann (me) and Cat, copied to Ada; the subject begins with a German reply prefix."""
    subject = f"AW: Termin {tag}"
    return send("bob", ["ann", "cat"], cc=["admin"], subject=subject, body="Passt Dienstag?"), f"Re: Termin {tag}"


async def test_reply_all_in_the_tui_follows_the_rule(pen, send, state):  # noqa: F811 (fixture)
    original, expected_subject = the_example(send, uuid.uuid4().hex[:8])
    app = app_for(pen, state, open_message_id=original["id"])
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await compose_from_reader(pilot, "R")
        assert screen.query_one("#to").value == "Bob Stone <bob@abc.example>, cat@abc.example"
        assert screen.query_one("#cc").value == "admin@abc.example"  # named as Bob wrote them
        assert screen.query_one("#subject").value == expected_subject
        await pilot.press(*"Ja.", "f9")
        await sent_and_closed(pilot, screen)
    (got,) = inbox(pen, "cat", expected_subject)
    assert [a["email"] for a in got["to"]] == ["bob@abc.example", "cat@abc.example"]
    assert [a["email"] for a in got["cc"]] == ["admin@abc.example"]


def test_reply_all_in_line_mode_follows_the_rule(tmp_path, pen, send):
    original, expected_subject = the_example(send, uuid.uuid4().hex[:8])
    done = Line(tmp_path, pen)("reply", original["id"], "--all", stdin="Ja.\n")
    assert done.code == 0, done.err
    sent = find(pen, "ann", expected_subject, folder="sent")  # what the PEN received
    assert [a["email"] for a in sent["to"]] == ["bob@abc.example", "cat@abc.example"]
    assert [a["email"] for a in sent["cc"]] == ["admin@abc.example"]
    assert sent["subject"] == expected_subject and sent["in_reply_to"] == original["id"]
