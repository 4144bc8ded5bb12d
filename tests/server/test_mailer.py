"""The notification e-mail (pen_server.mailer): its headers, its body, and that no input can
add a header or change a recipient. Every check serialises the e-mail and parses it back,
as a receiving mail system would."""

from __future__ import annotations

import email.policy
import hashlib
import json
import re
from datetime import datetime, timezone
from email.header import decode_header, make_header
from email.parser import BytesParser
from pathlib import Path
from types import SimpleNamespace

import pytest

from pen_server import mailer, security
from pen_server.penconf import PenConf
from pen_server.settings import SmtpSettings

HOSTILE = json.loads((Path(__file__).parents[1] / "data" / "hostile.json").read_text(encoding="utf-8"))
TEXTS = {k: v for k, v in HOSTILE["text"].items() if not k.startswith("_")}
TEXTS.update({f"header_{k}": v for k, v in HOSTILE["headers"].items()})
SECRET = b"s" * 32
FOOTER = "Sent by ABC Medical of 123 ABC Street Beverly Hills, CA 90210, Call: (555) 555-7323"
DISCLAIMER = "This message is confidential.\nIf it reached you by mistake, delete it."
TO = [{"email": "ann@a.example", "name": "Ann Lee"}, {"email": "bob@b.example", "name": None}]
CC = [{"email": "cat@c.example", "name": "Cat Ng"}]
BCC = [{"email": "dan@d.example", "name": "Dan Secret"}]
BASE_HEADERS = {"date", "from", "reply-to", "to", "subject", "message-id", "references",
                "auto-submitted", "mime-version", "content-type", "x-pen-message"}


def conf(**kw) -> PenConf:
    values = dict(name="ABC Medical PEN", base_url="https://pen.example", footer=FOOTER,
                  smtp=SmtpSettings(from_address="pen@pen.example"))
    values.update(kw)
    return PenConf(**values)


def message(**kw):
    values = dict(id="MSG_abc-123", thread_id="THR_xyz", sender_id="U1", from_email="zoe@z.example",
                  from_name="Zoe Park", to_list=TO, cc_list=CC, bcc_list=BCC, subject="Lab results",
                  body_text="TOP-SECRET-BODY", body_html="<p>TOP-SECRET-HTML</p>", in_reply_to=None,
                  sent_at=datetime(2026, 11, 27, 9, 30, tzinfo=timezone.utc))
    values.update(kw)
    return SimpleNamespace(**values)


def notification(nid="N_1", recipient="ann@a.example"):
    return SimpleNamespace(id=nid, recipient_email=recipient, smtp_message_id=f"<{nid}@pen.example>")


def roundtrip(msg=None, notif=None, **kw):
    """Build, serialise, and parse back with the modern parser: (raw bytes, parsed)."""
    built = mailer.build_notification(notif or notification(), msg or message(), conf=kw.pop("conf", conf()),
                                      secret=SECRET, **kw)
    raw = built.as_bytes()
    return raw, BytesParser(policy=email.policy.default).parsebytes(raw)


def addresses(parsed, name):
    header = parsed[name]
    return [a.addr_spec for a in header.addresses] if header is not None else []


def rfc2047_name(raw_value: str) -> str:
    """The display name of one mailbox, decoded as RFC 2047 says (Python's structured-header
    parser wrongly keeps the folding space between adjacent encoded-words)."""
    name = re.sub(r"\s*<[^>]*>\s*$", "", raw_value.replace("\r\n", ""))
    if name.startswith('"') and name.endswith('"'):
        return name[1:-1]
    return str(make_header(decode_header(name)))


def header_block(raw: bytes) -> bytes:
    return raw.split(b"\r\n\r\n", 1)[0]


def texts(parsed) -> tuple[str, str]:
    plain = parsed.get_body(("plain",)).get_content()
    page = parsed.get_body(("html",)).get_content()
    return plain, page


def assert_well_formed(raw: bytes) -> None:
    raw.decode("ascii")  # 7-bit clean: no raw UTF-8, no NUL
    assert b"\x00" not in raw
    assert re.search(rb"(?<!\r)\n|\r(?!\n)", raw) is None, "a bare CR or LF"
    for line in header_block(raw).split(b"\r\n"):
        assert len(line) <= 78, line[:100]


