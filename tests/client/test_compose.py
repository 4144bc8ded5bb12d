"""tui.compose: subjects, quoting, recipients, address checks and the address book."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tui.compose import (
    MAX_SUBJECT,
    AddressBook,
    format_address,
    forward_body,
    forward_subject,
    parse_address,
    parse_address_list,
    quote_body,
    remember_seen,
    reply_recipients,
    reply_subject,
    seen_addresses,
    validate_address,
    validate_subject,
)
from tui.pen_client import Address, Message

HOSTILE = json.loads((Path(__file__).parents[1] / "data" / "hostile.json").read_text("utf-8"))["text"]
ME = "me@pen.example"


def addr(email: str, name: str | None = None) -> Address:
    return Address(email, name)


def json_addr(email: str, name: str | None = None) -> dict[str, str | None]:
    return {"email": email, "name": name}


MESSAGE = Message.of({
    "id": "m1",
    "from": json_addr("ann@x.example", "Ann Lee"),
    "to": [json_addr("Me@Pen.Example", "Me"), json_addr("bob@x.example", "Bob")],
    "cc": [json_addr("carol@x.example"), json_addr("ANN@x.example", "Ann again"), json_addr("bob@x.example")],
    "bcc": [],
    "subject": "Results",
    "sent_at": "2026-11-27T09:30:00Z",
    "body_text": "Line one\n\n> earlier\nLine three\n",
    "body_html": None,
})


@pytest.fixture
def cet(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A fixed local time zone (UTC+1, no DST), without needing the tz database."""
    monkeypatch.setenv("TZ", "CET-1")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.parametrize(
    ("subject", "expected"),
    [
        ("Results", "Re: Results"),
        ("Re: Results", "Re: Results"),
        ("RE: Results", "Re: Results"),
        ("re: Re: RE:Results", "Re: Results"),
        ("Re[2]: Results", "Re: Results"),
        ("Re (3): Results", "Re: Results"),
        ("Aw: Re: Results", "Re: Results"),
        ("SV: Results", "Re: Results"),
        ("Fwd: Results", "Re: Fwd: Results"),
        ("Regarding: Results", "Re: Regarding: Results"),
        ("", "Re: "),
        (HOSTILE["crlf_header_injection"], "Re: Results Bcc: victim@evil.example"),
    ],
)
def test_reply_subject(subject: str, expected: str) -> None:
    assert reply_subject(subject) == expected


@pytest.mark.parametrize(
    ("subject", "expected"),
    [
        ("Results", "Fwd: Results"),
        ("Fwd: Results", "Fwd: Results"),
        ("FW: Fwd: fw:Results", "Fwd: Results"),
        ("Fw: Results", "Fwd: Results"),
        ("Re: Results", "Fwd: Re: Results"),
    ],
)
def test_forward_subject(subject: str, expected: str) -> None:
    assert forward_subject(subject) == expected


def test_new_subjects_stay_valid() -> None:
    long = "x" * MAX_SUBJECT
    for subject in (reply_subject(long), forward_subject(long)):
        assert validate_subject(subject) is None
    for value in HOSTILE.values():
        assert validate_subject(reply_subject(value)) is None
        assert validate_subject(forward_subject(value)) is None


def test_quote_body(cet: None) -> None:
    quoted = quote_body("Line one\r\n\r\n> earlier\nLine three\n\n", "2026-11-27T09:30:00Z", "Ann Lee")
    assert quoted == "On 27 Nov 2026 10:30, Ann Lee wrote:\n> Line one\n>\n>> earlier\n> Line three\n"


def test_quote_body_dates(cet: None) -> None:
    dt = datetime(2026, 1, 5, 23, 15, tzinfo=UTC)
    assert quote_body("x", dt, "Ann").startswith("On 6 Jan 2026 00:15, Ann wrote:")
    assert quote_body("x", None, "Ann").startswith("Ann wrote:\n")
    assert quote_body("x", "not a date", None).startswith("The sender wrote:\n")


def test_quote_body_cleans_hostile_text() -> None:
    quoted = quote_body(
        HOSTILE["csi_clear_screen"] + "\n" + HOSTILE["bidi_override"], None, HOSTILE["display_name_injection"]
    )
    assert "\x1b" not in quoted and "\u202e" not in quoted and "\r" not in quoted
    assert quoted.splitlines()[0] == "Ann Bcc: victim@evil.example wrote:"


def test_reply_goes_to_the_sender() -> None:
    to, cc = reply_recipients(MESSAGE, ME, reply_all=False)
    assert to == [addr("ann@x.example", "Ann Lee")] and cc == []


def test_reply_all_excludes_me_and_duplicates() -> None:
    to, cc = reply_recipients(MESSAGE, "ME@pen.example", reply_all=True)
    assert to == [addr("ann@x.example", "Ann Lee"), addr("bob@x.example", "Bob")]  # the sender, then the To
    assert cc == [addr("carol@x.example")]


