"""The text of one row of the message list, in exactly the width it is drawn in. No Textual.

Columns, left to right (every state as a character, never by colour alone):

    0      the cursor: ">" on the highlighted row (the list draws it), else a space
    1      a one-character mark slot: "*" on a tagged row (MessageList.tagged)
    2-3    U unread (in a thread row: unread in the thread), A attachment; "-" where not
    4      a space
    ...    who: the sender, or "to" and the recipients where the row is the user's own
           message (Sent, Drafts, or sent by `me`); cut with an ellipsis
           the subject, after a thread's count ("[3, 1 unread]") or a thread's branch
           ("└ ") in the thread view, and after "(withdrawn) " or "(expired) " where the
           person can no longer read it; cut with an ellipsis
    last   the date, right-aligned in 10 cells
"""

from __future__ import annotations

from datetime import datetime

from rich.cells import cell_len, set_cell_size

from tui.pen_client import Summary
from tui.safe_text import one_line
from tui.text.format import gone_mark, short_date

ELLIPSIS = "\u2026"
# Folders whose rows are the user's own messages: they show whom each went to.
RECIPIENT_FOLDERS = frozenset({"sent", "drafts"})
DATE_WIDTH = 10
BRANCH = "\u2514 "  # an expanded thread's older messages, under its newest


def fit(text: str, width: int) -> str:
    """`text` in exactly `width` terminal cells: cut with an ellipsis when longer, padded
    with spaces when shorter (wide characters counted as two)."""
    if width <= 0:
        return ""
    if cell_len(text) > width:
        text = set_cell_size(text, width - 1).rstrip() + ELLIPSIS
    return set_cell_size(text, width)


def who_text(s: Summary, me: str | None = None) -> str:
    """The sender; for the user's own messages "to" and the recipients."""
    own = s.folder in RECIPIENT_FOLDERS or (me is not None and s.sender.email.lower() == me.lower())
    if not own:
        return one_line(s.sender.name or s.sender.email, 200)
    names = [one_line(a.name or a.email, 200) for a in (*s.to, *s.cc)]
    return "to " + ", ".join(names) if names else "to (nobody yet)"


def thread_count_text(s: Summary) -> str:
    """A thread row's count, before its subject: "[3] ", "[3, 1 unread] ", or "" for one message."""
    if s.thread_count <= 1:
        return ""
    unread = f", {s.thread_unread} unread" if s.thread_unread else ""
    return f"[{s.thread_count}{unread}] "


def sender_width(width: int) -> int:
    return max(8, min(24, width // 4))


def row_text(s: Summary, width: int, now: datetime | None = None, *, mark: str = " ", me: str | None = None,
             thread: bool = False, branch: bool = False) -> str:
    """One row, exactly `width` cells, column 0 left for the cursor. `thread`: the row is a
    thread under its newest message (U means unread in the thread, and its count shows);
    `branch`: the row is an older message of an expanded thread."""
    unread = s.thread_unread > 0 if thread else s.unread
    flags = ("U" if unread else "-") + ("A" if s.attachment_count else "-")
    lead = " " + (fit(mark, 1) if mark else " ") + flags + " "
    who_w = sender_width(width)
    subject_w = width - len(lead) - who_w - 1 - 1 - DATE_WIDTH
    subject = gone_mark(s, me, now) + (one_line(s.subject, 1000) or "(no subject)")
    if thread:
        subject = thread_count_text(s) + subject
    elif branch:
        subject = BRANCH + subject
    when = short_date(s.sent_at, now)
    text = f"{lead}{fit(who_text(s, me), who_w)} {fit(subject, max(1, subject_w))} {when.rjust(DATE_WIDTH)}"
    return fit(text, width)
