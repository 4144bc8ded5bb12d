"""The reply rule (docs/pen-api.md, "Replying and forwarding") on the web pages: every case of
tests/data/reply_cases.json through the reply form's fields (pen_server/web/compose.py) and
through pen_rules, the module it shares with the terminal client (which needs only the
standard library: tests/server/test_server_imports.py)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

import pytest

from pen_rules import replies
from pen_server.text import has_control
from pen_server.web.compose import _reply_fields

REPO = Path(__file__).resolve().parents[2]
CASES = json.loads((REPO / "tests" / "data" / "reply_cases.json").read_text("utf-8"))["cases"]
# A PEN account has one address; the web form answers for that one. The case of several
# addresses is checked on the shared rule below.
ONE_ADDRESS = [c for c in CASES if c["kind"] != "forward" and len(c["me"]) == 1]


def test_every_subject_is_one_a_pen_can_hold() -> None:
    for case in CASES:
        assert not has_control(case["subject"]) and len(case["subject"]) <= 998, case["name"]
        assert not has_control(case["expected"]["subject"]) and len(case["expected"]["subject"]) <= 998


@pytest.mark.parametrize("case", ONE_ADDRESS, ids=[c["name"] for c in ONE_ADDRESS])
def test_the_reply_form_follows_every_case(case: dict) -> None:
    user = SimpleNamespace(email=case["me"][0])
    message = SimpleNamespace(from_email=case["from"], to_list=[{"email": e, "name": None} for e in case["to"]],
                              cc_list=[{"email": e, "name": None} for e in case["cc"]], subject=case["subject"])
    fields = _reply_fields(user, message, case["kind"] == "reply-all")
    expected = case["expected"]
    assert fields["to"] == ", ".join(expected["to"]) and fields["cc"] == ", ".join(expected["cc"])
    assert fields["subject"] == expected["subject"] and fields["body"] == ""


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_the_shared_rule_follows_every_case(case: dict) -> None:
    expected = case["expected"]
    if case["kind"] == "forward":  # the web pages have no forward; the terminal client's is this one
        assert replies.forward_subject(case["subject"]) == expected["subject"]
        return
    to, cc = replies.reply_recipients(case["from"], case["to"], case["cc"], case["me"],
                                      reply_all=case["kind"] == "reply-all", email_of=str)
    assert (to, cc, replies.reply_subject(case["subject"])) == (expected["to"], expected["cc"], expected["subject"])


def test_only_one_case_needs_several_addresses() -> None:
    assert len([c for c in CASES if c["kind"] != "forward"]) - len(ONE_ADDRESS) == 1


def test_the_contract_lists_the_prefixes_the_rule_folds() -> None:
    doc = (REPO / "docs" / "pen-api.md").read_text("utf-8")
    section = " ".join(doc.split("### Replying and forwarding\n", 1)[1].split("\n###", 1)[0].split())
    reply_words = re.search(r"each prefix is one of the words (.+?) \(without regard to case\)", section).group(1)
    forward_words = re.search(r"forward prefixes at its start: (.+?), in the same form", section).group(1)
    assert reply_words.split(", ") == list(replies.REPLY_PREFIXES)
    assert forward_words.split(", ") == list(replies.FORWARD_PREFIXES)
