"""The text of a list row and a sidebar row: exact widths in terminal cells (wide characters
too), an ellipsis where text is cut, the recipients on the user's own messages, a thread's
counts in words, and counts that fit the sidebar."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from rich.cells import cell_len

from tui.pen_client import Address, Summary
from tui.widgets.folder_sidebar import compact_count, folder_row
from tui.widgets.message_rows import ELLIPSIS, fit, row_text, thread_count_text, who_text

WHEN = datetime(2020, 1, 15, 9, 30, tzinfo=UTC)


BASE = Summary(id="m1", thread_id="t1", folder="inbox", sender=Address("ann@x.example", "Ann Lee"),
               to=(Address("bob@x.example", "Bob Stone"), Address("cat@x.example", None)), cc=(),
               subject="Lab results", sent_at=WHEN, unread=True, attachment_count=0, size=1, snippet="")


def summary(**over) -> Summary:
    return replace(BASE, **over)


def test_fit_is_exact_in_cells_with_an_ellipsis():
    assert fit("Catherine Moss", 8) == "Catheri" + ELLIPSIS
    assert fit("Ann", 6) == "Ann   "
    wide = fit("\u6f22\u5b57\u306e\u540d\u524d\u3067\u3059", 7)  # two cells each
    assert cell_len(wide) == 7 and wide.endswith(ELLIPSIS)
    assert fit("x", 0) == ""


def test_rows_are_exactly_the_width_at_every_size():
    long = summary(subject="A very long subject " * 10, sender=Address("a@x.example", "N" * 80))
    for width in (20, 40, 63, 64, 105, 200):
        for s in (summary(), long):
            text = row_text(s, width, now=WHEN, thread=False)
            assert cell_len(text) == width, (width, text)
    text = row_text(long, 64, now=WHEN)
    assert text.count(ELLIPSIS) == 2 and text.rstrip().endswith("09:30")


def test_own_messages_show_recipients_and_threads_their_counts():
    assert who_text(summary()) == "Ann Lee"
    assert who_text(summary(folder="sent")) == "to Bob Stone, cat@x.example"
    assert who_text(summary(folder="drafts", to=())) == "to (nobody yet)"
    assert who_text(summary(folder="archive"), me="ANN@x.example") == "to Bob Stone, cat@x.example"
    assert thread_count_text(summary(thread_count=3, thread_unread=1)) == "[3, 1 unread] "
    assert thread_count_text(summary(thread_count=3, thread_unread=0)) == "[3] "
    assert thread_count_text(summary(thread_count=1, thread_unread=1)) == ""
    row = row_text(summary(unread=False, thread_count=3, thread_unread=2), 80, now=WHEN, thread=True)
    assert row[2:4] == "U-" and "[3, 2 unread] Lab results" in row  # U: unread in the thread
    assert "\u2514 Lab results" in row_text(summary(), 80, now=WHEN, branch=True)
    assert row_text(summary(), 80, now=WHEN, mark="*")[1] == "*"


def test_sidebar_rows_fit_their_14_cells():
    for count in (0, 7, 9999, 12_345, 999_999, 3_000_000):
        for name in ("inbox", "archive", "drafts"):
            row = folder_row(1, name, False, count)
            assert cell_len(row) == 14, row
    assert folder_row(1, "inbox", True, 12).startswith(">1 Inbox")
    assert folder_row(2, "sent", False, 0) == " 2 Sent       "
    assert [compact_count(n) for n in (12, 9999, 12_345, 3_000_000)] == ["12", "9999", "12k", "3M"]