def test_reply_to_my_own_sent_message() -> None:
    sent = replace(MESSAGE, sender=addr(ME, "Me"), to=(addr("bob@x.example"), addr(ME)), cc=(addr("carol@x.example"),))
    assert reply_recipients(sent, ME, reply_all=False) == ([addr("bob@x.example")], [])
    assert reply_recipients(sent, ME, reply_all=True) == ([addr("bob@x.example")], [addr("carol@x.example")])
    to_self = replace(sent, to=(addr(ME),), cc=())
    assert reply_recipients(to_self, ME, reply_all=True) == ([addr(ME, "Me")], [])  # to oneself, as the sender


def test_reply_recipients_clean_hostile_names_and_skip_empty_addresses() -> None:
    message = replace(
        MESSAGE,
        sender=addr("ann@x.example", HOSTILE["display_name_injection"]),
        to=(addr(""),),
        cc=(addr("", "Nobody"), addr(" ")),
    )
    to, cc = reply_recipients(message, ME, reply_all=True)
    assert to == [addr("ann@x.example", "Ann Bcc: victim@evil.example")] and cc == []
    nobody = replace(MESSAGE, sender=addr(""), to=(), cc=())
    assert reply_recipients(nobody, ME, reply_all=True) == ([], [])


def test_forward_body(cet: None) -> None:
    body = forward_body(MESSAGE)
    assert body.startswith("---------- Forwarded message ----------\n")
    assert "From: Ann Lee <ann@x.example>\n" in body
    assert "Date: 27 Nov 2026 10:30\n" in body
    assert "Subject: Results\n" in body
    assert "To: Me <Me@Pen.Example>, Bob <bob@x.example>\n" in body
    assert "Cc: carol@x.example, Ann again <ANN@x.example>, bob@x.example\n" in body
    assert body.endswith("\n\nLine one\n\n> earlier\nLine three\n")


def test_forward_body_uses_html_when_there_is_no_text() -> None:
    message = replace(MESSAGE, body_text="", body_html="<p>From <b>HTML</b></p><script>x()</script>")
    body = forward_body(message)
    assert "From HTML" in body and "x()" not in body


def test_forward_body_cleans_hostile_fields() -> None:
    message = replace(MESSAGE, subject=HOSTILE["crlf_header_injection"], body_text=HOSTILE["osc52_clipboard_write"])
    body = forward_body(message)
    assert "Subject: Results Bcc: victim@evil.example\n" in body
    assert "\x1b" not in body and "\x07" not in body


@pytest.mark.parametrize(
    "good",
    ["ann@x.example", "Ann Lee <ann@x.example>", '"Lee, Ann" <ann@x.example>', "  ann@x.example  ", "<ann@x.example>"],
)
def test_valid_addresses(good: str) -> None:
    assert validate_address(good) is None


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "ann",
        "ann@",
        "@x.example",
        "ann@x",
        "ann@@x.example",
        "Ann <ann@x.example",
        "Ann <ann@x.example> junk",
        "ann@x.example, bob@x.example",
        "ännchen@x.example",
        HOSTILE["display_name_injection"] + " <a@x.example>",
        "ann@x.example\r\nBcc: victim@evil.example",
        "ann\x00@x.example",
        HOSTILE["markup_action"],
    ],
)
def test_invalid_addresses_say_why_in_one_sentence(bad: str) -> None:
    error = validate_address(bad)
    assert error is not None and error.endswith(".") and "\n" not in error and "\r" not in error


def test_parse_address_gives_name_and_normalised_email() -> None:
    assert parse_address('"Lee, \\"Ann\\"" <ann@X.Example>') == (addr("ann@x.example", 'Lee, "Ann"'), None)
    assert parse_address("Ann Lee <ann@x.example>") == (addr("ann@x.example", "Ann Lee"), None)
    assert parse_address("ann@x.example") == (addr("ann@x.example"), None)


def test_parse_address_list() -> None:
    text = 'Ann Lee <ann@x.example>, "Lee, Bob" <bob@x.example>; bad@, c@x.example\nANN@x.example,, '
    addresses, errors = parse_address_list(text)
    assert addresses == [addr("ann@x.example", "Ann Lee"), addr("bob@x.example", "Lee, Bob"), addr("c@x.example")]
    assert len(errors) == 1 and errors[0].startswith("bad@ is not a valid e-mail address")
    assert parse_address_list("") == ([], [])


def test_format_address_round_trips() -> None:
    for a in [
        addr("ann@x.example", "Lee, Ann"),
        addr("ann@x.example", 'Ann "the" Lee'),
        addr("ann@x.example", "Ann Lee"),
        addr("ann@x.example"),
    ]:
        assert parse_address_list(format_address(a)) == ([a], [])
    assert format_address(addr("ann@x.example", "ann@x.example")) == "ann@x.example"