def test_x_pen_message_names_the_message_without_its_token():
    raw, parsed = roundtrip(message(id="MSG_abc-123"))
    assert parsed["X-PEN-Message"] == "https://pen.example/m/MSG_abc-123"
    # The link in the body still carries the token and names the same message.
    body = parsed.get_body(("plain",)).get_content()
    assert "https://pen.example/m/MSG_abc-123?t=" in body


# -- header safety -------------------------------------------------------------------------

@pytest.mark.parametrize("key", sorted(TEXTS))
def test_hostile_subject_adds_no_header(key):
    value = TEXTS[key]
    raw, parsed = roundtrip(message(subject=value))
    assert_well_formed(raw)
    assert {k.lower() for k in parsed.keys()} == BASE_HEADERS | {"cc"}
    assert addresses(parsed, "To") == ["ann@a.example", "bob@b.example"]
    assert addresses(parsed, "Cc") == ["cat@c.example"]
    assert parsed["Bcc"] is None and b"dan@d.example" not in raw
    # The subject reads back as written, minus control characters (and never decoded twice).
    assert parsed["Subject"] == mailer.clean_line(value[:mailer.SUBJECT_LIMIT])
    assert "\n" not in parsed["Subject"] and "\r" not in parsed["Subject"]


@pytest.mark.parametrize("key", sorted(TEXTS))
def test_hostile_display_names_add_no_header(key):
    value = TEXTS[key]
    to = [{"email": "ann@a.example", "name": value}, {"email": "bob@b.example", "name": value}]
    cc = [{"email": "cat@c.example", "name": value}]
    raw, parsed = roundtrip(message(from_name=value, to_list=to, cc_list=cc))
    assert_well_formed(raw)
    assert {k.lower() for k in parsed.keys()} == BASE_HEADERS | {"cc"}
    assert addresses(parsed, "To") == ["ann@a.example", "bob@b.example"]
    assert addresses(parsed, "Cc") == ["cat@c.example"]
    assert addresses(parsed, "From") == ["pen@pen.example"]
    assert addresses(parsed, "Reply-To") == ["zoe@z.example"]
    assert parsed["Bcc"] is None
    expected = mailer.clean_line(value[:mailer.NAME_LIMIT])
    raw_headers = dict(parsed.raw_items())
    assert rfc2047_name(raw_headers["From"]) == expected
    assert rfc2047_name(raw_headers["Reply-To"]) == expected
    for a in parsed["To"].addresses + parsed["Cc"].addresses:
        # Python's reading adds spaces between encoded-words; the text is otherwise the same.
        assert "".join(a.display_name.split()) == "".join(expected.split())


def test_encoded_word_text_in_input_is_sent_encoded_not_verbatim():
    value = "=?UTF-8?Q?=0A?=Bcc: victim@evil.example"
    raw, parsed = roundtrip(message(subject=value, from_name=value))
    assert b"=?UTF-8?Q?=0A?=" not in raw  # re-encoded, so no receiver decodes it to a newline
    assert parsed["Subject"] == value and parsed["Bcc"] is None


def test_plain_subject_and_names_stay_readable():
    raw, parsed = roundtrip()
    head = header_block(raw).decode()
    assert "Subject: Lab results\r\n" in head
    assert 'To: "Ann Lee" <ann@a.example>, <bob@b.example>\r\n' in head
    assert 'From: "Zoe Park" <pen@pen.example>\r\n' in head
    assert 'Reply-To: "Zoe Park" <zoe@z.example>\r\n' in head


def test_many_recipients_fold_and_read_back_exactly():
    to = [{"email": f"user{i}@example.org", "name": f"User Number {i}"} for i in range(300)]
    raw, parsed = roundtrip(message(to_list=to, cc_list=[]))
    assert_well_formed(raw)
    assert addresses(parsed, "To") == [t["email"] for t in to]
    assert [a.display_name for a in parsed["To"].addresses] == [t["name"] for t in to]
    assert parsed["Cc"] is None


