"""End dates as people type them (tui/text/end_date.py), the words the notification view and the
list use for opened, withdrawn and expired messages, and the sentence a withdrawal ends
with. No server here: the screens and line mode are tested against one in
test_after_send_tui.py and test_after_send_line.py."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from tui.pen_client import Address, Message, Notification, Summary
from tui.text.end_date import EndDateError, parse_end_date
from tui.text.format import gone_mark, gone_state, header_text, withdrawn_sentence
from tui.widgets.message_rows import row_text
from tui.widgets.notification_table import detail, opened_text, status_text, summary
from tui.widgets.thread_list import thread_row

NOW = datetime(2026, 11, 27, 9, 30, 15, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _utc(utc):
    """Local time is UTC here, so "a day" ends at a known midnight."""


def test_lengths_of_time_count_from_now():
    assert parse_end_date("7d", NOW) == NOW + timedelta(days=7)
    assert parse_end_date("12h", NOW) == NOW + timedelta(hours=12)
    assert parse_end_date("2w", NOW) == NOW + timedelta(weeks=2)
    assert parse_end_date(" 3 days ", NOW) == NOW + timedelta(days=3)
    assert parse_end_date("1 hour", NOW) == NOW + timedelta(hours=1)


def test_a_day_is_readable_through_that_day():
    assert parse_end_date("2026-12-01", NOW) == datetime(2026, 12, 2, tzinfo=UTC)
    assert parse_end_date("2026-12-01 17:00", NOW) == datetime(2026, 12, 1, 17, 0, tzinfo=UTC)
    assert parse_end_date("2026-12-01T17:00:00+01:00", NOW) == datetime(2026, 12, 1, 16, 0, tzinfo=UTC)
    assert parse_end_date("2026-12-01T16:00:00Z", NOW) == datetime(2026, 12, 1, 16, 0, tzinfo=UTC)
    assert parse_end_date("2026-11-27", NOW) == datetime(2026, 11, 28, tzinfo=UTC)  # today: until midnight


def test_none_removes_where_that_is_allowed():
    for text in ("", "none", "Never", " - "):
        assert parse_end_date(text, NOW) is None
    with pytest.raises(EndDateError, match="Give the end date as 7d"):
        parse_end_date("none", NOW, allow_none=False)


@pytest.mark.parametrize("text, says", [
    ("tomorrow", "'tomorrow' is not an end date; give one as 7d, 12h, 2w, 2026-12-01 or 2026-12-01 17:00."),
    ("2026-11-26", "The end date Fri 27 Nov 2026 00:00 has passed; give one in the future."),
    ("0d", "The end date Fri 27 Nov 2026 09:30 has passed; give one in the future."),
    ("9000d", "is more than ten years away; give a nearer one."),
    ("7 months", "'7 months' is not an end date"),
    ("\x1b[31mred", "'red' is not an end date"),  # an escape sequence never reaches the sentence
])
def test_what_is_not_an_end_date_says_what_would_be(text, says):
    with pytest.raises(EndDateError) as caught:
        parse_end_date(text, NOW)
    assert says in str(caught.value)


def _summary(**over) -> Summary:
    base = Summary(id="m1", thread_id="t1", folder="inbox", sender=Address("rosa@r.example", "Rosa"),
                   to=(Address("dana@r.example"),), cc=(), subject="Lab results", sent_at=NOW, unread=False,
                   attachment_count=0, size=10, snippet="")
    return replace(base, **over)


def test_a_withdrawn_or_expired_copy_says_so_in_the_list_and_the_sender_s_never():
    withdrawn = _summary(revoked_at=NOW, gone="revoked")
    assert gone_state(withdrawn) == "revoked" and gone_mark(withdrawn) == "(withdrawn) "
    ended = _summary(expires_at=NOW - timedelta(minutes=1))
    assert gone_state(ended, "dana@r.example", NOW) == "expired"
    assert gone_state(_summary(expires_at=NOW + timedelta(minutes=1)), "dana@r.example", NOW) is None
    assert gone_state(ended, "rosa@r.example", NOW) is None  # the sender keeps reading its own
    assert gone_state(replace(ended, folder="sent"), None, NOW) is None
    row = row_text(ended, 80, NOW, me="dana@r.example")
    assert "(expired) Lab results" in row and len(row) == 80
    assert "(withdrawn) Lab results" in row_text(withdrawn, 80, NOW)
    assert "(expired) Lab results  (inbox)" in thread_row(ended, reading=False, marked=False, me="dana@r.example")


def test_opened_and_withdrawn_in_the_notification_view_s_words():
    sent = Notification(Address("dana@r.example", "Dana"), "to", "sent", 1, None, None)
    opened = replace(sent, opened_at=NOW)
    assert opened_text(sent) == "not yet"
    assert opened_text(opened, NOW) == "09:30"
    assert opened_text(opened, NOW + timedelta(days=3)) == "27 Nov 09:30"
    assert opened_text(opened, NOW + timedelta(days=400)) == "2026-11-27"
    assert detail(opened) == "Dana <dana@r.example> (to): sent; the mail server took it after 1 attempt; " \
                             "opened Fri 27 Nov 2026 09:30."
    withdrawn = replace(sent, revoked_at=NOW)
    assert status_text(withdrawn) == "withdrawn"
    assert detail(withdrawn).endswith("after 1 attempt; you withdrew it on Fri 27 Nov 2026 09:30.")
    cancelled = replace(sent, status="cancelled", attempts=0, revoked_at=NOW)
    assert detail(cancelled) == "Dana <dana@r.example> (to): cancelled: you withdrew the message before it went out."
    assert summary([opened, withdrawn, cancelled]) == "3 recipients: 1 sent, 2 withdrawn; 1 opened"
    assert summary([sent, sent]) == "2 recipients: 2 sent"


def test_the_sentence_after_a_withdrawal():
    n = Notification(Address("bob@abc.example"), "to", "cancelled", 0, None, None, revoked_at=NOW)
    m = Message(**{**_summary(subject="Referral").__dict__}, notifications=(
        n, Notification(Address("cat@abc.example", "Cat"), "cc", "sent", 1, None, None)))
    assert withdrawn_sentence(m, None) == ("Withdrew \u201cReferral\u201d from everyone; you keep your copy; the "
                                           "notification to bob@abc.example, not sent yet, was cancelled.")
    assert withdrawn_sentence(m, ("cat@abc.example",)) == ("Withdrew \u201cReferral\u201d from cat@abc.example; "
                                                          "you keep your copy.")


def test_the_reader_and_read_show_the_end_date():
    m = Message(**{**_summary(expires_at=datetime(2026, 12, 4, 9, 30, tzinfo=UTC)).__dict__})
    assert "Expires: Fri 04 Dec 2026 09:30\nSubject: Lab results" in header_text(m)
    assert "Expires" not in header_text(Message(**_summary().__dict__))