@pytest.mark.parametrize(
    ("subject", "error"),
    [
        ("Results", None),
        ("", None),
        ("Grüße 🔒 [b]x[/b]", None),
        ("x" * MAX_SUBJECT, None),
        ("x" * (MAX_SUBJECT + 1), "The subject is 999 characters long; it can be at most 998."),
        (HOSTILE["crlf_header_injection"], "The subject cannot contain a line break."),
        (HOSTILE["lf_header_injection"], "The subject cannot contain a line break."),
        ("a\u2028b", "The subject cannot contain a line break."),
        (HOSTILE["nul"], "The subject cannot contain control characters."),
        (HOSTILE["csi_colour"], "The subject cannot contain control characters."),
        (HOSTILE["c1_csi"], "The subject cannot contain control characters."),
    ],
)
def test_validate_subject(subject: str, error: str | None) -> None:
    assert validate_subject(subject) == error


def test_address_book_completes_and_persists(tmp_path: Path) -> None:
    path = tmp_path / "addresses.json"
    book = AddressBook(path)
    book.add_many([MESSAGE.sender, *MESSAGE.to, *MESSAGE.cc])
    book.add("Dan Wu <dan@y.example>")
    assert book.complete("ann") == ["Ann again <ANN@x.example>"]  # one entry per address, latest name
    assert book.complete("LEE") == []  # the newer name replaced "Ann Lee"
    assert book.complete("wu") == ["Dan Wu <dan@y.example>"]
    assert book.complete("b") == ["Bob <bob@x.example>"]
    assert book.complete("x.example") == []
    assert book.complete("") == []
    assert book.complete("c") == ["carol@x.example"]
    again = AddressBook(path)
    assert len(again) == len(book) == 5
    assert again.complete("dan") == ["Dan Wu <dan@y.example>"]
    assert (path.stat().st_mode & 0o777) == 0o600


def test_address_book_keeps_a_name_when_a_bare_address_comes_later(tmp_path: Path) -> None:
    book = AddressBook(tmp_path / "a.json")
    book.add(addr("ann@x.example", "Ann Lee"))
    book.add(addr("ann@x.example"))
    assert book.complete("ann") == ["Ann Lee <ann@x.example>"]


def test_address_book_newest_first_and_bounded(tmp_path: Path) -> None:
    book = AddressBook(tmp_path / "a.json", limit=50)
    book.add_many(addr(f"user{i}@x.example") for i in range(120))
    assert len(book) == 50
    assert book.complete("user", limit=3) == ["user119@x.example", "user118@x.example", "user117@x.example"]
    assert book.complete("user1@") == [] and book.complete("user0") == []
    book.add(addr("user80@x.example"))  # seen again: becomes the newest
    assert book.complete("user", limit=1) == ["user80@x.example"]


def test_address_book_rejects_junk_and_cleans_names(tmp_path: Path) -> None:
    book = AddressBook(tmp_path / "a.json")
    book.add_many(
        [
            addr(""),
            addr("no-at-sign"),
            addr("a b@x.example"),
            "not an address",
            addr("eve@x.example", HOSTILE["csi_clear_screen"] + " " + HOSTILE["markup_action"]),
        ]
    )
    assert len(book) == 1
    [entry] = book.complete("eve")
    assert "\x1b" not in entry and "[@click=app.quit]" in entry


@pytest.mark.parametrize(
    "content", [b"{broken", b"\xff", b"[]", b'{"addresses": 3}', b'{"addresses": [1, {"email": 2}]}']
)
def test_address_book_survives_a_broken_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "addresses.json"
    path.write_bytes(content)
    book = AddressBook(path)
    assert len(book) == 0
    book.add("ann@x.example")
    assert AddressBook(path).complete("ann") == ["ann@x.example"]


def test_address_book_default_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PENMAIL_STATE_DIR", str(tmp_path / "state"))
    book = AddressBook()
    assert book.path == tmp_path / "state" / "addresses.json"


def test_seen_addresses_leave_out_the_user_and_repeats_and_are_bounded() -> None:
    people = [
        addr("cat@abc.example", "Cat Moss"),
        addr("ANN@abc.example", "Ann"),
        addr("bob@abc.example", "Bob Stone"),
        addr("Cat@ABC.example"),
        addr("no at sign"),
    ]
    assert seen_addresses(people, " Ann@abc.example ") == [
        addr("cat@abc.example", "Cat Moss"),
        addr("bob@abc.example", "Bob Stone"),
    ]
    many = [addr(f"p{i}@x.example") for i in range(500)]
    assert len(seen_addresses(many, None)) == 100


def test_remember_seen_writes_once_and_not_again_for_the_same_message(tmp_path: Path) -> None:
    path = tmp_path / "addresses.json"
    people = [addr("cat@abc.example", "Cat Moss"), addr("ann@abc.example", "Ann"), addr("bob@abc.example")]
    remember_seen(people, "ann@abc.example", path)
    book = AddressBook(path)
    assert len(book) == 2 and book.complete("ann") == []
    written = path.stat().st_mtime_ns, path.stat().st_ino
    time.sleep(0.01)
    remember_seen(people, "ann@abc.example", path)
    assert (path.stat().st_mtime_ns, path.stat().st_ino) == written  # nothing changed: no write
    remember_seen([addr("dan@abc.example")], None, path / "book.json")  # a file as its folder: no raise