@pytest.mark.parametrize("bad", [
    "ann@a.example\r\nBcc: x@evil.example", "ann@a.example>, <x@evil.example", "a b@c.example",
    '"quoted"@c.example', "=?utf-8?q?=0A?=@evil.example", "no-at-sign", "ann@", "ann@-bad-.example",
    "ann@[127.0.0.1]", "ann@localhost\x00",
])
def test_unsafe_addresses_are_refused(bad):
    with pytest.raises(mailer.AddressError):
        mailer.checked_address(bad)
    with pytest.raises(mailer.AddressError):
        mailer.build_notification(notification(), message(to_list=[{"email": bad, "name": None}]),
                                  conf=conf(), secret=SECRET)


def test_unsafe_message_id_is_refused():
    notif = SimpleNamespace(id="N_1", smtp_message_id="<x@pen.example>\r\nBcc: y@evil.example")
    with pytest.raises(mailer.AddressError):
        mailer.build_notification(notif, message(), conf=conf(), secret=SECRET)


def test_international_domain_goes_out_as_idna():
    assert mailer.checked_address("ann@bücher.example") == "ann@xn--bcher-kva.example"
    assert mailer.checked_address("pen@localhost") == "pen@localhost"  # the default from_address
    notif = SimpleNamespace(id="N_1", smtp_message_id="<N_1@bücher.example>")
    _, parsed = roundtrip(notif=notif, conf=conf(base_url="https://bücher.example"))
    assert parsed["Message-ID"] == "<N_1@xn--bcher-kva.example>"
    assert parsed["References"] == "<thread.THR_xyz@xn--bcher-kva.example>"


def test_bcc_only_message_names_nobody():
    raw, parsed = roundtrip(message(to_list=[], cc_list=[]), notification(recipient="dan@d.example"))
    assert parsed["To"].addresses == () and parsed["Cc"] is None
    assert b"dan@d.example" not in header_block(raw)


# -- the other headers ---------------------------------------------------------------------

def test_identity_and_auto_submitted_headers():
    raw, parsed = roundtrip()
    assert parsed["Message-ID"] == "<N_1@pen.example>"
    assert parsed["Auto-Submitted"] == "auto-generated"
    assert parsed["Date"].datetime == datetime(2026, 11, 27, 9, 30, tzinfo=timezone.utc)
    assert parsed["From"].addresses[0].display_name == "Zoe Park"
    assert parsed["In-Reply-To"] is None
    assert parsed["References"] == "<thread.THR_xyz@pen.example>"


def test_a_members_notification_keeps_the_members_reply_to():
    raw, parsed = roundtrip(guest=False)
    head = header_block(raw).decode()
    assert 'From: "Zoe Park" <pen@pen.example>\r\n' in head
    assert addresses(parsed, "Reply-To") == ["zoe@z.example"]


def test_a_guests_notification_says_guest_and_has_no_reply_to():
    # A guest picks its own name; it must not become the PEN's own sender unmarked, and a
    # reply must not be steered to an address the guest chose.
    raw, parsed = roundtrip(message(from_name="Dr. Elena Ruiz", from_email="g@outside.example"), guest=True)
    assert_well_formed(raw)
    assert parsed["Reply-To"] is None and b"Reply-To" not in header_block(raw)
    [sender] = parsed["From"].addresses
    assert sender.addr_spec == "pen@pen.example"
    assert sender.display_name == "Dr. Elena Ruiz (guest) via ABC Medical PEN"
    plain, _ = texts(parsed)
    assert plain.splitlines()[0] == ("Dr. Elena Ruiz <g@outside.example>, a guest, sent you a secure message "
                                     "through ABC Medical PEN; the link below opens it in any web browser.")


@pytest.mark.parametrize("key", sorted(TEXTS))
def test_a_hostile_guest_name_keeps_the_guest_mark(key):
    raw, parsed = roundtrip(message(from_name=TEXTS[key] * 20), conf=conf(name="P" * 300), guest=True)
    assert_well_formed(raw)
    assert {k.lower() for k in parsed.keys()} == (BASE_HEADERS - {"reply-to"}) | {"cc"}
    assert " (guest) via P" in rfc2047_name(dict(parsed.raw_items())["From"])


def test_address_headers_are_made_once_and_used_as_given():
    msg = message(to_list=[{"email": f"u{i}@example.org", "name": f"Ünïcode {i}"} for i in range(40)])
    made = mailer.address_headers(msg)
    assert set(made) == {"To", "Cc"}
    raws = [header_block(roundtrip(msg, notification(f"N_{i}", f"u{i}@example.org"), headers=made)[0])
            for i in range(3)]
    for raw in raws:
        assert f"To: {made['To']}\r\n".encode() in raw and f"Cc: {made['Cc']}\r\n".encode() in raw
    # Without them, build_notification makes the same headers itself.
    assert f"To: {made['To']}\r\n".encode() in header_block(roundtrip(msg)[0])


def test_reply_threads_on_the_parent_notification():
    raw, parsed = roundtrip(message(in_reply_to="MSG_parent"), parent_message_id="<N_0@pen.example>")
    assert parsed["In-Reply-To"] == "<N_0@pen.example>"
    assert parsed["References"].split() == ["<thread.THR_xyz@pen.example>", "<N_0@pen.example>"]


def test_reply_without_a_parent_notification_threads_on_the_root():
    raw, parsed = roundtrip(message(in_reply_to="MSG_parent"))
    assert parsed["In-Reply-To"] == "<thread.THR_xyz@pen.example>"
    assert parsed["References"] == "<thread.THR_xyz@pen.example>"


# -- the body ------------------------------------------------------------------------------

def test_body_has_sentence_link_footer_and_disclaimer_only():
    raw, parsed = roundtrip(disclaimer=DISCLAIMER)
    plain, page = texts(parsed)
    token = security.derived_token(SECRET, "invite", "N_1")
    link = f"https://pen.example/m/MSG_abc-123?t={token}"
    assert hashlib.sha256(token.encode()).hexdigest() == security.token_hash(token)
    assert plain.splitlines()[0] == ("Zoe Park <zoe@z.example> sent you a secure message through ABC Medical PEN; "
                                     "the link below opens it in any web browser.")
    assert link in plain and f'href="{link}"' in page
    assert FOOTER in plain and FOOTER in page
    for line in DISCLAIMER.splitlines():
        assert line in plain and line in page
    assert plain.index(FOOTER) < plain.index("This message is confidential.")
    assert b"TOP-SECRET" not in raw
    assert [p.get_content_type() for p in parsed.walk()] == ["multipart/alternative", "text/plain", "text/html"]
    assert "Content-Disposition" not in raw.decode()


def test_no_disclaimer_when_none_given():
    raw, parsed = roundtrip(disclaimer=None)
    plain, _ = texts(parsed)
    assert plain.rstrip().endswith(FOOTER)


def test_each_notification_has_its_own_link():
    _, first = roundtrip(notif=notification("N_1"))
    _, second = roundtrip(notif=notification("N_2", "bob@b.example"))
    assert texts(first)[0] != texts(second)[0]


@pytest.mark.parametrize("key", sorted(HOSTILE["html"]))
def test_html_part_escapes_everything(key):
    value = HOSTILE["html"][key]
    _, parsed = roundtrip(message(from_name=value), conf=conf(name=value, footer=value), disclaimer=value)
    plain, page = texts(parsed)
    assert "<script" not in page and 'href="javascript' not in page and "<img" not in page
    body = page.split("<body>", 1)[1]
    tags = set(re.findall(r"<\s*([a-zA-Z]+)", body))
    assert tags <= {"p", "br", "a"}, tags
    assert len(re.findall(r"<a ", body)) == 1  # our link only: no link from the input
    assert mailer.clean_line(value[:mailer.NAME_LIMIT]) in plain


@pytest.mark.parametrize("key", sorted(TEXTS))
def test_hostile_footer_and_disclaimer_stay_in_the_body(key):
    value = TEXTS[key]
    raw, parsed = roundtrip(conf=conf(footer=value, name=value), disclaimer=value)
    assert_well_formed(raw)
    assert {k.lower() for k in parsed.keys()} == BASE_HEADERS | {"cc"}
    plain, page = texts(parsed)
    assert "\x1b" not in plain and "\x00" not in plain and "\x1b" not in page
